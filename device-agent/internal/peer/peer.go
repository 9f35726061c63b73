// Package peer runs the agent's WebRTC sessions: it answers a viewer's offer
// with the camera's real H.264 profile, waits until DTLS is up before sending a
// single packet, starts each viewer from the GOP cache in fast-forward so the
// first picture appears at once, answers keyframe requests from the cache, and
// tears everything down when the viewer leaves or the path dies.
package peer

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/peercam/peercam/device-agent/internal/fanout"
	"github.com/peercam/peercam/device-agent/internal/metrics"
	"github.com/peercam/peercam/device-agent/internal/rtspsource"
	"github.com/peercam/peercam/internal/logging"
	"github.com/peercam/peercam/internal/media/h265"
	"github.com/peercam/peercam/proto"
)

// ErrCodec means the viewer offered no codec the camera sends.
var ErrCodec = errors.New("no matching codec")

// Config configures the Manager.
type Config struct {
	// UDPMux carries all WebRTC traffic on one UDP port.
	UDPMux ice.UDPMux
	// Batch, when set, is the socket under UDPMux: each frame a viewer is
	// sent goes to it between Begin and Flush of the viewer's address, so
	// it can leave in one system call (udpbatch).
	Batch Batcher
	// IncludeLoopback offers 127.0.0.1 candidates (tests, same-host viewers).
	IncludeLoopback bool
	// QueueFrames bounds each viewer's frame queue. Default 600 (a 4 s GOP at
	// 30 fps with audio and room to spare).
	QueueFrames int
	// CatchUp is how much faster than real time a viewer is fed the GOP cache.
	// Default 8.
	CatchUp int
	// Mapped, when set, returns the port the home router forwards to the
	// agent's UDP port (internal): it is offered to every viewer as an
	// extra server-reflexive candidate, which reaches the agent through any
	// NAT. pion cannot gather it (its UDP mux has no mapped-address hook),
	// but it need not: the viewer's checks arrive at the host candidate.
	Mapped func() (external, internal netip.AddrPort, ok bool)
	// ConnectTimeout ends a session whose peer connection is not up this
	// long after the answer, so offers that never connect cannot hold the
	// agent's viewer slots. Default 10 s.
	ConnectTimeout time.Duration
	// Metrics receives the counters; default, a set of the Manager's own.
	Metrics *metrics.Metrics
	Logger  *slog.Logger
}

// Batcher gathers what is written to one address until Flush.
type Batcher interface {
	Begin(netip.AddrPort)
	Flush(netip.AddrPort) error
}

// Manager owns the sessions.
type Manager struct {
	cfg Config
	log *slog.Logger
	se  webrtc.SettingEngine

	mu sync.Mutex // guards sessions, early and Session.remoteSet
	// sessions are the live sessions by signaling session ID.
	sessions map[string]*Session
	// early holds trickled candidates that arrived before their session's
	// remote description was set: offers are answered on their own
	// goroutine, after the camera stream is ready, while a fast viewer
	// trickles at once. Bounded by maxEarly per session and maxEarlySessions,
	// and dropped after earlyTTL: an offer that is refused never collects
	// them.
	early map[string]*earlyCandidates
}

type earlyCandidates struct {
	since time.Time
	list  []webrtc.ICECandidateInit
}

const (
	maxEarly         = 32
	maxEarlySessions = 64
	earlyTTL         = 30 * time.Second
)

// NewManager returns a Manager.
func NewManager(cfg Config) *Manager {
	if cfg.QueueFrames == 0 {
		cfg.QueueFrames = 600
	}
	if cfg.CatchUp == 0 {
		cfg.CatchUp = 8
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.New(nil)
	}
	m := &Manager{cfg: cfg, log: cfg.Logger.With("component", "peer"), sessions: map[string]*Session{},
		early: map[string]*earlyCandidates{}}
	m.se.LoggerFactory = logging.PionFactory{Log: cfg.Logger}
	if cfg.UDPMux != nil {
		m.se.SetICEUDPMux(cfg.UDPMux)
	}
	m.se.SetIncludeLoopbackCandidate(cfg.IncludeLoopback)
	m.se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6})
	// Resolving viewers' mDNS candidates needs multicast, which many recorder
	// networks block; peer-reflexive discovery covers those viewers anyway.
	m.se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	return m
}

// Count returns the number of sessions.
func (m *Manager) Count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.sessions)
}

// Request is a viewer's offer, checked and ready to answer.
type Request struct {
	Session    string
	SDP        string
	Trickle    bool
	Camera     string
	ICEServers []proto.ICEServer
	Stream     *fanout.Stream
	// Send delivers signaling to the viewer through the rendezvous.
	Send func(proto.Message)
	// TokenID is the viewer token's jti; Expires ends the session when the
	// token does (zero: never).
	TokenID string
	Expires time.Time
	// Claim is the device claim the token was issued under; the session
	// ends when the device's claim changes (EndStale).
	Claim string
	// Owner tells whether the viewer is the device's owner.
	Owner bool
	// Subject is the viewer token's subject (user:N, share:ID, token:ID).
	Subject string
	// Served goes with the answer: which stream the viewer gets, and why.
	Served *proto.Served
	// Bootstrap, when set, is a warm stream in the same codec (the
	// camera's sub stream) whose cached picture the viewer gets while
	// Stream has none: video moves to Stream at its first keyframe, on the
	// same track.
	Bootstrap *fanout.Stream
}

