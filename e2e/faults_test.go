package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/gorilla/websocket"
	"github.com/pion/webrtc/v4"

	"github.com/peercam/peercam/device-agent/agent"
	"github.com/peercam/peercam/firmware-sim/faults"
	"github.com/peercam/peercam/firmware-sim/nvr"
	"github.com/peercam/peercam/proto"
	"github.com/peercam/peercam/rendezvous/server"
)

// A camera that stalls (keeps its socket, stops sending) or restarts:
// the viewer's page says "Camera not responding — reconnecting…" within
// the stall bound, keeps its WebRTC session, and the picture comes back by
// itself once the camera sends again. Other cameras are untouched.
func TestBrowserCameraFaults(t *testing.T) {
	// The camera sends a keyframe to a new RTSP session, as many do: the
	// agent's reconnection gets a picture at once instead of waiting up to a
	// keyframe interval.
	in := startInfraSim(t, 2, func(c *nvr.Config) { c.KeyframeOnPlay = true })
	ag, stop := startAgent(t, in, 2, nil)
	waitFor(t, 10*time.Second, "agent online", func() bool { return in.rv.Hub().Online(ag.ID()) })
	if err := server.ClaimDevice(context.Background(), in.dataDir, ownerName, ag.ID(), "Shop NVR"); err != nil {
		t.Fatal(err)
	}
	sys := &system{sim: in.sim, rv: in.rv, agent: ag, dataDir: in.dataDir, stopAgent: stop}
	rec := faults.New(sys.sim, testLogger(t))
	t.Cleanup(rec.Close)
	ctx := chromium(t)
	signIn(t, ctx, sys)
	frames := func() int {
		t.Helper()
		st := sessionStats(t, ctx)
		if len(st) == 0 {
			return 0
		}
		return st[0].FramesDecoded
	}
	open := func() {
		do(t, ctx, 30*time.Second, "live view of channel 1",
			evalJS(fmt.Sprintf(`location.hash = '#/d/%s/c/1'`, sys.agent.ID())),
			waitJS(`(() => { const s = window.peercam.sessions()[0]; return s && s.camera === '1' && s.framesDecoded > 25; })()`))
	}
	open()
	session := func() string {
		raw := sessionStats(t, ctx)
		if len(raw) == 0 {
			return ""
		}
		return raw[0].Camera
	}

	t.Run("camera stalls and resumes", func(t *testing.T) {
		lostAt := time.Now()
		if err := rec.Server().Stall(1, true); err != nil {
			t.Fatal(err)
		}
		do(t, ctx, 6*time.Second, "stall shown", waitJS(`document.querySelector('.status').textContent.includes('Camera not responding')`))
		shown := time.Since(lostAt)
		screenshot(t, ctx, "camera-stalled")
		before := frames()
		backAt := time.Now()
		if err := rec.Server().Stall(1, false); err != nil {
			t.Fatal(err)
		}
		do(t, ctx, 12*time.Second, "picture back after the stall",
			waitJS(fmt.Sprintf(`(() => { const s = window.peercam.sessions()[0]; return s && s.framesDecoded > %d + 25; })()`, before)),
			waitJS(`!document.querySelector('.status').textContent.includes('Camera not responding')`))
		t.Logf("stall: told after %v; picture back %v after the camera sent again",
			shown.Round(10*time.Millisecond), time.Since(backAt).Round(10*time.Millisecond))
		if shown > 3500*time.Millisecond {
			t.Fatalf("the page said nothing for %v after the camera stalled, want about 3 s", shown)
		}
		if session() != "1" {
			t.Fatal("the live session changed")
		}
	})

	t.Run("camera changes resolution mid-stream", func(t *testing.T) {
		if err := rec.Server().Resize(1, true); err != nil {
			t.Fatal(err)
		}
		do(t, ctx, 10*time.Second, "new size shown without a reload",
			waitJS(`(() => { const s = window.peercam.sessions()[0]; return s && s.width === 640 && s.height === 360; })()`),
			waitJS(`document.querySelector('.status').textContent.includes('640×360')`))
		screenshot(t, ctx, "camera-resized")
		if err := rec.Server().Resize(1, false); err != nil {
			t.Fatal(err)
		}
		do(t, ctx, 10*time.Second, "back to its own size",
			waitJS(`(() => { const s = window.peercam.sessions()[0]; return s && s.width === 1280 && s.height === 720; })()`))
		if session() != "1" {
			t.Fatal("the live session changed")
		}
	})

	t.Run("camera restarts", func(t *testing.T) {
		before := frames()
		done := make(chan error, 1)
		start := time.Now()
		go func() { done <- rec.Restart(3 * time.Second) }()
		do(t, ctx, 6*time.Second, "restart shown", waitJS(`document.querySelector('.status').textContent.includes('Camera not responding')`))
		shown := time.Since(start)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		backAt := time.Now()
		do(t, ctx, 12*time.Second, "picture back after the restart",
			waitJS(fmt.Sprintf(`(() => { const s = window.peercam.sessions()[0]; return s && s.framesDecoded > %d + 25; })()`, before)),
			waitJS(`!document.querySelector('.status').textContent.includes('Camera not responding')`))
		back := time.Since(backAt)
		t.Logf("restart: told after %v; picture back %v after the camera answered again", shown.Round(10*time.Millisecond), back.Round(10*time.Millisecond))
		if shown > 3500*time.Millisecond {
			t.Fatalf("the page said nothing for %v after the camera went away, want about 3 s", shown)
		}
		if back > 5*time.Second {
			t.Fatalf("picture back %v after the camera answered, want within about 3 s", back)
		}
		screenshot(t, ctx, "camera-back")
	})

	t.Run("camera comes back refusing the password", func(t *testing.T) {
		// Its password was changed while it rebooted: the page says what
		// to fix, not just that it is gone, and plays again once the
		// camera takes the agent's password.
		if err := rec.Server().Reject(1, true); err != nil {
			t.Fatal(err)
		}
		if err := rec.Restart(500 * time.Millisecond); err != nil {
			t.Fatal(err)
		}
		do(t, ctx, 10*time.Second, "refusal shown", waitJS(`document.querySelector('.status').textContent.includes('refused the user name or password')`))
		screenshot(t, ctx, "camera-refuses-password")
		before := frames()
		if err := rec.Server().Reject(1, false); err != nil {
			t.Fatal(err)
		}
		do(t, ctx, 12*time.Second, "picture back once the password is accepted",
			waitJS(fmt.Sprintf(`(() => { const s = window.peercam.sessions()[0]; return s && s.framesDecoded > %d + 25; })()`, before)),
			waitJS(`!document.querySelector('.status').textContent.includes('refused')`))
		if session() != "1" {
			t.Fatal("the live session changed")
		}
	})
}

