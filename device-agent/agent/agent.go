// Package agent is the device agent: it holds the device identity, keeps the
// signaling link to the rendezvous, checks every viewer's token itself, and
// serves camera streams to viewers over WebRTC, peer to peer.
package agent

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/peercam/peercam/device-agent/internal/clock"
	"github.com/peercam/peercam/device-agent/internal/fanout"
	"github.com/peercam/peercam/device-agent/internal/identity"
	"github.com/peercam/peercam/device-agent/internal/metrics"
	"github.com/peercam/peercam/device-agent/internal/peer"
	"github.com/peercam/peercam/device-agent/internal/portmap"
	"github.com/peercam/peercam/device-agent/internal/rtspsource"
	"github.com/peercam/peercam/device-agent/internal/rvclient"
	"github.com/peercam/peercam/device-agent/internal/udpbatch"
	"github.com/peercam/peercam/internal/logging"
	"github.com/peercam/peercam/internal/redact"
	"github.com/peercam/peercam/internal/viewertoken"
	"github.com/peercam/peercam/proto"
)

// Agent is a configured, not yet running, device agent.
type Agent struct {
	cfg Config
	log *slog.Logger
	id  *identity.Identity

	cameras map[string]Camera
	// streams maps "camera/main" and "camera/sub" to shared streams.
	streams map[string]*fanout.Stream

	udp   net.PacketConn
	peers *peer.Manager
	// mapper keeps a port mapping on the home router; nil when off.
	mapper *portmap.Mapper
	link   *rvclient.Client
	// metrics are the agent's Prometheus figures; served when
	// metrics_listen is set.
	metrics *metrics.Metrics
	// clock is the time for token checks: the rendezvous's, once known.
	clock *clock.Clock

	mu sync.Mutex // guards the fields below
	// pinned is the rendezvous token key; nil until the first welcome.
	pinned []byte
	// ice are the STUN/TURN servers the rendezvous hands out.
	ice []proto.ICEServer
	// claimed tells whether the device has an owner; ownerID and claim
	// name the owner and the claim, which every viewer token must carry.
	claimed bool
	ownerID int64
	claim   string
}