// Session is one viewer's peer connection.
type Session struct {
	id     string
	m      *Manager
	pc     *webrtc.PeerConnection
	stream *fanout.Stream
	// boot is Request.Bootstrap.
	boot *fanout.Stream
	send func(proto.Message)
	log  *slog.Logger

	tokenID string
	subject string
	camera  string
	claim   string
	owner   bool
	served  *proto.Served
	// expiry ends the session when the viewer's token expires.
	expiry *time.Timer
	// up is set once the peer connection first reached connected.
	up atomic.Bool
	// dest is the viewer's address on the selected candidate pair when
	// media leaves through the agent's own socket (not a TURN relay): the
	// address frames are batched for.
	dest atomic.Pointer[netip.AddrPort]

	video, audio *webrtc.TrackLocalStaticRTP
	// bound closes when pion binds the video track to its sender: until
	// then WriteRTP drops packets without a word, and the GOP cache burst
	// that gives the viewer its first picture would be lost. pion binds
	// before it reports "connected" today, but does not promise to.
	bound     chan struct{}
	ctx       context.Context
	cancel    context.CancelFunc
	closeOnce sync.Once
	connected sync.Once

	// remoteSet tells whether trickled candidates can go to pc; guarded by
	// m.mu.
	remoteSet bool

	// sigMu orders what the agent signals: pion gathers as soon as the
	// local description is set and may find a candidate before the answer
	// is sent, but a viewer cannot add a candidate before it has the
	// answer, and one that does not hold them would lose it.
	sigMu    sync.Mutex
	answered bool
	held     []proto.Message
	// negMu serialises offer/answer exchanges: the first and ICE restarts.
	negMu sync.Mutex
	// restarts counts ICE restarts; guarded by negMu.
	restarts int

	mu sync.Mutex // guards sub and expiry
	// sub is the viewer's frame queue, set once DTLS is up.
	sub *fanout.Sub
}

// Has tells whether a session is live: an offer for it is an ICE restart.
func (m *Manager) Has(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sessions[id] != nil
}

// Subject is the token subject a live session was opened with ("" when
// there is no such session): an ICE restart must come from the same one.
func (m *Manager) Subject(id string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s := m.sessions[id]; s != nil {
		return s.subject
	}
	return ""
}

// Offer answers a viewer. An offer for a live session is the viewer's ICE
// restart (its network changed): the session renegotiates and keeps its
// stream. On error nothing new is left running.
func (m *Manager) Offer(ctx context.Context, req Request) error {
	m.mu.Lock()
	live := m.sessions[req.Session]
	m.mu.Unlock()
	if live != nil {
		return live.restart(ctx, req)
	}
	if req.Stream == nil {
		return fmt.Errorf("session %s has ended; open a new one", req.Session)
	}
	info, err := req.Stream.Acquire(ctx)
	if err != nil {
		return err
	}
	s, err := m.newSession(req, info)
	if err != nil {
		req.Stream.Release()
		return err
	}
	m.mu.Lock()
	if old := m.sessions[req.Session]; old != nil {
		m.mu.Unlock()
		s.close("duplicate session")
		return fmt.Errorf("session %s already exists", req.Session)
	}
	m.sessions[req.Session] = s
	m.mu.Unlock()

	s.negMu.Lock()
	err = s.answer(ctx, req)
	s.negMu.Unlock()
	if err != nil {
		s.close("answer failed")
		return err
	}
	if !req.Expires.IsZero() {
		// The agent's own check: an expired token ends the session even if
		// the rendezvous fails to.
		t := time.AfterFunc(time.Until(req.Expires), func() { s.close(string(proto.CodeExpired)) })
		s.mu.Lock()
		s.expiry = t
		s.mu.Unlock()
	}
	time.AfterFunc(m.cfg.ConnectTimeout, func() {
		if !s.up.Load() {
			s.close("not connected within " + m.cfg.ConnectTimeout.String())
		}
	})
	return nil
}

// EndStale ends every session whose token was issued under another claim of
// the device than claim ("" when it has no owner now: every session), and
// returns how many it ended.
func (m *Manager) EndStale(claim string) int {
	m.mu.Lock()
	var stale []*Session
	for _, s := range m.sessions {
		if claim == "" || s.claim != claim {
			stale = append(stale, s)
		}
	}
	m.mu.Unlock()
	for _, s := range stale {
		s.close(string(proto.CodeRevoked))
	}
	return len(stale)
}

// CountCamera returns how many sessions watch camera (any stream).
func (m *Manager) CountCamera(camera string) int {
	return m.count(func(s *Session) bool { return s.camera == camera })
}

