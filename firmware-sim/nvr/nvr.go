// Package nvr is the RTSP side of the simulator: one server that looks like a
// camera (one channel) or a multi-channel recorder, with the stream paths real
// Hikvision and Dahua boxes use, digest authentication, and TCP and UDP
// transports. Streams run all the time, as a real recorder's do.
package nvr

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/auth"
	"github.com/bluenviron/gortsplib/v4/pkg/base"
	"github.com/bluenviron/gortsplib/v4/pkg/description"
	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/bluenviron/gortsplib/v4/pkg/liberrors"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"

	"github.com/peercam/peercam/firmware-sim/camera"
)

// Config describes the simulated recorder.
type Config struct {
	// Listen is the RTSP TCP address. Default 127.0.0.1:8554; port 0 picks one.
	Listen string
	// Channels is the number of channels. Default 1 (a single camera).
	Channels int
	// User and Pass are the digest credentials. Default admin/admin.
	User, Pass string
	// Audio adds a G.711 µ-law track to every stream. Default true.
	Audio bool
	// BFrameChannels lists channels whose main stream sends H.264 with
	// B-frames, as some real cameras do.
	BFrameChannels []int
	// H265Channels lists channels whose main stream is H.265 Main (the sub
	// stream stays H.264), like a real Hikvision or Dahua NVR's default.
	H265Channels []int
	// StalledChannels, GarbageChannels and RejectChannels start with those
	// faults on (see Stall, Garbage and Reject); LongGOPChannels' main
	// streams send a keyframe only every 10 s (see LongGOP).
	StalledChannels, GarbageChannels, RejectChannels, LongGOPChannels []int
	// KeyframeOnPlay makes a stream send a keyframe at once when a client
	// starts playing it, as many cameras do for a new RTSP session;
	// without it a new client waits for the next one (every 4 s on main
	// streams). Default false.
	KeyframeOnPlay bool
	// IgnoreRTCPKeyframeRequests makes streams ignore RTCP PLI and FIR from
	// their RTSP clients, as many cameras do; by default they honour them.
	IgnoreRTCPKeyframeRequests bool
	// MainKbps, when set, pads main streams to this constant bitrate with
	// filler data, as a camera in CBR mode sends. Default 0: the clips' own
	// (low) bitrate.
	MainKbps int
	// Logger receives connection events. Default slog.Default().
	Logger *slog.Logger
	// OnVideo, when set, is called with each video frame's packets just
	// before they go to the stream's clients, from the stream's own
	// goroutine: a benchmark times frames from the camera to a viewer
	// with it.
	OnVideo func(channel int, kind string, pkts []*rtp.Packet)
}

// DefaultConfig returns the defaults documented on Config.
func DefaultConfig() Config {
	return Config{Listen: "127.0.0.1:8554", Channels: 1, User: "admin", Pass: "admin", Audio: true}
}

// MaxChannels bounds -channels; real recorders stop at 64.
const MaxChannels = 64

// Validate checks the config and names the field at fault.
func (c Config) Validate() error {
	if c.Listen == "" {
		return errors.New("nvr: listen: missing address")
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("nvr: listen: %w", err)
	}
	if c.Channels < 1 || c.Channels > MaxChannels {
		return fmt.Errorf("nvr: channels: %d is not between 1 and %d", c.Channels, MaxChannels)
	}
	if c.User == "" {
		return errors.New("nvr: user: must not be empty")
	}
	for _, ch := range c.BFrameChannels {
		if ch < 1 || ch > c.Channels {
			return fmt.Errorf("nvr: bframes: channel %d does not exist", ch)
		}
	}
	for name, list := range map[string][]int{"stall": c.StalledChannels, "garbage": c.GarbageChannels,
		"reject": c.RejectChannels, "long-gop": c.LongGOPChannels} {
		for _, ch := range list {
			if ch < 1 || ch > c.Channels {
				return fmt.Errorf("nvr: %s: channel %d does not exist", name, ch)
			}
		}
	}
	for _, ch := range c.LongGOPChannels {
		if contains(c.H265Channels, ch) || contains(c.BFrameChannels, ch) {
			return fmt.Errorf("nvr: long-gop: channel %d is also in h265 or bframes; pick one main stream", ch)
		}
	}
	for _, ch := range c.H265Channels {
		if ch < 1 || ch > c.Channels {
			return fmt.Errorf("nvr: h265: channel %d does not exist", ch)
		}
		if contains(c.BFrameChannels, ch) {
			return fmt.Errorf("nvr: h265: channel %d is also in bframes; the H.265 clips have none", ch)
		}
	}
	return nil
}