// New loads the identity and opens the WebRTC port.
func New(cfg Config, log *slog.Logger) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	id, err := identity.Load(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	a := &Agent{cfg: cfg, log: log.With("device", id.ID), id: id, cameras: map[string]Camera{}, streams: map[string]*fanout.Stream{},
		clock: clock.New(cfg.SystemClock, BuildInfo().Time)}
	a.metrics = metrics.New(func() int { return a.peers.Count() })
	if advice := cfg.MemoryAdvice(); advice != "" {
		a.log.Warn("settings: " + advice)
	}
	if p, err := id.Pinned(); err == nil && p != nil {
		a.pinned = p
	}
	var protoCams []proto.Camera
	cams := cfg.ResolvedCameras()
	resolvers := map[string]onvifCamera{}
	if len(cfg.ONVIF) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		found := findONVIF(ctx, cfg.ONVIF, cfg.ONVIFProbe, a.log)
		cancel()
		used := map[string]bool{}
		for _, c := range cams {
			used[c.ID] = true
		}
		next := len(cams) + 1
		for _, oc := range found {
			for used[strconv.Itoa(next)] {
				next++
			}
			id := strconv.Itoa(next)
			used[id] = true
			// A Hikvision's ISAPI lives on the same web server as its ONVIF.
			cams = append(cams, Camera{ID: id, Name: cameraName(oc.info, oc.cam, next), URL: oc.cam.MainURL, SubURL: oc.cam.SubURL,
				ISAPI: webOrigin(oc.url)})
			resolvers[id] = oc
			a.log.Info("onvif: camera found", "id", id, "device", oc.url, "source", oc.cam.Source, "codec", oc.cam.Encoding,
				"main", redact.URL(oc.cam.MainURL), "sub", redact.URL(oc.cam.SubURL))
		}
	}
	for _, c := range cams {
		a.cameras[c.ID] = c
		protoCams = append(protoCams, proto.Camera{ID: c.ID, Name: c.Name, HasSub: c.SubURL != ""})
		mainCfg := fanout.Config{Name: c.ID + "/main", URL: c.URL, Transport: cfg.RTSPTransport, Linger: cfg.Linger, AlwaysOn: c.AlwaysOn,
			SummaryEvery: cfg.SummaryEvery, Logger: a.log, KeyframeRequests: cfg.KeyframeRequests, ISAPI: ISAPIKeyframeURL(c.ISAPI, c.URL)}
		subCfg := fanout.Config{Name: c.ID + "/sub", URL: c.SubURL, Transport: cfg.RTSPTransport, Linger: cfg.Linger,
			AlwaysOn: cfg.WarmSubStreams, SummaryEvery: cfg.SummaryEvery, Logger: a.log, KeyframeRequests: cfg.KeyframeRequests,
			ISAPI: ISAPIKeyframeURL(c.ISAPI, c.SubURL)}
		if oc, ok := resolvers[c.ID]; ok {
			mainCfg.Resolve, subCfg.Resolve = oc.resolver(proto.StreamMain), oc.resolver(proto.StreamSub)
		}
		a.addStream(c.ID, proto.StreamMain, fanout.New(mainCfg))
		if c.SubURL != "" {
			a.addStream(c.ID, proto.StreamSub, fanout.New(subCfg))
		}
	}
	if len(cams) == 0 {
		a.log.Error("no cameras: every onvif device failed and nothing else is configured; the agent runs and can be claimed, but has nothing to show")
	}
	a.udp, err = net.ListenPacket("udp", cfg.WebRTCListen)
	if err != nil {
		a.closeStreams()
		return nil, fmt.Errorf("agent: webrtc_listen: %w", err)
	}
	host, _, _ := net.SplitHostPort(cfg.WebRTCListen)
	listenIP, _ := netip.ParseAddr(host)
	loopback := listenIP.IsLoopback()
	protocols, _ := portmap.ParseProtocols(cfg.PortMapping) // checked by Validate
	var sock net.PacketConn = a.udp
	if uc, ok := a.udp.(*net.UDPConn); ok {
		sock = udpbatch.New(uc, a.log)
	}
	pcfg := peer.Config{
		UDPMux:          webrtc.NewICEUDPMux(logging.PionFactory{Log: a.log}.NewLogger("udpmux"), sock),
		IncludeLoopback: loopback,
		QueueFrames:     cfg.ViewerQueueFrames,
		Metrics:         a.metrics,
		Logger:          a.log,
	}
	if bc, ok := sock.(*udpbatch.Conn); ok && bc.GSO() {
		pcfg.Batch = bc
	}
	if len(protocols) > 0 && !loopback {
		a.mapper = portmap.New(portmap.Config{Port: uint16(a.udp.LocalAddr().(*net.UDPAddr).Port), LocalIP: listenIP.Unmap(),
			Protocols: protocols, Lease: cfg.PortMappingLease, Logger: a.log})
		pcfg.Mapped = func() (netip.AddrPort, netip.AddrPort, bool) {
			m, ok := a.mapper.Current()
			return m.External, m.Internal, ok
		}
	}
	a.peers = peer.NewManager(pcfg)
	var roots *x509.CertPool
	if cfg.RendezvousCA != "" {
		if roots, err = loadCA(cfg.RendezvousCA); err != nil {
			a.closeStreams()
			a.udp.Close()
			return nil, err
		}
	}
	a.link = rvclient.New(rvclient.Config{URL: cfg.Rendezvous, DeviceID: id.ID, Key: id.Key, Version: Version,
		Cameras: protoCams, Handle: a.handle, Logger: a.log, Roots: roots, Clock: a.clock})
	return a, nil
}

// addStream keeps a camera stream and registers its figures.
func (a *Agent) addStream(camera, kind string, st *fanout.Stream) {
	a.streams[camera+"/"+kind] = st
	a.metrics.Camera(camera, kind, func() metrics.CameraStats {
		s := st.Stats()
		return metrics.CameraStats{Frames: s.Frames, Dropped: s.Dropped, Outages: s.Outages, LostPackets: s.LostPackets,
			KeyframesAsked: s.KeyframesAsked, Viewers: s.Viewers, Up: s.Running && !s.Down}
	})
}

// send sends m to the rendezvous, counted.
func (a *Agent) send(m proto.Message) {
	a.metrics.SignalOut.Inc()
	if _, ok := m.(*proto.Error); ok {
		a.metrics.SignalErrors.Inc()
		a.metrics.SessionsRefused.Inc()
	}
	a.link.Send(m)
}