// CountGuests returns how many sessions are not the owner's.
func (m *Manager) CountGuests() int { return m.count(func(s *Session) bool { return !s.owner }) }

// CountToken returns how many sessions use a viewer token ID.
func (m *Manager) CountToken(id string) int {
	return m.count(func(s *Session) bool { return s.tokenID == id })
}

func (m *Manager) count(match func(*Session) bool) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, s := range m.sessions {
		if match(s) {
			n++
		}
	}
	return n
}

func (m *Manager) newSession(req Request, info *fanout.Info) (*Session, error) {
	offer := &sdp.SessionDescription{}
	if err := offer.Unmarshal([]byte(req.SDP)); err != nil {
		return nil, fmt.Errorf("%w: the offer is not valid SDP: %w", proto.ErrBadMessage, err)
	}
	mime := webrtc.MimeTypeH264
	var fmtp, note string
	var err error
	if info.Codec == rtspsource.H265 {
		mime = webrtc.MimeTypeH265
		fmtp, err = chooseH265(offer, info.SPS)
	} else {
		fmtp, note, err = chooseH264(offer, info.SPS)
	}
	if err != nil {
		return nil, err
	}
	if note != "" {
		m.log.Debug("h264 profile", "note", note)
	}
	me := &webrtc.MediaEngine{}
	fb := []webrtc.RTCPFeedback{{Type: "nack"}, {Type: "nack", Parameter: "pli"}, {Type: "ccm", Parameter: "fir"}}
	videoCap := webrtc.RTPCodecCapability{MimeType: mime, ClockRate: 90000, SDPFmtpLine: fmtp, RTCPFeedback: fb}
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: videoCap, PayloadType: 102}, webrtc.RTPCodecTypeVideo); err != nil {
		return nil, err
	}
	var audioCap *webrtc.RTPCodecCapability
	if info.Audio != nil && offersAudio(offer, info.Audio.MimeType) {
		audioCap = &webrtc.RTPCodecCapability{MimeType: info.Audio.MimeType, ClockRate: info.Audio.ClockRate, Channels: 1}
		pt := webrtc.PayloadType(0)
		if info.Audio.MimeType == webrtc.MimeTypePCMA {
			pt = 8
		}
		if err := me.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: *audioCap, PayloadType: pt}, webrtc.RTPCodecTypeAudio); err != nil {
			return nil, err
		}
	}
	ir, err := interceptors()
	if err != nil {
		return nil, err
	}
	api := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(m.se))
	pc, err := api.NewPeerConnection(webrtc.Configuration{ICEServers: iceServers(req.ICEServers)})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Session{id: req.Session, m: m, pc: pc, stream: req.Stream, boot: req.Bootstrap, send: req.Send, ctx: ctx, cancel: cancel, bound: make(chan struct{}),
		log: m.log.With("session", req.Session, "camera", req.Camera), tokenID: req.TokenID, subject: req.Subject, camera: req.Camera, claim: req.Claim, owner: req.Owner, served: req.Served}
	pc.SCTP().Transport().ICETransport().OnSelectedCandidatePairChange(s.onPair)
	if s.video, err = webrtc.NewTrackLocalStaticRTP(videoCap, "video", "peercam-"+req.Camera); err != nil {
		cancel()
		_ = pc.Close()
		return nil, err
	}
	if audioCap != nil {
		if s.audio, err = webrtc.NewTrackLocalStaticRTP(*audioCap, "audio", "peercam-"+req.Camera); err != nil {
			cancel()
			_ = pc.Close()
			return nil, err
		}
	}
	return s, nil
}

// interceptors are what a sender needs, and no more: NACKs answered from
// the shared payloads (nackResponder) and sender reports, which browsers
// use to sync audio with video and to measure the round trip. pion's
// default set would add, per viewer, a copying NACK buffer of 1.5 MiB, a
// NACK generator and receiver reports for media the agent never receives,
// TWCC feedback for the same, and a stats interceptor on every packet.
func interceptors() (*interceptor.Registry, error) {
	ir := &interceptor.Registry{}
	ir.Add(nackResponderFactory{})
	sr, err := report.NewSenderInterceptor()
	if err != nil {
		return nil, err
	}
	ir.Add(sr)
	return ir, nil
}

func iceServers(in []proto.ICEServer) []webrtc.ICEServer {
	out := make([]webrtc.ICEServer, 0, len(in))
	for _, s := range in {
		out = append(out, webrtc.ICEServer{URLs: s.URLs, Username: s.Username, Credential: s.Credential})
	}
	return out
}

