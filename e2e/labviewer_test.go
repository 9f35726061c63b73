package e2e

import (
	"github.com/peercam/peercam/internal/testutil/pgtest"

	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4/pkg/format/rtph264"
	"github.com/chromedp/chromedp"
	"github.com/gorilla/websocket"
	"github.com/pion/webrtc/v4"

	"github.com/peercam/peercam/internal/media/h264"
	"github.com/peercam/peercam/proto"
)

// labViewerEnv, when set, makes the test binary a lab viewer instead of
// running tests: the NAT lab starts it inside the viewer's namespace, where
// the test process itself cannot open sockets.
const labViewerEnv = "PEERCAM_LAB_VIEWER"

func TestMain(m *testing.M) {
	if spec := os.Getenv(labViewerEnv); spec != "" {
		var req labViewerRequest
		var res labViewerResult
		switch err := json.Unmarshal([]byte(spec), &req); {
		case err != nil:
			res.Error = err.Error()
		case req.Browser:
			res = runLabBrowser(req)
		default:
			res = runLabViewer(req)
		}
		_ = json.NewEncoder(os.Stdout).Encode(res)
		os.Exit(0)
	}
	code := m.Run()
	pgtest.StopShared()
	if builtDir != "" {
		os.RemoveAll(builtDir)
	}
	os.Exit(code)
}

// labViewerRequest is what the lab viewer is asked to do.
type labViewerRequest struct {
	// Rendezvous is the base URL, http://host:port.
	Rendezvous, Device, Camera, Token string
	// Frames is how many frames to wait for; Hold is how long to keep
	// watching after the first frame (for traffic measurements).
	Frames int
	Hold   time.Duration
	// Timeout bounds the whole session.
	Timeout time.Duration
	// Browser: watch in headless Chromium through the guest page instead,
	// saving a screenshot to Screenshot.
	Browser    bool
	Screenshot string
}

// labViewerResult is what it saw.
type labViewerResult struct {
	// Answered: signaling worked and the agent answered the offer.
	Answered  bool
	Connected bool
	// LocalType and RemoteType are the selected pair's candidate types
	// (host, srflx, prflx, relay).
	LocalType, RemoteType string
	Frames                int
	Width, Height         int
	FirstFrame            time.Duration
	// MediaBytes counts RTP payload and header bytes received.
	MediaBytes int64
	// Restarts counts ICE restarts the viewer made after its path broke;
	// Recovered counts the times ICE came back after breaking, and
	// FramesAfterRecovery the frames received after the last of those.
	Restarts, Recovered int
	FramesAfterRecovery int
	// Timeline is when each step happened, from the viewer's start.
	Timeline map[string]time.Duration `json:",omitempty"`
	// PageStatus is the browser page's text (browser viewer only).
	PageStatus string
	Error      string
}

// Relayed tells whether either side of the pair is a TURN relay.
func (r labViewerResult) Relayed() bool { return r.LocalType == "relay" || r.RemoteType == "relay" }