// Metrics are the agent's figures (tests read them without the endpoint).
func (a *Agent) Metrics() *metrics.Metrics { return a.metrics }

// ID is the device ID.
func (a *Agent) ID() string { return a.id.ID }

// WebRTCAddr is the UDP address WebRTC traffic uses.
func (a *Agent) WebRTCAddr() net.Addr { return a.udp.LocalAddr() }

// Stream returns a camera's stream (for tests and status).
func (a *Agent) Stream(camera, kind string) *fanout.Stream { return a.streams[camera+"/"+kind] }

// Run serves until ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	a.log.Info("device agent starting", "version", Version, "cameras", len(a.cameras),
		"webrtc", a.udp.LocalAddr().String(), "rendezvous", a.cfg.Rendezvous)
	if a.cfg.PlainHTTP() && a.cfg.InsecureRendezvous {
		a.log.Warn("INSECURE: the rendezvous link is plain http (insecure_rendezvous: true). Anyone on the network path can " +
			"impersonate the server and, on first contact, pin their own key. Use this only in a lab; use https:// in real use")
	}
	if a.cfg.MetricsListen != "" {
		ln, err := net.Listen("tcp", a.cfg.MetricsAddr())
		if err != nil {
			// Metrics are not worth not serving video for.
			a.log.Error("metrics_listen: cannot listen; metrics are off", "err", err)
		} else {
			go a.metrics.Serve(ln)
			defer ln.Close()
			a.log.Info("metrics ready", "url", "http://"+ln.Addr().String()+"/metrics")
		}
	}
	var mapped sync.WaitGroup
	if a.mapper != nil {
		mctx, stop := context.WithCancel(ctx)
		defer stop()
		mapped.Go(func() { a.mapper.Run(mctx) })
	}
	err := a.link.Run(ctx)
	a.peers.Close()
	mapped.Wait() // the mapping is removed from the router
	a.closeStreams()
	a.udp.Close()
	if errors.Is(err, rvclient.ErrRefused) {
		return fmt.Errorf("agent: %w", err)
	}
	return nil
}

func (a *Agent) closeStreams() {
	for _, s := range a.streams {
		s.Close()
	}
}

func (a *Agent) handle(m proto.Message) {
	a.metrics.SignalIn.Inc()
	switch m := m.(type) {
	case *proto.Welcome:
		a.onWelcome(m)
	case *proto.ClaimCode:
		a.onClaimCode(m)
	case *proto.Claimed:
		a.setClaim(m.OwnerID, m.Claim)
		a.log.Info("claimed: this device now belongs to " + m.Owner)
	case *proto.Unclaimed:
		n := a.setClaim(0, "")
		a.log.Warn("the owner removed this device: every viewer token issued for it is void; a new claim code follows",
			"reason", m.Reason, "sessions_ended", n)
	case *proto.Offer:
		go a.onOffer(m)
	case *proto.Candidate:
		if err := a.peers.AddCandidate(m); err != nil {
			a.log.Debug("candidate", "session", m.Session, "err", err)
		}
	case *proto.Bye:
		a.peers.Bye(m.Session, m.Reason)
	case *proto.Error:
		a.metrics.SignalErrors.Inc()
		a.log.Warn("rendezvous reported an error", "session", m.Session, "code", m.Code, "message", m.Message)
	default:
		a.log.Debug("ignored message", "type", m.MessageType())
	}
}

func (a *Agent) onWelcome(w *proto.Welcome) {
	// Trust on first use: the key seen on the first connection is pinned and
	// every later token must be signed with it.
	if err := a.id.Pin(w.ServerKey); err != nil {
		a.log.Error("the rendezvous presents a different token key than the one pinned at first contact; "+
			"refusing its viewers. If the server was rebuilt on purpose, delete rendezvous.pub in the state dir",
			"err", err)
	}
	if !w.Time.IsZero() {
		a.learnTime(w.Time)
	}
	p, _ := a.id.Pinned()
	a.mu.Lock()
	a.pinned = p
	a.ice = w.ICEServers
	a.mu.Unlock()
	if w.Claimed {
		a.setClaim(w.OwnerID, w.Claim)
	} else {
		a.setClaim(0, "")
	}
	if w.Claimed {
		a.log.Info("registered with the rendezvous", "owner", w.Owner)
	} else {
		a.log.Info("registered with the rendezvous; not claimed yet")
	}
}