type streamKey struct {
	channel int
	kind    string
}

// Server is a running simulated recorder.
type Server struct {
	cfg    Config
	log    *slog.Logger
	srv    *gortsplib.Server
	addr   string
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// streams and clips are written once in Start and read-only afterwards.
	// The RTSP listener is already open while Start fills them (a stream
	// needs a started server), so a client that connects at once, such as an
	// agent retrying against a restarted recorder, waits on ready first.
	ready   chan struct{}
	streams map[streamKey]*gortsplib.ServerStream
	clips   map[streamKey]*camera.Clip
	// stalled holds a flag per channel: set, the channel keeps its
	// connections but sends nothing, as a hung camera does.
	stalled map[int]*atomic.Bool
	// garbage holds a flag per channel: set, the channel's video is
	// mangled (truncated packets, random payloads, junk in between).
	garbage map[int]*atomic.Bool
	// reject holds a flag per channel: set, the channel refuses every
	// credential (401), as a camera whose password was changed does.
	reject map[int]*atomic.Bool
	// longGOP holds a flag per channel: set, its main stream is the
	// 10-s-GOP clip.
	longGOP map[int]*atomic.Bool
	// keyframe asks a stream's player for a keyframe now; swap hands it
	// another clip (a resolution change).
	keyframe map[streamKey]chan struct{}
	swap     map[streamKey]chan *camera.Clip
	// asked counts keyframe requests by how they came (rtcp, http).
	askedRTCP, askedHTTP atomic.Uint64
	closed               sync.Once

	playMu sync.Mutex // guards playing
	// playing maps each session that played a stream to it.
	playing map[*gortsplib.ServerSession]streamKey
}

// Start opens the listeners and starts every stream.
func Start(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{cfg: cfg, log: cfg.Logger.With("component", "nvr"), ready: make(chan struct{}), streams: map[streamKey]*gortsplib.ServerStream{},
		clips: map[streamKey]*camera.Clip{}, stalled: map[int]*atomic.Bool{}, garbage: map[int]*atomic.Bool{},
		reject: map[int]*atomic.Bool{}, longGOP: map[int]*atomic.Bool{}, keyframe: map[streamKey]chan struct{}{}, swap: map[streamKey]chan *camera.Clip{},
		playing: map[*gortsplib.ServerSession]streamKey{}}
	for ch := 1; ch <= cfg.Channels; ch++ {
		s.stalled[ch], s.garbage[ch], s.reject[ch], s.longGOP[ch] = new(atomic.Bool), new(atomic.Bool), new(atomic.Bool), new(atomic.Bool)
		s.stalled[ch].Store(contains(cfg.StalledChannels, ch))
		s.garbage[ch].Store(contains(cfg.GarbageChannels, ch))
		s.reject[ch].Store(contains(cfg.RejectChannels, ch))
		s.longGOP[ch].Store(contains(cfg.LongGOPChannels, ch))
	}

	tcp, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("nvr: listen: %w", err)
	}
	s.addr = tcp.Addr().String()
	host, _, _ := net.SplitHostPort(s.addr)
	rtpConn, rtcpConn, err := listenUDPPair(host)
	if err != nil {
		tcp.Close()
		return nil, fmt.Errorf("nvr: udp: %w", err)
	}
	pre := map[string]net.PacketConn{
		rtpConn.LocalAddr().String():  rtpConn,
		rtcpConn.LocalAddr().String(): rtcpConn,
	}
	s.srv = &gortsplib.Server{
		Handler:        s,
		RTSPAddress:    s.addr,
		UDPRTPAddress:  rtpConn.LocalAddr().String(),
		UDPRTCPAddress: rtcpConn.LocalAddr().String(),
		AuthMethods:    []auth.VerifyMethod{auth.VerifyMethodDigestMD5},
		Listen:         func(string, string) (net.Listener, error) { return tcp, nil },
		ListenPacket: func(_, address string) (net.PacketConn, error) {
			if c, ok := pre[address]; ok {
				return c, nil
			}
			return nil, fmt.Errorf("unexpected UDP listen on %s", address)
		},
	}
	if err := s.srv.Start(); err != nil {
		tcp.Close()
		rtpConn.Close()
		rtcpConn.Close()
		return nil, fmt.Errorf("nvr: %w", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	for ch := 1; ch <= cfg.Channels; ch++ {
		for _, kind := range []string{camera.Main, camera.Sub} {
			if err := s.startStream(ctx, ch, kind); err != nil {
				close(s.ready)
				s.Close()
				return nil, err
			}
		}
	}
	close(s.ready)
	return s, nil
}

func (s *Server) startStream(ctx context.Context, ch int, kind string) error {
	clip, err := camera.LoadClip(ch, kind)
	if kind == camera.Main && contains(s.cfg.BFrameChannels, ch) {
		clip, err = camera.LoadBFrameClip()
	}
	if kind == camera.Main && contains(s.cfg.H265Channels, ch) {
		clip, err = camera.LoadH265Clip(ch)
	}
	if kind == camera.Main && s.longGOP[ch].Load() {
		clip, err = camera.LoadLongGOPClip()
	}
	if err != nil {
		return err
	}
	if kind == camera.Main {
		clip = clip.Padded(s.cfg.MainKbps)
	}
	video := &description.Media{Type: description.MediaTypeVideo, Formats: []format.Format{clip.Format()}}
	desc := &description.Session{Title: fmt.Sprintf("PeerCam sim channel %d %s", ch, kind), Medias: []*description.Media{video}}
	var audio *description.Media
	if s.cfg.Audio {
		audio = &description.Media{Type: description.MediaTypeAudio, Formats: []format.Format{camera.AudioFormat()}}
		desc.Medias = append(desc.Medias, audio)
	}
	st := &gortsplib.ServerStream{Server: s.srv, Desc: desc}
	if err := st.Initialize(); err != nil {
		return fmt.Errorf("nvr: channel %d %s: %w", ch, kind, err)
	}
	s.streams[streamKey{ch, kind}] = st
	s.clips[streamKey{ch, kind}] = clip
	kick := make(chan struct{}, 1)
	s.keyframe[streamKey{ch, kind}] = kick
	swap := make(chan *camera.Clip, 1)
	s.swap[streamKey{ch, kind}] = swap

	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		stalled, garbage := s.stalled[ch], s.garbage[ch]
		err := clip.PlayVideo(ctx, func(pkts []*rtp.Packet) {
			if stalled.Load() {
				return
			}
			if garbage.Load() {
				pkts = camera.Mangle(pkts)
			}
			if s.cfg.OnVideo != nil {
				s.cfg.OnVideo(ch, kind, pkts)
			}
			for _, p := range pkts {
				_ = st.WritePacketRTP(video, p)
			}
		}, kick, swap)
		if err != nil {
			s.log.Error("video stopped", "channel", ch, "stream", kind, "err", err)
		}
	}()
	if audio != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			stalled := s.stalled[ch]
			_ = camera.PlayAudio(ctx, func(p *rtp.Packet) {
				if !stalled.Load() {
					_ = st.WritePacketRTP(audio, p)
				}
			})
		}()
	}
	return nil
}