// restart answers a live session's new offer: the viewer restarts ICE after
// its network changed. Media keeps flowing to the same tracks; the viewer
// asks for a keyframe once the new path is up.
func (s *Session) restart(ctx context.Context, req Request) error {
	s.negMu.Lock()
	defer s.negMu.Unlock()
	if s.ctx.Err() != nil {
		return fmt.Errorf("session %s has ended", s.id)
	}
	s.restarts++
	s.log.Info("viewer restarts ICE", "restart", s.restarts)
	// Candidates of the new generation wait for the new offer, as the
	// first ones did; ours wait for the new answer.
	s.m.mu.Lock()
	s.remoteSet = false
	s.m.mu.Unlock()
	s.sigMu.Lock()
	s.answered, s.held = false, nil
	s.sigMu.Unlock()
	err := s.setOffer(req.SDP)
	if err == nil {
		err = s.reply(ctx, req)
	}
	if err != nil {
		s.log.Info("ICE restart failed", "err", err)
	}
	return err
}

func (s *Session) answer(ctx context.Context, req Request) error {
	pc := s.pc
	pc.OnConnectionStateChange(s.onState)
	if req.Trickle {
		pc.OnICECandidate(func(c *webrtc.ICECandidate) {
			if c == nil {
				s.signal(&proto.Candidate{Session: s.id}) // end of candidates
				return
			}
			init := c.ToJSON()
			s.signal(&proto.Candidate{Session: s.id, Candidate: init.Candidate, SDPMid: init.SDPMid, SDPMLineIndex: init.SDPMLineIndex})
		})
	}
	if err := s.setOffer(req.SDP); err != nil {
		return err
	}
	vs, err := pc.AddTrack(&boundTrack{TrackLocalStaticRTP: s.video, bound: s.bound})
	if err != nil {
		return err
	}
	go s.readRTCP(vs)
	if s.audio != nil {
		as, err := pc.AddTrack(s.audio)
		if err != nil {
			return err
		}
		go s.readRTCP(as)
	}
	return s.reply(ctx, req)
}

// setOffer sets the viewer's offer; one pion refuses is the viewer's fault.
func (s *Session) setOffer(sdp string) error {
	if err := s.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sdp}); err != nil {
		return fmt.Errorf("%w: %w", proto.ErrBadMessage, err)
	}
	return nil
}

// reply creates and sends the answer to the offer just set, then the
// trickled candidates held for it, and hands pc the viewer's candidates
// that came before it.
func (s *Session) reply(ctx context.Context, req Request) error {
	pc := s.pc
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		return err
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(ans); err != nil {
		return err
	}
	mapped := s.m.mappedCandidate()
	answerSDP := ""
	if !req.Trickle {
		// WHEP: the answer must carry every candidate.
		select {
		case <-gathered:
		case <-time.After(5 * time.Second):
		case <-ctx.Done():
			return ctx.Err()
		}
		if answerSDP, err = withCandidate(pc.LocalDescription().SDP, mapped); err != nil {
			return err
		}
	}
	s.sendAnswer(answerSDP, req.Trickle, mapped)

	m := s.m
	m.mu.Lock()
	var early []webrtc.ICECandidateInit
	if e := m.early[s.id]; e != nil {
		early = e.list
	}
	delete(m.early, s.id)
	s.remoteSet = true
	m.mu.Unlock()
	for _, c := range early {
		if err := pc.AddICECandidate(c); err != nil {
			s.log.Debug("early candidate", "err", err)
		}
	}
	return nil
}

// sendAnswer sends the answer, then the router-mapped candidate and the
// candidates pion found meanwhile.
func (s *Session) sendAnswer(answerSDP string, trickle bool, mapped string) {
	s.sigMu.Lock()
	defer s.sigMu.Unlock()
	if answerSDP == "" {
		answerSDP = s.pc.LocalDescription().SDP
	}
	s.send(&proto.Answer{Session: s.id, SDP: answerSDP, Served: s.served})
	s.answered = true
	if trickle && mapped != "" {
		mid, line := "0", uint16(0)
		s.send(&proto.Candidate{Session: s.id, Candidate: "candidate:" + mapped, SDPMid: &mid, SDPMLineIndex: &line})
	}
	for _, m := range s.held {
		s.send(m)
	}
	s.held = nil
}

// mappedCandidate is the router's port mapping as a candidate attribute
// value, or "" when there is none.
func (m *Manager) mappedCandidate() string {
	if m.cfg.Mapped == nil {
		return ""
	}
	ext, internal, ok := m.cfg.Mapped()
	if !ok {
		return ""
	}
	c, err := ice.NewCandidateServerReflexive(&ice.CandidateServerReflexiveConfig{Network: "udp", Address: ext.Addr().String(),
		Port: int(ext.Port()), Component: 1, RelAddr: internal.Addr().String(), RelPort: int(internal.Port())})
	if err != nil {
		m.log.Warn("mapped candidate", "err", err)
		return ""
	}
	return c.Marshal()
}

// withCandidate adds a candidate attribute to every media section of an SDP.
func withCandidate(in, cand string) (string, error) {
	if cand == "" {
		return in, nil
	}
	var d sdp.SessionDescription
	if err := d.Unmarshal([]byte(in)); err != nil {
		return "", fmt.Errorf("the answer: %w", err)
	}
	for _, md := range d.MediaDescriptions {
		at := len(md.Attributes) // before end-of-candidates, if any
		for i, a := range md.Attributes {
			if a.Key == "end-of-candidates" {
				at = i
				break
			}
		}
		md.Attributes = slices.Insert(md.Attributes, at, sdp.Attribute{Key: "candidate", Value: cand})
	}
	b, err := d.Marshal()
	return string(b), err
}