// setClaim records the device's owner and claim and ends the sessions whose
// tokens were issued under another one; it returns how many it ended.
func (a *Agent) setClaim(owner int64, claim string) int {
	a.mu.Lock()
	a.claimed, a.ownerID, a.claim = claim != "", owner, claim
	a.mu.Unlock()
	return a.peers.EndStale(claim)
}

// learnTime takes the rendezvous's clock from its welcome, within bounds: a
// time before the agent's build, or outside the validity of the certificate
// the rendezvous just presented, cannot be true, and believing it would let
// whoever speaks for the rendezvous replay expired tokens.
func (a *Agent) learnTime(t time.Time) {
	sys := a.clock.System()
	nb, na, _ := a.link.CertValidity()
	if ok, window := plausibleTime(t, a.clock.Floor(), nb, na); !ok {
		a.log.Warn("ignoring the rendezvous's time: it is outside what can be true (before this build, or outside its certificate's validity)",
			"rendezvous_clock", t.UTC().Format(time.RFC3339), "plausible", window)
		return
	}
	skew := a.clock.Learn(t)
	if skew.Abs() > time.Minute {
		a.log.Warn("this box's clock is wrong; using the rendezvous's time for token checks (set up NTP to fix it)",
			"box_clock", sys.UTC().Format(time.RFC3339), "rendezvous_clock", t.UTC().Format(time.RFC3339), "offset", skew.Round(time.Second))
	} else {
		a.log.Debug("clock offset to the rendezvous", "offset", skew.Round(time.Millisecond))
	}
}

// plausibleTime tells whether t can be the true time: not before floor (the
// build) and, when the link has a certificate (notAfter not zero), within
// its validity. window says what would have been plausible.
func plausibleTime(t, floor, notBefore, notAfter time.Time) (ok bool, window string) {
	lo, hi := floor, notAfter
	if !hi.IsZero() && notBefore.After(lo) {
		lo = notBefore
	}
	window = "after " + lo.UTC().Format(time.RFC3339)
	if !hi.IsZero() {
		window = "between " + lo.UTC().Format(time.RFC3339) + " and " + hi.UTC().Format(time.RFC3339)
	}
	return !t.Before(lo) && (hi.IsZero() || !t.After(hi)), window
}

func (a *Agent) onClaimCode(c *proto.ClaimCode) {
	a.log.Info("claim this device: sign in to the web app and enter the code",
		"code", c.Code, "link", c.URL, "expires", c.Expires.Local().Format(time.Kitchen))
	if fi, err := os.Stderr.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
		printQR(os.Stderr, c.URL)
	}
}