func contains(list []int, v int) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// Addr is the RTSP address the server listens on.
func (s *Server) Addr() string { return s.addr }

// URL returns the Hikvision-style URL of a channel's stream, with credentials.
func (s *Server) URL(channel int, kind string) string {
	n := 1
	if kind == camera.Sub {
		n = 2
	}
	u := url.URL{Scheme: "rtsp", User: url.UserPassword(s.cfg.User, s.cfg.Pass), Host: s.addr,
		Path: fmt.Sprintf("/Streaming/Channels/%d%02d", channel, n)}
	return u.String()
}

// StreamInfo is a channel's stream as the simulator sends it: its URL
// without credentials (as ONVIF's GetStreamUri returns it), codec (H264 or
// H265) and size.
func (s *Server) StreamInfo(channel int, kind string) (plainURL, codec string, width, height int) {
	c := s.clips[streamKey{channel, kind}]
	if c == nil {
		return "", "", 0, 0
	}
	u, _ := url.Parse(s.URL(channel, kind))
	u.User = nil
	return u.String(), c.Codec, c.Width, c.Height
}

// Stall makes a channel keep its connections but send nothing (stalled
// true), as a hung camera does, or resumes it.
func (s *Server) Stall(channel int, stalled bool) error {
	return s.setFlag(s.stalled, channel, stalled, "stalled")
}

// Garbage makes a channel's video malformed (on true) or clean again: some
// packets truncated, some payloads random bytes, junk packets in between,
// as a failing camera or a bad link delivers.
func (s *Server) Garbage(channel int, on bool) error {
	return s.setFlag(s.garbage, channel, on, "garbage")
}

func (s *Server) setFlag(flags map[int]*atomic.Bool, channel int, on bool, what string) error {
	f := flags[channel]
	if f == nil {
		return fmt.Errorf("nvr: channel %d does not exist", channel)
	}
	f.Store(on)
	s.log.Info("channel fault", "channel", channel, what, on)
	return nil
}

// Reject makes a channel refuse every credential with 401 (on true), as a
// camera whose password was changed does, or accept its own again.
func (s *Server) Reject(channel int, on bool) error {
	return s.setFlag(s.reject, channel, on, "reject")
}