// signal sends a trickled candidate, holding it until the answer is out.
func (s *Session) signal(m proto.Message) {
	s.sigMu.Lock()
	defer s.sigMu.Unlock()
	if !s.answered {
		s.held = append(s.held, m)
		return
	}
	s.send(m)
}

// AddCandidate adds a viewer's trickled candidate.
func (m *Manager) AddCandidate(c *proto.Candidate) error {
	if c.Candidate == "" {
		return nil // end of candidates: nothing to do with pion
	}
	init := webrtc.ICECandidateInit{Candidate: c.Candidate, SDPMid: c.SDPMid, SDPMLineIndex: c.SDPMLineIndex}
	m.mu.Lock()
	s := m.sessions[c.Session]
	if s == nil || !s.remoteSet {
		// The offer is still being answered (or the session is unknown:
		// the rendezvous only forwards candidates of sessions it opened).
		defer m.mu.Unlock()
		e := m.early[c.Session]
		if e == nil {
			now := time.Now()
			for id, old := range m.early {
				if now.Sub(old.since) > earlyTTL {
					delete(m.early, id)
				}
			}
			if len(m.early) >= maxEarlySessions {
				return fmt.Errorf("session %s: too many sessions waiting for their offer", c.Session)
			}
			e = &earlyCandidates{since: now}
			m.early[c.Session] = e
		}
		if len(e.list) >= maxEarly {
			return fmt.Errorf("session %s: more than %d candidates before the offer", c.Session, maxEarly)
		}
		e.list = append(e.list, init)
		return nil
	}
	m.mu.Unlock()
	return s.pc.AddICECandidate(init)
}

// Bye ends a session the viewer left.
func (m *Manager) Bye(id, reason string) {
	m.mu.Lock()
	s := m.sessions[id]
	delete(m.early, id)
	m.mu.Unlock()
	if s != nil {
		s.closeQuiet(reason)
	}
}

// Close ends every session.
func (m *Manager) Close() {
	m.mu.Lock()
	all := make([]*Session, 0, len(m.sessions))
	for _, s := range m.sessions {
		all = append(all, s)
	}
	m.mu.Unlock()
	for _, s := range all {
		s.close("agent shutting down")
	}
}

func (s *Session) onState(st webrtc.PeerConnectionState) {
	s.log.Debug("peer connection state", "state", st.String())
	switch st {
	case webrtc.PeerConnectionStateConnected:
		// DTLS is up: only now can media be decrypted, so only now start.
		s.connected.Do(func() {
			s.up.Store(true)
			s.logPath()
			sub := s.stream.Subscribe(s.m.cfg.QueueFrames)
			s.mu.Lock()
			s.sub = sub
			s.mu.Unlock()
			go s.write(sub)
		})
	case webrtc.PeerConnectionStateFailed:
		s.close("connection failed")
	case webrtc.PeerConnectionStateClosed:
		s.close("connection closed")
	}
}

// onPair notes where media goes on the selected pair.
func (s *Session) onPair(p *webrtc.ICECandidatePair) {
	if p == nil || p.Local == nil || p.Remote == nil || p.Local.Typ == webrtc.ICECandidateTypeRelay {
		s.dest.Store(nil)
		return
	}
	ip, err := netip.ParseAddr(p.Remote.Address) // an mDNS name is not batched
	if err != nil {
		s.dest.Store(nil)
		return
	}
	dest := netip.AddrPortFrom(ip, p.Remote.Port)
	s.dest.Store(&dest)
}

func (s *Session) logPath() {
	stats := s.pc.GetStats()
	for _, v := range stats {
		pair, ok := v.(webrtc.ICECandidatePairStats)
		if !ok || !pair.Nominated {
			continue
		}
		local, _ := stats[pair.LocalCandidateID].(webrtc.ICECandidateStats)
		remote, _ := stats[pair.RemoteCandidateID].(webrtc.ICECandidateStats)
		relayed := local.CandidateType == webrtc.ICECandidateTypeRelay || remote.CandidateType == webrtc.ICECandidateTypeRelay
		s.m.cfg.Metrics.Connected(pathKind(local.CandidateType, remote.CandidateType))
		s.log.Info("viewer connected", "local", local.CandidateType.String(), "remote", remote.CandidateType.String(), "relayed", relayed)
		s.send(&proto.Path{Session: s.id, Relayed: relayed, Local: local.CandidateType.String(), Remote: remote.CandidateType.String()})
		return
	}
	s.m.cfg.Metrics.Connected("unknown")
	s.log.Info("viewer connected")
}

