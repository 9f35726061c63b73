package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromium starts headless Debian Chromium with the flags this machine needs
// and a fresh profile, and returns a tab context.
func chromium(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel, err := startChromium(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cancel)
	return ctx
}

// startChromium starts headless Chromium on a phone-sized viewport with
// profile dir, and returns a tab context and the function that stops it.
func startChromium(dir string, extra ...chromedp.ExecAllocatorOption) (context.Context, func(), error) {
	path, err := exec.LookPath("chromium")
	if err != nil {
		return nil, nil, errors.New("chromium is not installed: run make deps")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.UserDataDir(dir),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), append(opts, extra...)...)
	ctx, cancel := chromedp.NewContext(actx)
	stop := func() { cancel(); cancelAlloc() }
	// The first Run starts the browser: no timeout on it.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2))); err != nil {
		stop()
		return nil, nil, err
	}
	return ctx, stop, nil
}

// do runs steps with a deadline.
func do(t testing.TB, ctx context.Context, d time.Duration, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	if err := chromedp.Do(tctx, steps...); err != nil {
		// Leave evidence: what the page shows and what its sessions saw.
		name := "failed-" + strings.ReplaceAll(what, " ", "-")
		screenshot(t, ctx, name)
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		state, _ := chromedp.Run(dctx, chromedp.Evaluate[string](`location.hash + ' ' + JSON.stringify(window.peercam && window.peercam.sessions()) + ' ' + document.body.innerText`))
		t.Fatalf("%s: %v\npage: %s", what, err, state)
	}
}

// screenshot saves a PNG under e2e/artifacts for people to look at.
func screenshot(t testing.TB, ctx context.Context, name string) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(tctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	dir := "artifacts"
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: e2e/%s", p)
}

type liveStats struct {
	Camera        string   `json:"camera"`
	Stream        string   `json:"stream"`
	FirstFrameMs  *float64 `json:"firstFrameMs"`
	FramesDecoded int      `json:"framesDecoded"`
	Width         int      `json:"width"`
	Height        int      `json:"height"`
	Path          string   `json:"path"`
	Pair          string   `json:"pair"`
}