// runLabViewer is a WebRTC viewer speaking the rendezvous's viewer protocol
// with a share token, as the browser does.
func runLabViewer(req labViewerRequest) (res labViewerResult) {
	ctx, cancel := context.WithTimeout(context.Background(), req.Timeout)
	defer cancel()
	start := time.Now()
	fail := func(err error) labViewerResult {
		res.Error = err.Error()
		return res
	}
	var tlMu sync.Mutex // guards timeline
	timeline := map[string]time.Duration{}
	mark := func(step string) {
		tlMu.Lock()
		defer tlMu.Unlock()
		if _, ok := timeline[step]; !ok {
			timeline[step] = time.Since(start).Round(time.Millisecond)
		}
	}
	sig := &labSignal{url: "ws" + req.Rendezvous[len("http"):] + "/ws/viewer", timeout: req.Timeout}
	defer sig.close()
	sess, err := sig.open(ctx, &proto.Open{Device: req.Device, Camera: req.Camera, Token: req.Token})
	if err != nil {
		return fail(err)
	}
	mark("session")
	var ice []webrtc.ICEServer
	for _, s := range sess.ICEServers {
		ice = append(ice, webrtc.ICEServer{URLs: s.URLs, Username: s.Username, Credential: s.Credential})
	}
	se := webrtc.SettingEngine{}
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	// Like a browser: a path silent for 3 s is disconnected.
	se.SetICETimeouts(3*time.Second, 15*time.Second, time.Second)
	pc, err := webrtc.NewAPI(webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{ICEServers: ice})
	if err != nil {
		return fail(err)
	}
	defer pc.Close()
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		return fail(err)
	}
	var frames atomic.Int64
	var mediaBytes atomic.Int64
	var firstFrame atomic.Int64
	var width, height atomic.Int64
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		dec := &rtph264.Decoder{PacketizationMode: 1}
		if dec.Init() != nil {
			return
		}
		for {
			pkt, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			mark("first RTP")
			mediaBytes.Add(int64(pkt.MarshalSize()))
			au, err := dec.Decode(pkt)
			if err != nil {
				continue
			}
			if frames.Add(1) == 1 {
				mark("first frame")
				firstFrame.Store(int64(time.Since(start)))
			}
			if sps, _ := h264.ParamSets(au); sps != nil {
				w, h, _ := h264.Size(sps)
				width.Store(int64(w))
				height.Store(int64(h))
			}
		}
	})
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		if st == webrtc.PeerConnectionStateConnected {
			mark("DTLS connected")
		}
	})
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c == nil {
			sig.send(&proto.Candidate{Session: sess.Session})
			return
		}
		ci := c.ToJSON()
		sig.send(&proto.Candidate{Session: sess.Session, Candidate: ci.Candidate, SDPMid: ci.SDPMid, SDPMLineIndex: ci.SDPMLineIndex})
	})
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return fail(err)
	}
	if err := pc.SetLocalDescription(offer); err != nil {
		return fail(err)
	}
	sig.send(&proto.Offer{Session: sess.Session, SDP: offer.SDP})

	// ICE restart, as viewer-web's live.js does it: when the path has been
	// broken for a moment, offer again with new ICE credentials on the same
	// session, and again every 4 s until it is back.
	var restarts, recovered atomic.Int64
	var recoveredAt atomic.Int64 // frame count when ICE last came back
	var broken atomic.Bool
	restart := func() {
		// The old WebSocket may be bound to an address that is gone:
		// signal on a new one, which takes the session over.
		if _, err := sig.open(ctx, &proto.Open{Device: req.Device, Camera: req.Camera, Token: req.Token, Resume: sess.Session}); err != nil {
			return
		}
		o, err := pc.CreateOffer(&webrtc.OfferOptions{ICERestart: true})
		if err != nil || pc.SetLocalDescription(o) != nil {
			return
		}
		restarts.Add(1)
		sig.send(&proto.Offer{Session: sess.Session, SDP: o.SDP})
	}
	pc.OnICEConnectionStateChange(func(st webrtc.ICEConnectionState) {
		switch st {
		case webrtc.ICEConnectionStateDisconnected, webrtc.ICEConnectionStateFailed:
			if broken.Swap(true) {
				return
			}
			go func() {
				for broken.Load() && ctx.Err() == nil {
					restart()
					select {
					case <-ctx.Done():
					case <-time.After(4 * time.Second):
					}
				}
			}()
		case webrtc.ICEConnectionStateConnected:
			mark("ICE connected")
			if broken.Swap(false) {
				recovered.Add(1)
				recoveredAt.Store(frames.Load())
			}
		}
	})
	errc := make(chan error, 1)
	var answered atomic.Bool
	go func() {
		for {
			var m proto.Message
			select {
			case <-ctx.Done():
				return
			case m = <-sig.in:
			case err := <-sig.errc:
				errc <- err
				return
			}
			switch m := m.(type) {
			case *proto.Answer:
				if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: m.SDP}); err != nil {
					errc <- err
					return
				}
				answered.Store(true)
				mark("answer")
			case *proto.Candidate:
				if m.Candidate != "" {
					_ = pc.AddICECandidate(webrtc.ICECandidateInit{Candidate: m.Candidate, SDPMid: m.SDPMid, SDPMLineIndex: m.SDPMLineIndex})
				}
			case *proto.Error:
				errc <- fmt.Errorf("%s: %s", m.Code, m.Message)
				return
			case *proto.Bye:
				errc <- fmt.Errorf("bye: %s", m.Reason)
				return
			}
		}
	}()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var holdUntil time.Time
	for {
		select {
		case <-ctx.Done():
			res.Error = fmt.Sprintf("after %s: %d frames, ICE %s", req.Timeout, frames.Load(), pc.ICEConnectionState())
		case err := <-errc:
			res.Error = err.Error()
		case <-tick.C:
			if int(frames.Load()) < req.Frames {
				continue
			}
			if holdUntil.IsZero() {
				holdUntil = time.Now().Add(req.Hold)
			}
			if time.Now().Before(holdUntil) {
				continue
			}
		}
		break
	}
	res.Answered = answered.Load()
	tlMu.Lock()
	res.Timeline = maps.Clone(timeline) // pion's goroutines may still mark
	tlMu.Unlock()
	res.Frames = int(frames.Load())
	res.Restarts, res.Recovered = int(restarts.Load()), int(recovered.Load())
	if res.Recovered > 0 {
		res.FramesAfterRecovery = res.Frames - int(recoveredAt.Load())
	}
	res.MediaBytes = mediaBytes.Load()
	res.FirstFrame = time.Duration(firstFrame.Load())
	res.Width, res.Height = int(width.Load()), int(height.Load())
	res.Connected = pc.ICEConnectionState() == webrtc.ICEConnectionStateConnected || pc.ICEConnectionState() == webrtc.ICEConnectionStateCompleted
	for _, r := range pc.GetReceivers() {
		if r.Transport() == nil {
			continue
		}
		if pair, err := r.Transport().ICETransport().GetSelectedCandidatePair(); err == nil && pair != nil {
			res.LocalType, res.RemoteType = pair.Local.Typ.String(), pair.Remote.Typ.String()
		}
	}
	if res.Error == "" && res.Frames < req.Frames {
		res.Error = fmt.Sprintf("%d frames, want %d", res.Frames, req.Frames)
	}
	return res
}