// pathKind names a session's path for the metrics: relay when either end
// is relayed, srflx when either went through NAT, else host.
func pathKind(local, remote webrtc.ICECandidateType) string {
	switch {
	case local == webrtc.ICECandidateTypeRelay || remote == webrtc.ICECandidateTypeRelay:
		return "relay"
	case local == webrtc.ICECandidateTypeSrflx || remote == webrtc.ICECandidateTypeSrflx,
		local == webrtc.ICECandidateTypePrflx || remote == webrtc.ICECandidateTypePrflx:
		return "srflx"
	}
	return "host"
}

// close ends the session and tells the viewer.
func (s *Session) close(reason string) {
	s.closeOnce.Do(func() {
		s.teardown(reason)
		s.send(&proto.Bye{Session: s.id, Reason: reason})
	})
}

// closeQuiet ends the session the viewer already ended.
func (s *Session) closeQuiet(reason string) {
	s.closeOnce.Do(func() { s.teardown(reason) })
}

func (s *Session) teardown(reason string) {
	s.cancel()
	s.mu.Lock()
	sub, expiry := s.sub, s.expiry
	s.mu.Unlock()
	if expiry != nil {
		expiry.Stop()
	}
	if sub != nil {
		s.stream.Unsubscribe(sub)
		s.log.Info("viewer left", "reason", reason, "dropped_frames", sub.Dropped.Load())
	}
	s.m.mu.Lock()
	delete(s.m.early, s.id)
	if s.m.sessions[s.id] == s {
		delete(s.m.sessions, s.id)
	}
	s.m.mu.Unlock()
	go func() { _ = s.pc.Close() }()
	s.stream.Release()
}

// boundTrack tells when pion has bound the track to a sender.
type boundTrack struct {
	*webrtc.TrackLocalStaticRTP
	bound chan struct{}
	once  sync.Once
}

func (t *boundTrack) Bind(c webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	p, err := t.TrackLocalStaticRTP.Bind(c)
	if err == nil {
		t.once.Do(func() { close(t.bound) })
	}
	return p, err
}

// cameraEvent tells the viewer its camera was lost or is back.
func (s *Session) cameraEvent(ev, reason string) {
	switch ev {
	case fanout.EventCameraLost:
		msg := "Camera not responding — reconnecting…"
		if reason != "" {
			// "The camera refused the user name or password (RTSP 401):
			// check the user and password in the camera URL. Retrying…"
			msg = strings.ToUpper(reason[:1]) + reason[1:] + ". Retrying…"
		} else {
			s.log.Info("camera lost; the session stays up while the agent reconnects")
		}
		s.send(&proto.Status{Session: s.id, State: proto.StateCameraLost, Message: msg})
	case fanout.EventCameraBack:
		s.send(&proto.Status{Session: s.id, State: proto.StateCameraBack})
	}
}

// readRTCP answers keyframe requests (PLI, FIR) from the GOP cache. pion's
// interceptors handle NACKs and reports on the way.
func (s *Session) readRTCP(sender *webrtc.RTPSender) {
	var last time.Time
	for {
		pkts, _, err := sender.ReadRTCP()
		if err != nil {
			return
		}
		for _, p := range pkts {
			switch p.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				// A burst of requests after one loss needs one answer.
				if time.Since(last) < time.Second {
					continue
				}
				last = time.Now()
				s.m.cfg.Metrics.KeyframeRequests.Inc()
				s.mu.Lock()
				sub := s.sub
				s.mu.Unlock()
				if sub != nil {
					sub.Resync()
				}
			}
		}
	}
}

func random32() uint32 {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint32(b[:])
}

// freshAge is how old a frame may be and still go out as it comes: an
// older one is the GOP cache or a backlog (see pacer).
const freshAge = 150 * time.Millisecond

// liveAge is how young a frame is when it has just come from the camera.
const liveAge = 20 * time.Millisecond

// pacer tells a viewer's live frames from its backlog. A frame older than
// freshAge starts a catch-up, which lasts until the queue it came from is
// empty or a frame is under liveAge old (sound queued behind the newest
// frame does not hold it up): every frame until then goes CatchUp times
// faster than real time, with timestamps compressed to match, so the
// decoder runs through them and the picture reaches live within a fraction
// of a second. The backlog's youngest frames (under freshAge old) are part
// of it: sent as they came, they would reach the viewer in one burst, which
// its jitter buffer takes for network delay.
type pacer struct{ catching bool }

// behind reports whether a frame age old, with queued frames waiting after
// it, is backlog.
func (p *pacer) behind(age time.Duration, queued int) bool {
	if age > freshAge {
		p.catching = true
	}
	if !p.catching {
		return false
	}
	if queued == 0 || age < liveAge { // the newest frame there is: live from the next
		p.catching = false
	}
	return true
}