func (a *Agent) onOffer(o *proto.Offer) {
	log := a.log.With("session", o.Session, "camera", o.Camera)
	fail := func(code proto.Code, msg string) {
		log.Info("session refused", "code", code, "why", msg)
		a.send(proto.NewError(o.Session, code, msg))
	}
	claims, err := a.checkToken(o)
	if err != nil {
		code := proto.CodeUnauthorized
		if errors.Is(err, viewertoken.ErrScope) {
			code = proto.CodeForbidden
		}
		fail(code, err.Error())
		return
	}
	restart := a.peers.Has(o.Session) // an ICE restart: the session is counted already
	if restart && a.peers.Subject(o.Session) != claims.Subject {
		// Only the viewer that opened a session may restart it: a session ID
		// with someone else's token takes over nothing.
		fail(proto.CodeForbidden, "this session belongs to another viewer")
		return
	}
	if !restart && claims.MaxViewers > 0 && a.peers.CountToken(claims.ID) >= claims.MaxViewers {
		fail(proto.CodeViewerCap, fmt.Sprintf("this share allows %d viewer(s) at a time", claims.MaxViewers))
		return
	}
	// The owner's own session token; shares and minted tokens are guests.
	owner := claims.Subject == fmt.Sprintf("user:%d", claims.Owner)
	if n := a.cfg.MaxViewersPerCamera; !restart && n > 0 && a.peers.CountCamera(o.Camera) >= n {
		fail(proto.CodeRateLimited, fmt.Sprintf("this camera already has %d viewers, its limit (max_viewers_per_camera); try again later", n))
		return
	}
	if !restart && a.peers.Count() >= a.cfg.MaxViewers {
		fail(proto.CodeRateLimited, fmt.Sprintf("this recorder already serves %d viewers, its limit; try again later", a.cfg.MaxViewers))
		return
	}
	// One slot is the owner's: guests cannot lock the owner out.
	if !restart && !owner && a.cfg.MaxViewers > 1 && a.peers.CountGuests() >= a.cfg.MaxViewers-1 {
		fail(proto.CodeRateLimited, fmt.Sprintf("this recorder serves %d guest viewers, its limit (one more slot is kept for its owner); try again later", a.cfg.MaxViewers-1))
		return
	}
	kind := o.Stream
	if kind == "" {
		kind = proto.StreamMain
	}
	if a.streams[o.Camera+"/"+proto.StreamMain] == nil {
		fail(proto.CodeNotFound, "this device has no camera "+o.Camera)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var st *fanout.Stream
	var served *proto.Served
	if !restart {
		st, served, err = a.choose(ctx, o.Camera, kind, peer.OfferedCodecs(o.SDP))
		if err != nil {
			a.failOffer(fail, err)
			return
		}
		kind = served.Stream
		if served.Note != "" {
			log.Info("viewer gets another stream than it asked for", "asked", o.Stream, "served", served.Stream, "why", served.Note)
		}
	}
	a.mu.Lock()
	ice := a.ice
	if len(o.ICEServers) > 0 {
		ice = o.ICEServers
	}
	a.mu.Unlock()
	trickle := o.Trickle == nil || *o.Trickle
	err = a.peers.Offer(ctx, peer.Request{Session: o.Session, SDP: o.SDP, Trickle: trickle, Camera: o.Camera,
		ICEServers: ice, Stream: st, Send: a.send, TokenID: claims.ID, Expires: time.Now().Add(a.clock.Until(claims.ExpiresAt.Time)),
		Claim: claims.Claim, Owner: owner, Subject: claims.Subject, Served: served, Bootstrap: a.bootstrap(o.Camera, st, served)})
	switch {
	case err == nil && restart:
		log.Debug("ICE restart answered")
	case err == nil:
		log.Info("session answered", "stream", kind, "codec", served.Codec, "subject", claims.Subject)
	default:
		a.failOffer(fail, err)
	}
}

// bootstrap is the stream a new viewer of st starts on while st has no
// picture cached: its camera's sub stream, warm and in the same codec,
// when st is the main stream and cold. nil otherwise.
func (a *Agent) bootstrap(camera string, st *fanout.Stream, served *proto.Served) *fanout.Stream {
	sub := a.streams[camera+"/"+proto.StreamSub]
	if sub == nil || sub == st || served == nil || served.Stream != proto.StreamMain || st.Stats().GOP > 0 {
		return nil
	}
	si, mi := sub.Known(), st.Known()
	if si == nil || mi == nil || si.Codec != mi.Codec || sub.Stats().GOP == 0 {
		return nil
	}
	return sub
}

// failOffer refuses an offer with the wire code and sentence for err.
func (a *Agent) failOffer(fail func(proto.Code, string), err error) {
	switch {
	case errors.Is(err, fanout.ErrUnavailable):
		fail(proto.CodeCameraUnreachable, sentence(strings.TrimPrefix(err.Error(), fanout.ErrUnavailable.Error()+": ")))
	case errors.Is(err, peer.ErrCodec):
		fail(proto.CodeCodecUnsupported, sentence(strings.TrimPrefix(err.Error(), peer.ErrCodec.Error()+": ")))
	case errors.Is(err, proto.ErrBadMessage):
		fail(proto.CodeBadMessage, err.Error())
	default:
		fail(proto.CodeInternal, "the agent could not answer: "+err.Error())
	}
}

// Why a viewer gets the sub stream instead of the main one.
const (
	noteH265    = "this browser cannot play H.265; Safari 18, or Chrome on a device with H.265 hardware, shows the main stream"
	noteBFrames = "the main stream has B-frames, which browsers play badly; turn B-frames off in the camera's video settings to watch it here"
)

// choose picks, for one viewer, the best stream of camera it can play: the
// stream asked for (usually main) in a codec the viewer's offer lists and
// without B-frames; otherwise the sub stream if that is clean; otherwise an
// error naming what would help. Two viewers of one camera may get different
// streams; each stream is still pulled once.
func (a *Agent) choose(ctx context.Context, camera, kind string, codecs map[string]bool) (*fanout.Stream, *proto.Served, error) {
	want := a.streams[camera+"/"+kind]
	if want == nil { // no sub stream: main it is
		kind, want = proto.StreamMain, a.streams[camera+"/"+proto.StreamMain]
	}
	// What the stream was last seen to be decides without waiting: an
	// H.264-only viewer of a cold H.265 main stream need not wait for that
	// camera's keyframe before it is sent to the sub stream.
	info, release, err := streamInfo(ctx, want)
	if err != nil {
		return nil, nil, err
	}
	defer release()
	served := servedOf(kind, info)
	playable := codecs[info.Codec]
	bframes := info.Codec == rtspsource.H264 && want.HasBFrames()
	if playable && !bframes {
		return want, served, nil
	}
	if sub := a.streams[camera+"/"+proto.StreamSub]; kind == proto.StreamMain && sub != nil {
		if sinfo, release, err := streamInfo(ctx, sub); err == nil {
			defer release()
			if codecs[sinfo.Codec] && !(sinfo.Codec == rtspsource.H264 && sub.HasBFrames()) {
				alt := servedOf(proto.StreamSub, sinfo)
				alt.Note = noteBFrames
				if !playable {
					alt.Note = noteH265
				}
				return sub, alt, nil
			}
		}
	}
	switch {
	case !playable && info.Codec == rtspsource.H265:
		return nil, nil, fmt.Errorf("%w: this browser cannot play H.265 and the camera has no H.264 sub stream it can play instead. "+
			"Watch with Safari 18, or Chrome on a device with H.265 hardware, or set the camera's stream to H.264", peer.ErrCodec)
	case !playable:
		return nil, nil, fmt.Errorf("%w: this browser offers no codec the camera sends (%s)", peer.ErrCodec, info.Codec)
	}
	return nil, nil, fmt.Errorf("%w: the camera's stream has B-frames, which browsers play badly, and it has no clean sub stream. "+
		"Turn B-frames off in the camera's video settings (often 'B-frame', 'GOP structure', 'H.264+' or 'smart codec')", peer.ErrCodec)
}

// streamInfo is what st was last seen to be, or, for a stream that never
// ran, what it is once pulled (release lets go of that pull).
func streamInfo(ctx context.Context, st *fanout.Stream) (info *fanout.Info, release func(), err error) {
	if info := st.Known(); info != nil {
		return info, func() {}, nil
	}
	if info, err = st.Acquire(ctx); err != nil {
		return nil, nil, err
	}
	return info, st.Release, nil
}

func servedOf(kind string, info *fanout.Info) *proto.Served {
	codec := proto.CodecH264
	if info.Codec == rtspsource.H265 {
		codec = proto.CodecH265
	}
	return &proto.Served{Stream: kind, Codec: codec, Width: info.Width, Height: info.Height, Audio: info.AudioNote}
}

// checkToken verifies the viewer token with the pinned key: the agent's own
// check, so a bug in the rendezvous alone cannot open a camera.
func (a *Agent) checkToken(o *proto.Offer) (*viewertoken.Claims, error) {
	a.mu.Lock()
	pinned, owner, claim := a.pinned, a.ownerID, a.claim
	a.mu.Unlock()
	if pinned == nil {
		return nil, fmt.Errorf("%w: the agent has no pinned rendezvous key yet", viewertoken.ErrInvalid)
	}
	if o.Token == "" {
		return nil, fmt.Errorf("%w: the offer carries no token", viewertoken.ErrInvalid)
	}
	c, err := viewertoken.Parse(pinned, o.Token, a.clock.Now())
	if err != nil {
		return nil, err
	}
	if err := c.Allows(a.id.ID, o.Camera, viewertoken.PermLive); err != nil {
		return nil, err
	}
	// Ownership is the boundary here too: a token of a former owner, or
	// any token while the device has no owner, opens nothing.
	if err := c.IssuedUnder(owner, claim); err != nil {
		return nil, err
	}
	return c, nil
}

// sentence capitalises an error for a person to read.
func sentence(s string) string {
	if s == "" {
		return s
	}
	s = strings.ToUpper(s[:1]) + s[1:]
	if !strings.HasSuffix(s, ".") {
		s += "."
	}
	return s
}

// loadCA reads the rendezvous_ca file.
func loadCA(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("agent: rendezvous_ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("agent: rendezvous_ca: %s holds no PEM certificate", path)
	}
	return pool, nil
}