// labSignal is the viewer's signaling link; open replaces the WebSocket
// with a new one, as a viewer does after its network changed.
type labSignal struct {
	url     string
	timeout time.Duration
	// in and errc carry what the current WebSocket reads.
	in   chan proto.Message
	errc chan error

	mu sync.Mutex // guards ws and writes to it
	ws *websocket.Conn
}

// open dials, sends o and waits for the session message; the new socket
// then replaces the old one, which is closed.
func (s *labSignal) open(ctx context.Context, o *proto.Open) (*proto.Session, error) {
	if s.in == nil {
		s.in, s.errc = make(chan proto.Message, 64), make(chan error, 1)
	}
	dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	ws, _, err := websocket.DefaultDialer.DialContext(dctx, s.url, nil)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", s.url, err)
	}
	b, _ := proto.Encode(o)
	_ = ws.SetWriteDeadline(time.Now().Add(3 * time.Second))
	if err := ws.WriteMessage(websocket.TextMessage, b); err != nil {
		ws.Close()
		return nil, err
	}
	_ = ws.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, b, err = ws.ReadMessage()
	if err != nil {
		ws.Close()
		return nil, err
	}
	m, err := proto.Decode(b)
	sess, ok := m.(*proto.Session)
	if err != nil || !ok {
		ws.Close()
		return nil, fmt.Errorf("open: got %#v (%v)", m, err)
	}
	_ = ws.SetReadDeadline(time.Time{})
	s.mu.Lock()
	old := s.ws
	s.ws = ws
	s.mu.Unlock()
	if old != nil {
		old.Close()
	}
	go func() {
		for {
			_, b, err := ws.ReadMessage()
			s.mu.Lock()
			current := s.ws == ws
			s.mu.Unlock()
			if !current {
				return // replaced: its end is no news
			}
			if err != nil {
				select {
				case s.errc <- err:
				default:
				}
				return
			}
			if m, err := proto.Decode(b); err == nil {
				s.in <- m
			}
		}
	}()
	return sess, nil
}

func (s *labSignal) send(m proto.Message) {
	b, _ := proto.Encode(m)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ws != nil {
		_ = s.ws.SetWriteDeadline(time.Now().Add(3 * time.Second))
		_ = s.ws.WriteMessage(websocket.TextMessage, b)
	}
}

func (s *labSignal) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ws != nil {
		s.ws.Close()
	}
}

// runLabBrowser opens the guest link in headless Chromium, inside the
// viewer's namespace, and reads the live view's own stats.
func runLabBrowser(req labViewerRequest) (res labViewerResult) {
	dir, err := os.MkdirTemp("", "peercam-lab-chromium-")
	if err != nil {
		res.Error = err.Error()
		return res
	}
	defer os.RemoveAll(dir)
	// Chromium hides host addresses behind mDNS names by default, which
	// the agent does not resolve; a page with camera permission would show
	// them, and a lab has no mDNS.
	ctx, stop, err := startChromium(dir, chromedp.Flag("disable-features", "WebRtcHideLocalIpsWithMdns"))
	if err != nil {
		res.Error = err.Error()
		return res
	}
	defer stop()
	tctx, cancel := context.WithTimeout(ctx, req.Timeout)
	defer cancel()
	start := time.Now()
	link := req.Rendezvous + "/s/#" + req.Token
	playing := `(() => { const s = window.peercam && window.peercam.sessions()[0]; return !!s && s.framesDecoded > 10 && s.width > 0 && s.path !== ''; })()`
	err = chromedp.Do(tctx, chromedp.Navigate(link), waitJS(playing))
	raw, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify({s: window.peercam && window.peercam.sessions()[0], text: document.body.innerText})`))
	var page struct {
		S    *liveStats `json:"s"`
		Text string     `json:"text"`
	}
	_ = json.Unmarshal([]byte(raw), &page)
	if req.Screenshot != "" {
		if png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot()); err == nil {
			_ = os.WriteFile(req.Screenshot, png, 0o644)
		}
	}
	if err != nil {
		res.Error = fmt.Sprintf("after %s: %v; page: %q", time.Since(start).Round(time.Millisecond), err, page.Text)
	}
	if s := page.S; s != nil {
		res.Answered = s.FramesDecoded > 0
		res.Connected = s.Path != ""
		res.Frames, res.Width, res.Height = s.FramesDecoded, s.Width, s.Height
		if s.FirstFrameMs != nil {
			res.FirstFrame = time.Duration(*s.FirstFrameMs * float64(time.Millisecond))
		}
		res.LocalType, res.RemoteType, _ = strings.Cut(s.Pair, "/")
		res.PageStatus = page.Text
	}
	return res
}