// LongGOP makes a channel's main stream send a keyframe only every 10 s
// (on true), as a camera set for a low bitrate does, or its own 4 s again.
// The switch comes in band, like a reconfigured camera's.
func (s *Server) LongGOP(channel int, on bool) error {
	f := s.longGOP[channel]
	if f == nil {
		return fmt.Errorf("nvr: channel %d does not exist", channel)
	}
	clip, err := camera.LoadClip(channel, camera.Main)
	if on {
		clip, err = camera.LoadLongGOPClip()
	}
	if err != nil {
		return err
	}
	if err := s.swapClip(channel, clip.Padded(s.cfg.MainKbps)); err != nil {
		return err
	}
	f.Store(on)
	s.log.Info("channel fault", "channel", channel, "long_gop", on)
	return nil
}

// swapClip hands a channel's main stream another clip.
func (s *Server) swapClip(channel int, clip *camera.Clip) error {
	swap := s.swap[streamKey{channel, camera.Main}]
	if swap == nil {
		return fmt.Errorf("nvr: channel %d does not exist", channel)
	}
	select {
	case swap <- clip:
		return nil
	default:
		return fmt.Errorf("nvr: channel %d is already changing", channel)
	}
}

// Resize makes a channel's main stream switch to its sub stream's picture
// (small true: 640×360, 15 fps) or back to its own, mid-stream, with new
// SPS/PPS in band, as a camera reconfigured by its owner does.
func (s *Server) Resize(channel int, small bool) error {
	clip, err := camera.LoadClip(channel, camera.Sub)
	if !small {
		clip, err = camera.LoadClip(channel, camera.Main)
	}
	if err != nil {
		return err
	}
	if err := s.swapClip(channel, clip); err != nil {
		return err
	}
	s.log.Info("channel resized", "channel", channel, "width", clip.Width, "height", clip.Height)
	return nil
}

// Config is the configuration the server runs with (Listen is the address
// it got), to start it again after a simulated restart.
func (s *Server) Config() Config {
	c := s.cfg
	c.Listen = s.addr
	// A camera's settings survive its restart: the password it refuses and
	// its keyframe interval; a stall or garbage does not.
	c.RejectChannels, c.LongGOPChannels, c.StalledChannels, c.GarbageChannels = nil, nil, nil, nil
	for ch := 1; ch <= c.Channels; ch++ {
		if s.reject[ch].Load() {
			c.RejectChannels = append(c.RejectChannels, ch)
		}
		if s.longGOP[ch].Load() {
			c.LongGOPChannels = append(c.LongGOPChannels, ch)
		}
	}
	return c
}

// Close stops the streams and the server; closing twice is harmless.
func (s *Server) Close() {
	s.closed.Do(func() {
		s.cancel()
		s.wg.Wait()
		for _, st := range s.streams {
			st.Close()
		}
		s.srv.Close()
	})
}

// Wait blocks until the server fails or is closed.
func (s *Server) Wait() error { return s.srv.Wait() }

// ParsePath maps a request path and query to a channel and stream kind. It
// accepts Hikvision's /Streaming/Channels/101 (channel 1 main, 102 sub) and
// Dahua's /cam/realmonitor?channel=1&subtype=0 (main, 1 sub).
func ParsePath(path, query string) (channel int, kind string, ok bool) {
	path = strings.Trim(path, "/")
	if rest, found := strings.CutPrefix(strings.ToLower(path), "streaming/channels/"); found {
		n, err := strconv.Atoi(rest)
		if err != nil || n < 101 {
			return 0, "", false
		}
		switch n % 100 {
		case 1:
			return n / 100, camera.Main, true
		case 2:
			return n / 100, camera.Sub, true
		}
		return 0, "", false
	}
	if path == "cam/realmonitor" {
		q, err := url.ParseQuery(query)
		if err != nil {
			return 0, "", false
		}
		ch, err := strconv.Atoi(q.Get("channel"))
		if err != nil {
			return 0, "", false
		}
		switch q.Get("subtype") {
		case "", "0":
			return ch, camera.Main, true
		case "1":
			return ch, camera.Sub, true
		}
	}
	return 0, "", false
}