func sessionStats(t testing.TB, ctx context.Context) []liveStats {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	raw, err := chromedp.Run(tctx, chromedp.Evaluate[string](`JSON.stringify(window.peercam.sessions())`))
	if err != nil {
		t.Fatal(err)
	}
	var out []liveStats
	if err := json.Unmarshal([]byte(raw), &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestBrowserLiveView(t *testing.T) {
	sys := startSystem(t)
	ctx := chromium(t)

	signIn(t, ctx, sys)
	screenshot(t, ctx, "devices")

	// The grid plays all four channels' sub streams; the fifth camera, whose
	// password is wrong, says so in its tile.
	do(t, ctx, 30*time.Second, "grid of live tiles",
		chromedp.Click(`a.device`),
		waitJS(`(() => { const v = [...document.querySelectorAll('.tile video')];
			return v.length === 5 && v.slice(0, 4).every(v => v.videoWidth === 640 && v.currentTime > 0.5); })()`),
		waitJS(`document.querySelectorAll('.tile .state.err').length === 1 &&
			document.querySelectorAll('.tile')[4].textContent.includes('cannot reach this camera')`),
	)
	screenshot(t, ctx, "grid")

	// Tap channel 1: full-screen main stream.
	do(t, ctx, 30*time.Second, "live view of channel 1",
		chromedp.Click(`.tile`),
		// The grid's sessions are still there until the route changes: wait
		// for the live view's own.
		waitJS(`(() => { const s = window.peercam.sessions()[0]; return s && s.stream === 'main' && s.framesDecoded > 25 && s.width > 0; })()`),
	)
	first := sessionStats(t, ctx)[0]
	// Nobody watched the main stream: the picture starts at once on the
	// warm sub stream's cache and moves to the main stream at its first
	// keyframe (every 4 s), on the same track, without a renegotiation.
	// (Or at once, when the main stream is already pulled.)
	do(t, ctx, 6*time.Second, "main stream's size after its first keyframe",
		waitJS(fmt.Sprintf(`(() => { const s = window.peercam.sessions()[0]; return s && s.width === 1280 && s.framesDecoded > %d; })()`, first.FramesDecoded)))
	st := sessionStats(t, ctx)
	if len(st) != 1 {
		t.Fatalf("%d sessions in the live view, want 1", len(st))
	}
	s := st[0]
	t.Logf("channel 1 live: first frame %.0f ms after tap at %dx%d; now %d frames decoded, %dx%d, %s path",
		deref(first.FirstFrameMs), first.Width, first.Height, s.FramesDecoded, s.Width, s.Height, s.Path)
	if deref(s.FirstFrameMs) != deref(first.FirstFrameMs) {
		t.Fatal("the move to the main stream started the view again")
	}
	if s.Camera != "1" || s.Stream != "main" {
		t.Fatalf("session for camera %s/%s, want 1/main", s.Camera, s.Stream)
	}
	if s.Width != 1280 || s.Height != 720 {
		t.Fatalf("decoded %dx%d, want the main stream's 1280x720", s.Width, s.Height)
	}
	if s.Path != "direct" {
		t.Fatalf("path %q, want direct", s.Path)
	}
	do(t, ctx, 5*time.Second, "status line", waitJS(`document.querySelector('.status').textContent.includes('1280×720')`))
	screenshot(t, ctx, "live-channel-1")

	// A fast route change, home then straight back to live: the home view's
	// late answer must not render into the live page.
	do(t, ctx, 10*time.Second, "fast route change",
		evalJS(`location.hash = '#/'; setTimeout(() => { location.hash = '#/d/`+sys.agent.ID()+`/c/1'; }, 0)`),
		waitJS(`(() => { const s = window.peercam.sessions()[0]; return s && s.framesDecoded > 10; })()`))
	time.Sleep(500 * time.Millisecond)
	if leaked, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.querySelector('a.device') !== null || document.body.textContent.includes('Add a device')`)); err != nil || leaked {
		t.Fatalf("the home view rendered into the live page (%v)", err)
	}

	// Error pages: a camera the recorder cannot reach, then the recorder gone.
	do(t, ctx, 20*time.Second, "camera unreachable page",
		evalJS(`location.hash = '#/d/`+sys.agent.ID()+`/c/gate'`),
		waitJS(`document.querySelector('.overlay.err') !== null &&
			document.querySelector('.overlay.err').textContent.includes('user name or password')`),
	)
	screenshot(t, ctx, "error-camera-unreachable")
	sys.stopAgent()
	do(t, ctx, 20*time.Second, "device offline page",
		evalJS(`location.hash = '#/d/`+sys.agent.ID()+`'`),
		waitJS(`document.body.textContent.includes('The recorder is offline')`),
	)
	screenshot(t, ctx, "error-device-offline")
}

func deref(p *float64) float64 {
	if p == nil {
		return -1
	}
	return *p
}

// waitJS waits until a JavaScript expression is truthy.
func waitJS(expr string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.Poll[bool](expr, chromedp.WithPollingInterval(50*time.Millisecond))(ctx, t)
		return err
	})
}

// evalJS runs a JavaScript statement.
func evalJS(expr string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.Evaluate[any](expr)(ctx, t)
		return err
	})
}

// signIn opens the viewer and signs in as the owner, up to the device list.
func signIn(t testing.TB, ctx context.Context, sys *system) {
	t.Helper()
	do(t, ctx, 20*time.Second, "sign in",
		chromedp.Navigate(sys.rv.URL()),
		chromedp.WaitVisible(`input[name=name]`),
		chromedp.SendKeys(`input[name=name]`, ownerName),
		chromedp.SendKeys(`input[name=password]`, ownerPass),
		chromedp.Click(`button[type=submit]`),
		chromedp.WaitVisible(`a.device`),
	)
}