// write feeds the viewer: its backlog at the catch-up pace (see pacer), live
// frames as they come with the camera's own spacing.
func (s *Session) write(sub *fanout.Sub) {
	const defaultDelta = 90000 / 25
	var pace pacer
	speed := int64(s.m.cfg.CatchUp)
	vSeq, aSeq := uint16(random32()), uint16(random32())
	vTS := random32()
	var aOffset uint32
	var lastIn uint32
	var lastOut time.Time
	first, aFirst := true, true
	mt := s.m.cfg.Metrics
	batch := s.m.cfg.Batch
	kind := proto.StreamMain
	if s.served != nil && s.served.Stream != "" {
		kind = s.served.Stream
	}
	out := mt.ForStream(s.camera, kind)
	select {
	case <-s.ctx.Done():
		return
	case <-s.bound:
	}
	// A cold main stream: its camera's sub stream gives the first picture
	// until main's first keyframe.
	var boot *fanout.Sub
	var bootC <-chan *fanout.Frame
	if s.boot != nil && s.stream.Stats().GOP == 0 {
		boot = s.boot.Subscribe(s.m.cfg.QueueFrames)
		bootC = boot.C()
		defer func() {
			if boot != nil {
				s.boot.Unsubscribe(boot)
			}
		}()
	}
	for {
		var f *fanout.Frame
		var from <-chan *fanout.Frame
		select {
		case <-s.ctx.Done():
			return
		case f = <-sub.C():
			from = sub.C()
			if boot != nil && f.Video {
				if !f.Keyframe {
					continue
				}
				s.boot.Unsubscribe(boot)
				boot, bootC = nil, nil
				s.log.Debug("main stream's first keyframe: leaving the sub stream")
			}
		case f = <-bootC:
			if f.Event != "" || !f.Video {
				continue // events and sound come from the stream watched
			}
			from = bootC
		}
		if f.Event != "" {
			s.cameraEvent(f.Event, f.Reason)
			continue
		}
		if !f.Video {
			if s.audio == nil || time.Since(f.At) > freshAge {
				continue // stale audio is worse than none
			}
			if aFirst {
				aOffset, aFirst = random32()-f.TS, false
			}
			for _, p := range f.Packets {
				pkt := rtp.Packet{Header: p.Header, Payload: p.Payload}
				pkt.SequenceNumber, pkt.Timestamp = aSeq, f.TS+aOffset
				aSeq++
				if err := s.audio.WriteRTP(&pkt); err != nil {
					s.log.Debug("audio write", "err", err)
				}
			}
			continue
		}
		behind := pace.behind(time.Since(f.At), len(from))
		delta := int64(int32(f.TS - lastIn))
		if delta <= 0 || delta > 5*90000 {
			delta = defaultDelta
		}
		if gap := time.Since(lastOut); !first && !behind && gap > time.Second {
			// The camera was gone (or reconnected with new timestamps):
			// advance the clock by the time that passed, or the viewer's
			// jitter buffer takes the gap for network delay and plays
			// further and further behind live.
			delta = int64(gap / (time.Second / 90000))
		}
		lastOut = time.Now()
		var pause time.Duration
		if behind {
			delta = max(delta/speed, 90)
			pause = time.Duration(delta) * time.Second / 90000
		}
		if !first {
			vTS += uint32(delta)
		}
		first = false
		lastIn = f.TS
		dest := s.dest.Load()
		if batch != nil && dest != nil {
			batch.Begin(*dest)
		}
		for _, p := range f.Packets {
			pkt := rtp.Packet{Header: p.Header, Payload: p.Payload}
			pkt.SequenceNumber, pkt.Timestamp = vSeq, vTS
			vSeq++
			if err := s.video.WriteRTP(&pkt); err != nil {
				s.log.Debug("video write", "err", err)
			}
		}
		if batch != nil && dest != nil {
			if err := batch.Flush(*dest); err != nil {
				s.log.Debug("video send", "err", err)
			}
		}
		if !behind {
			// The frame's last packet: the delay of every packet of it is
			// at most this, for one clock read a frame, not one a packet.
			mt.ForwardDelay.Update(time.Since(f.At).Seconds())
		}
		out.FramesOut.Inc()
		out.PacketsOut.Add(len(f.Packets))
		out.BytesOut.Add(f.Size)
		if pause > 0 {
			select {
			case <-s.ctx.Done():
				return
			case <-time.After(pause):
			}
		}
	}
}