func (s *Server) lookup(c *gortsplib.ServerConn, req *base.Request, path, query string) (*base.Response, *gortsplib.ServerStream, error) {
	<-s.ready
	ch, kind, ok := ParsePath(path, query)
	if f := s.reject[ch]; !c.VerifyCredentials(req, s.cfg.User, s.cfg.Pass) || (f != nil && f.Load()) {
		return &base.Response{StatusCode: base.StatusUnauthorized}, nil, liberrors.ErrServerAuth{}
	}
	st := s.streams[streamKey{ch, kind}]
	if !ok || st == nil {
		s.log.Info("unknown stream requested", "path", path, "query", query, "remote", c.NetConn().RemoteAddr())
		return &base.Response{StatusCode: base.StatusNotFound}, nil, nil
	}
	return &base.Response{StatusCode: base.StatusOK}, st, nil
}

// OnDescribe implements gortsplib.ServerHandlerOnDescribe.
func (s *Server) OnDescribe(ctx *gortsplib.ServerHandlerOnDescribeCtx) (*base.Response, *gortsplib.ServerStream, error) {
	return s.lookup(ctx.Conn, ctx.Request, ctx.Path, ctx.Query)
}

// OnSetup implements gortsplib.ServerHandlerOnSetup.
func (s *Server) OnSetup(ctx *gortsplib.ServerHandlerOnSetupCtx) (*base.Response, *gortsplib.ServerStream, error) {
	return s.lookup(ctx.Conn, ctx.Request, ctx.Path, ctx.Query)
}

// OnPlay implements gortsplib.ServerHandlerOnPlay.
func (s *Server) OnPlay(ctx *gortsplib.ServerHandlerOnPlayCtx) (*base.Response, error) {
	ch, kind, ok := ParsePath(ctx.Path, ctx.Query)
	if ok {
		s.playMu.Lock()
		s.playing[ctx.Session] = streamKey{ch, kind}
		s.playMu.Unlock()
	}
	if s.cfg.KeyframeOnPlay {
		s.RequestKeyframe(ch, kind, ok)
	}
	if ok && !s.cfg.IgnoreRTCPKeyframeRequests {
		// A PLI or FIR from the client asks for a keyframe (RFC 4585,
		// RFC 5104), as cameras that honour RTCP feedback over RTSP do.
		ctx.Session.OnPacketRTCPAny(func(_ *description.Media, pkt rtcp.Packet) {
			switch pkt.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				s.askedRTCP.Add(1)
				s.RequestKeyframe(ch, kind, true)
			}
		})
	}
	return &base.Response{StatusCode: base.StatusOK}, nil
}

// OnSessionClose implements gortsplib.ServerHandlerOnSessionClose.
func (s *Server) OnSessionClose(ctx *gortsplib.ServerHandlerOnSessionCloseCtx) {
	s.playMu.Lock()
	delete(s.playing, ctx.Session)
	s.playMu.Unlock()
}

// Playing counts the RTSP sessions playing a stream now.
func (s *Server) Playing(channel int, kind string) int {
	s.playMu.Lock()
	defer s.playMu.Unlock()
	n := 0
	for _, k := range s.playing {
		if k == (streamKey{channel, kind}) {
			n++
		}
	}
	return n
}

// Keyframe is a keyframe request from the camera's web API (ISAPI): ok
// false when no such stream exists or the channel refuses credentials.
func (s *Server) Keyframe(channel int, kind string) bool {
	if s.keyframe[streamKey{channel, kind}] == nil || s.reject[channel].Load() {
		return false
	}
	s.askedHTTP.Add(1)
	s.RequestKeyframe(channel, kind, true)
	return true
}

// KeyframeRequests counts the keyframe requests the streams were sent over
// RTCP (PLI or FIR on an RTSP session) and over HTTP (ISAPI).
func (s *Server) KeyframeRequests() (rtcp, http uint64) {
	return s.askedRTCP.Load(), s.askedHTTP.Load()
}

// RequestKeyframe makes a stream send a keyframe now, as a camera asked for
// one does; ok false (a path that named no stream) does nothing.
func (s *Server) RequestKeyframe(channel int, kind string, ok bool) {
	if kick := s.keyframe[streamKey{channel, kind}]; ok && kick != nil {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
}

// listenUDPPair opens an even RTP port and the RTCP port after it, as RTSP's
// UDP transport needs (RFC 3550 section 11).
func listenUDPPair(host string) (net.PacketConn, net.PacketConn, error) {
	for i := 0; i < 100; i++ {
		a, err := net.ListenPacket("udp", net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, nil, err
		}
		port := a.LocalAddr().(*net.UDPAddr).Port
		if port%2 != 0 || port == 65534 {
			a.Close()
			continue
		}
		b, err := net.ListenPacket("udp", net.JoinHostPort(host, strconv.Itoa(port+1)))
		if err != nil {
			a.Close()
			continue
		}
		return a, b, nil
	}
	return nil, nil, errors.New("no free pair of consecutive UDP ports")
}