// A camera set to a keyframe every 10 s is not taken for a stalled one:
// frames keep coming at its rate and the agent sees no outage. The first
// viewer of its cold main stream starts at once on the warm sub stream, and
// a viewer joining the warm main stream starts at once from the cached GOP.
// Once nobody watches main and its pull has stopped, the next viewer
// starts on the sub stream again (a stopped stream's old GOP is gone). The
// camera ignores RTCP keyframe requests, as many do.
func TestCameraLongGOP(t *testing.T) {
	in := startInfraSim(t, 1, func(c *nvr.Config) { c.LongGOPChannels = []int{1}; c.IgnoreRTCPKeyframeRequests = true })
	ag, _ := startAgent(t, in, 1, func(c *agent.Config) { c.Linger = 200 * time.Millisecond })
	waitFor(t, 10*time.Second, "agent online", func() bool { return in.rv.Hub().Online(ag.ID()) })
	if err := server.ClaimDevice(context.Background(), in.dataDir, ownerName, ag.ID(), "Shop NVR"); err != nil {
		t.Fatal(err)
	}
	token, err := mintToken(context.Background(), in.dataDir, ag.ID(), []string{"1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	url := in.rv.URL() + "/whep/" + ag.ID() + "/1"
	// Nobody watches the main stream; its sub stream is kept warm, so the
	// first viewer starts on the sub's picture rather than waiting up to
	// 10 s for main's keyframe.
	waitFor(t, 10*time.Second, "sub stream warm", func() bool { return ag.Stream("1", "sub").Stats().GOP > 0 })
	if ag.Stream("1", "main").Stats().Running {
		t.Fatal("the main stream is pulled before anyone watches it")
	}
	// startsOnSub checks that a viewer's first picture was the sub stream's
	// (640×360), not main's next keyframe: that can come at once by chance,
	// so the size says which it was.
	startsOnSub := func(who string) whepResult {
		res := watchWHEPWithin(t, http.DefaultClient, url, token, 1, 15*time.Second)
		if res.width != 640 || res.firstFrame > 2*time.Second {
			t.Fatalf("%s started on a %d×%d picture after %v, want the warm sub stream's 640×360 at once",
				who, res.width, res.height, res.firstFrame)
		}
		return res
	}
	cold := startsOnSub("the first viewer of the cold main stream")
	p, stop := play(t, url, token)
	waitFor(t, 15*time.Second, "playing", func() bool { return p.frames.Load() > 0 })
	// On the sub stream (15 fps) until main's first keyframe, up to 10 s.
	waitFor(t, 12*time.Second, "the main stream's first keyframe", func() bool { return ag.Stream("1", "main").Stats().GOP > 0 })
	time.Sleep(200 * time.Millisecond)
	start, from := time.Now(), p.frames.Load()
	time.Sleep(8 * time.Second)
	got := p.frames.Load() - from
	fps := float64(got) / time.Since(start).Seconds()
	warm := watchWHEPWithin(t, http.DefaultClient, url, token, 1, 5*time.Second)
	st := ag.Stream("1", "main").Stats()
	t.Logf("10 s GOP: cold main stream's first frame %v (from the sub stream), warm %v; %.1f fps over 8 s on main; %d outages; GOP cache %d frames",
		cold.firstFrame.Round(time.Millisecond), warm.firstFrame.Round(time.Millisecond), fps, st.Outages, st.GOP)
	if st.Outages != 0 {
		t.Fatalf("the agent took a camera with a 10 s GOP for lost %d times", st.Outages)
	}
	if fps < 20 {
		t.Fatalf("%.1f fps over 8 s, want the camera's 25", fps)
	}
	p.mu.Lock()
	n := len(p.connected)
	p.mu.Unlock()
	if n != 1 {
		t.Fatalf("the player connected %d times, want once", n)
	}
	if warm.firstFrame > 2*time.Second {
		t.Fatalf("a viewer joining the warm stream waited %v for its first frame", warm.firstFrame)
	}
	stop()
	waitFor(t, 10*time.Second, "main stream stopped after its linger", func() bool { return !ag.Stream("1", "main").Stats().Running })
	startsOnSub("the next viewer of the stopped main stream")
}

// The agent restarts (killed, back 3 s later): the open page says "Recorder
// offline — reconnecting…", never "not found", and plays again by itself
// soon after the agent registers, without a reload.
func TestBrowserAgentRestart(t *testing.T) {
	in := startInfraSim(t, 1, func(c *nvr.Config) { c.KeyframeOnPlay = true })
	var cfg agent.Config
	ag, stop := startAgent(t, in, 1, func(c *agent.Config) { cfg = *c })
	waitFor(t, 10*time.Second, "agent online", func() bool { return in.rv.Hub().Online(ag.ID()) })
	if err := server.ClaimDevice(context.Background(), in.dataDir, ownerName, ag.ID(), "Shop NVR"); err != nil {
		t.Fatal(err)
	}
	sys := &system{sim: in.sim, rv: in.rv, agent: ag, dataDir: in.dataDir, stopAgent: stop}
	ctx := chromium(t)
	signIn(t, ctx, sys)
	do(t, ctx, 30*time.Second, "live view of channel 1",
		evalJS(fmt.Sprintf(`location.hash = '#/d/%s/c/1'`, ag.ID())),
		waitJS(`(() => { const s = window.peercam.sessions()[0]; return s && s.camera === '1' && s.framesDecoded > 25; })()`))
	before := sessionStats(t, ctx)[0].FramesDecoded

	stop()
	do(t, ctx, 5*time.Second, "offline shown", waitJS(`document.querySelector('.status').textContent.includes('Recorder offline')`))
	screenshot(t, ctx, "recorder-offline")
	time.Sleep(3 * time.Second)
	if txt := pageText(t, ctx); strings.Contains(txt, "not found") {
		t.Fatalf("the page says %q while the agent is away", txt)
	}
	// The same agent (same key, same state) comes back.
	restartAgent(t, in, cfg)
	registered := time.Now()
	do(t, ctx, 15*time.Second, "picture back after the agent restart",
		waitJS(fmt.Sprintf(`(() => { const s = window.peercam.sessions()[0]; return s && s.framesDecoded > %d + 10; })()`, before)),
		waitJS(`!document.querySelector('.status').textContent.includes('Recorder offline')`))
	back := time.Since(registered)
	t.Logf("agent restart: picture back %v after the agent registered again", back.Round(10*time.Millisecond))
	if back > 5*time.Second {
		t.Fatalf("picture back %v after the agent registered, want within 5 s", back)
	}
	screenshot(t, ctx, "recorder-back")
}

// restartAgent runs an agent again with cfg (the same key and state as one
// that stopped) and waits until it is registered.
func restartAgent(t testing.TB, in *infra, cfg agent.Config) *agent.Agent {
	t.Helper()
	ag, err := agent.New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(in.ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = ag.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	waitFor(t, 10*time.Second, "agent registered again", func() bool { return in.rv.Hub().Online(ag.ID()) })
	return ag
}

func pageText(t *testing.T, ctx context.Context) string {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s, err := chromedp.Run(tctx, chromedp.Evaluate[string](`document.body.innerText`))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The rendezvous restarts: a live peer-to-peer picture does not notice,
// and the agent is registered again within 2 s of the server accepting
// connections.
// restartableRV runs a rendezvous on 127.0.0.1 that the test can stop and
// start again on the same address (same data, same keys), with an owner.
type restartableRV struct {
	t   testing.TB
	cfg server.Config
}

func (r *restartableRV) run() (*server.Server, func()) {
	r.t.Helper()
	rv, err := server.New(r.cfg)
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = rv.Run(ctx) }()
	stop := func() { cancel(); <-done }
	r.t.Cleanup(stop)
	r.cfg.HTTPAddr = rv.Addr() // the next run takes the same port
	return rv, stop
}

// startRestartable is an infra whose rendezvous can restart.
func startRestartable(t testing.TB) (*infra, *restartableRV, func()) {
	t.Helper()
	log := testLogger(t)
	simCfg := nvr.DefaultConfig()
	simCfg.Listen, simCfg.Channels, simCfg.Logger = "127.0.0.1:0", 1, log
	sim, err := nvr.Start(simCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	dataDir := t.TempDir()
	r := &restartableRV{t: t, cfg: server.DefaultConfig()}
	r.cfg.DataDir, r.cfg.HTTPAddr, r.cfg.STUNAddr, r.cfg.Logger = dataDir, "127.0.0.1:0", "off", log
	rv, stop := r.run()
	if err := server.AddUser(context.Background(), dataDir, ownerName, ownerPass); err != nil {
		t.Fatal(err)
	}
	return &infra{sim: sim, rv: rv, dataDir: dataDir, ctx: context.Background()}, r, stop
}

func TestRendezvousRestart(t *testing.T) {
	in, r, stopRV := startRestartable(t)
	rv, dataDir := in.rv, in.dataDir
	ag, _ := startAgent(t, in, 1, func(c *agent.Config) { c.NVR.AlwaysOn = true })
	waitFor(t, 10*time.Second, "agent online", func() bool { return rv.Hub().Online(ag.ID()) })
	if err := server.ClaimDevice(context.Background(), dataDir, ownerName, ag.ID(), "NVR"); err != nil {
		t.Fatal(err)
	}
	token, err := mintToken(context.Background(), dataDir, ag.ID(), []string{"1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	w := openWHEP(t, &binSystem{base: rv.URL(), agentID: ag.ID()}, "1", token, true)
	if w.status != 201 {
		t.Fatalf("WHEP: %d %s", w.status, w.errorRaw)
	}
	w.waitVideo(t)

	sessionID := w.loc[strings.LastIndex(w.loc, "/")+1:]
	stopRV()
	time.Sleep(3 * time.Second) // down for a while: the agent's redials fail
	before := w.packets.Load()
	rv2, _ := r.run()
	up := time.Now()
	waitFor(t, 10*time.Second, "agent registered with the new server", func() bool { return rv2.Hub().Online(ag.ID()) })
	again := time.Since(up)
	t.Logf("rendezvous restart: agent registered %v after the server was back", again.Round(10*time.Millisecond))
	// The redial wait is at most 2 s; the slack is for a loaded machine.
	if again > 3*time.Second {
		t.Fatalf("agent took %v to register again, want within about 2 s", again)
	}
	if w.packets.Load() <= before {
		t.Fatal("the live picture stopped while the rendezvous was away")
	}
	if gap := time.Since(time.Unix(0, w.lastRTP.Load())); gap > time.Second {
		t.Fatalf("no video for %v: the peer-to-peer session should not notice the rendezvous", gap)
	}

	// The new server has no record of the live session; a viewer may take it
	// back on record by resuming it (its page reconnecting its signaling),
	// but a viewer with another token, who learnt the session ID, takes over
	// nothing: the agent refuses its restart offer.
	t.Run("another token cannot take over a live session after the restart", func(t *testing.T) {
		other, err := mintToken(context.Background(), dataDir, ag.ID(), []string{"1"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		ws, _, err := websocket.DefaultDialer.Dial(strings.Replace(rv2.URL(), "http", "ws", 1)+"/ws/viewer", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		wsSend := func(m proto.Message) {
			b, _ := proto.Encode(m)
			if err := ws.WriteMessage(websocket.TextMessage, b); err != nil {
				t.Fatal(err)
			}
		}
		wsRecv := func() proto.Message {
			_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, b, err := ws.ReadMessage()
			if err != nil {
				t.Fatal(err)
			}
			m, err := proto.Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			return m
		}
		wsSend(&proto.Open{Device: ag.ID(), Camera: "1", Token: other, Resume: sessionID})
		if m, ok := wsRecv().(*proto.Session); !ok || m.Session != sessionID {
			t.Fatalf("resume of a session the server does not know: %#v, want it taken back on record", m)
		}
		pc := codecPC(t, webrtc.MimeTypeH264, offerH264)
		offer, _ := pc.CreateOffer(nil)
		_ = pc.SetLocalDescription(offer)
		wsSend(&proto.Offer{Session: sessionID, SDP: offer.SDP})
		for {
			switch m := wsRecv().(type) {
			case *proto.Error:
				if m.Code != proto.CodeForbidden {
					t.Fatalf("restart offer with another token: %s %q, want forbidden", m.Code, m.Message)
				}
				n := w.packets.Load()
				time.Sleep(300 * time.Millisecond)
				if w.packets.Load() <= n {
					t.Fatal("the owner of the session lost its picture")
				}
				return
			case *proto.Answer:
				t.Fatal("the agent answered a restart offer from another token: the session was taken over")
			}
		}
	})
}

// A camera that sends garbage (truncated packets, random payloads, junk
// between frames): the agent drops what it cannot use, says so once per
// summary interval, and its viewers resume at the next keyframe; the other
// camera's viewer does not notice.
func TestCameraGarbage(t *testing.T) {
	in := startInfraSim(t, 2, func(c *nvr.Config) { c.KeyframeOnPlay = true })
	log := &syncBuffer{}
	ag, _ := startAgentLog(t, in, 2, func(c *agent.Config) {
		c.SummaryEvery = time.Second
		c.NVR.AlwaysOn = true
	}, slogTo(log))
	waitFor(t, 10*time.Second, "agent online", func() bool { return in.rv.Hub().Online(ag.ID()) })
	if err := server.ClaimDevice(context.Background(), in.dataDir, ownerName, ag.ID(), "NVR"); err != nil {
		t.Fatal(err)
	}
	bs := &binSystem{base: in.rv.URL(), agentID: ag.ID()}
	watch := func(cam string) *liveWHEP {
		tok, err := mintToken(context.Background(), in.dataDir, ag.ID(), []string{cam}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		w := openWHEP(t, bs, cam, tok, true)
		if w.status != 201 {
			t.Fatalf("WHEP camera %s: %d %s", cam, w.status, w.errorRaw)
		}
		w.waitVideo(t)
		return w
	}
	clean, noisy := watch("1"), watch("2")
	if err := in.sim.Garbage(2, true); err != nil {
		t.Fatal(err)
	}
	// For 3 s the other camera's picture flows on without a gap.
	var worst time.Duration
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		worst = max(worst, time.Since(time.Unix(0, clean.lastRTP.Load())))
	}
	if worst > 500*time.Millisecond {
		t.Fatalf("camera 1's picture stalled %v while camera 2 sent garbage", worst)
	}
	if err := in.sim.Garbage(2, false); err != nil {
		t.Fatal(err)
	}
	before := noisy.packets.Load()
	waitFor(t, 10*time.Second, "camera 2's viewer receiving again", func() bool { return noisy.packets.Load() > before+100 })
	waitFor(t, 5*time.Second, "the garbage summarised in the log", func() bool {
		return strings.Contains(log.String(), "unusable video packets") && strings.Contains(log.String(), "stream=2/main")
	})
	if n := strings.Count(log.String(), "unusable video packets"); n > 8 {
		t.Fatalf("%d summary lines for 3 s of garbage: it must be one per interval, not one per packet", n)
	}
}

// Limits: one more viewer than a camera's cap gets a documented refusal
// that says which limit, and costs the viewers already watching nothing.
func TestViewerLimits(t *testing.T) {
	in := startInfraSim(t, 2, func(c *nvr.Config) { c.KeyframeOnPlay = true })
	ag, _ := startAgent(t, in, 2, func(c *agent.Config) { c.MaxViewersPerCamera = 1 })
	waitFor(t, 10*time.Second, "agent online", func() bool { return in.rv.Hub().Online(ag.ID()) })
	if err := server.ClaimDevice(context.Background(), in.dataDir, ownerName, ag.ID(), "NVR"); err != nil {
		t.Fatal(err)
	}
	tok, err := mintToken(context.Background(), in.dataDir, ag.ID(), []string{"1", "2"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	bs := &binSystem{base: in.rv.URL(), agentID: ag.ID()}
	first := openWHEP(t, bs, "1", tok, true)
	if first.status != 201 {
		t.Fatalf("first viewer: %d %s", first.status, first.errorRaw)
	}
	first.waitVideo(t)
	second := openWHEP(t, bs, "1", tok, true)
	if second.status != 503 || second.code(t) != "rate_limited" || !strings.Contains(second.errorRaw, "max_viewers_per_camera") {
		t.Fatalf("second viewer of camera 1: %d %s, want 503 naming max_viewers_per_camera", second.status, second.errorRaw)
	}
	other := openWHEP(t, bs, "2", tok, true)
	if other.status != 201 {
		t.Fatalf("camera 2 beside it: %d %s", other.status, other.errorRaw)
	}
	n := first.packets.Load()
	time.Sleep(300 * time.Millisecond)
	if first.packets.Load() <= n {
		t.Fatal("the first viewer's picture stopped when a second was refused")
	}
}

// A rendezvous restart under an open page: the picture plays on peer to
// peer, and the page moves its session to a new signaling socket by itself,
// so the new server has it on record again.
func TestBrowserRendezvousRestart(t *testing.T) {
	in, r, stopRV := startRestartable(t)
	ag, _ := startAgent(t, in, 1, func(c *agent.Config) { c.NVR.AlwaysOn = true })
	waitFor(t, 10*time.Second, "agent online", func() bool { return in.rv.Hub().Online(ag.ID()) })
	if err := server.ClaimDevice(context.Background(), in.dataDir, ownerName, ag.ID(), "NVR"); err != nil {
		t.Fatal(err)
	}
	sys := &system{sim: in.sim, rv: in.rv, agent: ag, dataDir: in.dataDir}
	ctx := chromium(t)
	signIn(t, ctx, sys)
	do(t, ctx, 30*time.Second, "live view",
		evalJS(fmt.Sprintf(`location.hash = '#/d/%s/c/1'`, ag.ID())),
		waitJS(`(() => { const s = window.peercam.sessions()[0]; return s && s.camera === '1' && s.framesDecoded > 25; })()`))
	atStop := sessionStats(t, ctx)[0].FramesDecoded
	stopRV()
	time.Sleep(2 * time.Second)
	before := sessionStats(t, ctx)[0].FramesDecoded
	if before < atStop+20 {
		t.Fatalf("frames decoded %d → %d in the 2 s the rendezvous was down: the picture stopped with it", atStop, before)
	}
	rv2, _ := r.run()
	do(t, ctx, 15*time.Second, "signaling back on the new server",
		waitJS(`(() => { const s = window.peercam.sessions()[0]; return s && s.signalingReconnects >= 1; })()`))
	waitFor(t, 5*time.Second, "the new server has the session on record", func() bool { return rv2.Hub().SessionCount() == 1 })
	// The page reads its stats once a second: give the count that long to
	// move (it moved while the server was down too, or it would be far
	// behind), rather than reading it twice within one poll.
	do(t, ctx, 3*time.Second, "frames still counting after the restart",
		waitJS(fmt.Sprintf(`window.peercam.sessions()[0].framesDecoded > %d + 10`, before)))
}