// chooseH264 picks the fmtp line for the answer: the camera's real profile
// (from its SPS) with the constraint flags of the closest profile the viewer
// offers, and the camera's level. Browsers list a fixed set of profiles and a
// camera's SPS often sets constraint flags none of them lists exactly.
//
// When the viewer does not list the camera's profile at all (Chromium builds
// without High in their WebRTC list are common), the answer names the
// viewer's Main (or else Constrained Baseline) profile instead: the software
// decoders behind those lists decode High streams without B-frames, which is
// what go2rtc and mediamtx rely on too. The second result says so, for the log.
func chooseH264(offer *sdp.SessionDescription, sps []byte) (string, string, error) {
	if len(sps) < 4 {
		return "", "", fmt.Errorf("%w: the camera sent no H.264 parameter sets", ErrCodec)
	}
	profile, constraints, level := sps[1], sps[2], sps[3]
	best, bestScore := "", -1
	fallback, fallbackScore := "", -1
	var offered []string
	for _, codec := range videoCodecs(offer) {
		if !strings.EqualFold(codec.Name, "H264") {
			continue
		}
		params := fmtpParams(codec.Fmtp)
		if params["packetization-mode"] != "1" {
			continue
		}
		plid := params["profile-level-id"]
		offered = append(offered, plid)
		if len(plid) != 6 {
			continue
		}
		var p, c byte
		if _, err := fmt.Sscanf(plid[:4], "%02x%02x", &p, &c); err != nil {
			continue
		}
		if p != profile {
			score := map[byte]int{77: 3, 66: 1}[p]
			if p == 66 && c&0x40 != 0 {
				score = 2 // constrained baseline
			}
			if score > fallbackScore {
				fallback, fallbackScore = plid, score
			}
			continue
		}
		score := 1
		if c == constraints {
			score = 3
		} else if c&constraints == constraints {
			score = 2
		}
		if score > bestScore {
			best, bestScore = fmt.Sprintf("%02x%02x%02x", p, c, level), score
		}
	}
	const prefix = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id="
	switch {
	case best != "":
		return prefix + best, "", nil
	case fallback != "" && fallbackScore > 0 && profile >= 66:
		note := fmt.Sprintf("the viewer does not list H.264 %s; answering with its %s and sending the camera's stream as it is",
			profileName(profile), fallback)
		return prefix + fallback, note, nil
	}
	return "", "", fmt.Errorf("%w: the camera sends H.264 profile %s; the viewer offers %s",
		ErrCodec, profileName(profile), strings.Join(offered, ", "))
}

// chooseH265 returns the answer's fmtp for the camera's H.265 stream if the
// viewer offers H.265 with the camera's profile (1 Main, 2 Main 10) and tier
// (RFC 7798 section 7.2.2; level-id is not a matching parameter, and the
// answer states the camera's).
func chooseH265(offer *sdp.SessionDescription, sps []byte) (string, error) {
	p, err := h265.ParseSPS(sps)
	if err != nil {
		return "", fmt.Errorf("%w: the camera's H.265 parameter sets do not parse: %w", ErrCodec, err)
	}
	var offered []string
	for _, codec := range videoCodecs(offer) {
		if !strings.EqualFold(codec.Name, "H265") {
			continue
		}
		params := fmtpParams(codec.Fmtp)
		profile, tier, mode := params["profile-id"], params["tier-flag"], params["tx-mode"]
		if profile == "" {
			profile = "1"
		}
		if tier == "" {
			tier = "0"
		}
		offered = append(offered, "profile "+profile)
		if profile == strconv.Itoa(p.ProfileID) && tier == strconv.Itoa(p.TierFlag) && (mode == "" || mode == "srst") {
			return p.Fmtp(), nil
		}
	}
	if len(offered) == 0 {
		return "", fmt.Errorf("%w: the camera sends H.265 and the viewer offers none", ErrCodec)
	}
	return "", fmt.Errorf("%w: the camera sends H.265 profile %d (tier %d); the viewer offers %s",
		ErrCodec, p.ProfileID, p.TierFlag, strings.Join(offered, ", "))
}

// OfferedCodecs lists the video codecs an SDP offer lists ("H264",
// "H265"), so the agent can pick a stream the viewer can play.
func OfferedCodecs(offerSDP string) map[string]bool {
	out := map[string]bool{}
	offer := &sdp.SessionDescription{}
	if offer.Unmarshal([]byte(offerSDP)) != nil {
		return out
	}
	for _, c := range videoCodecs(offer) {
		out[strings.ToUpper(c.Name)] = true
	}
	return out
}

// videoCodecs lists the codecs of an offer's video sections, in its order.
func videoCodecs(offer *sdp.SessionDescription) []sdp.Codec {
	var out []sdp.Codec
	for _, md := range offer.MediaDescriptions {
		if md.MediaName.Media != "video" {
			continue
		}
		for _, f := range md.MediaName.Formats {
			if c, err := offer.GetCodecForPayloadType(parseUint8(f)); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}

func parseUint8(s string) uint8 {
	var v uint8
	_, _ = fmt.Sscanf(s, "%d", &v)
	return v
}

func fmtpParams(fmtp string) map[string]string {
	out := map[string]string{}
	for _, kv := range strings.Split(fmtp, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		out[strings.ToLower(k)] = strings.ToLower(v)
	}
	return out
}

func profileName(p byte) string {
	switch p {
	case 66:
		return "Baseline"
	case 77:
		return "Main"
	case 100:
		return "High"
	}
	return fmt.Sprintf("%d", p)
}

func offersAudio(offer *sdp.SessionDescription, mime string) bool {
	name := strings.TrimPrefix(mime, "audio/")
	for _, md := range offer.MediaDescriptions {
		if md.MediaName.Media != "audio" {
			continue
		}
		for _, f := range md.MediaName.Formats {
			if c, err := offer.GetCodecForPayloadType(parseUint8(f)); err == nil && strings.EqualFold(c.Name, name) {
				return true
			}
		}
	}
	return false
}
