package e2e

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/pion/webrtc/v4"

	"github.com/peercam/peercam/device-agent/agent"
	"github.com/peercam/peercam/rendezvous/server"
)

// Time to first frame on a warm stream (the camera is already being pulled),
// with the simulator's camera-like 4 s keyframe interval. Reported as
// percentiles over b.N views; run with make bench (-benchtime=20x).

func reportPercentiles(b *testing.B, ms []float64, unit string) {
	sort.Float64s(ms)
	pick := func(p float64) float64 { return ms[min(len(ms)-1, int(p*float64(len(ms))))] }
	b.ReportMetric(pick(0.50), unit+"-p50")
	b.ReportMetric(pick(0.95), unit+"-p95")
	b.ReportMetric(0, "ns/op")
}

func BenchmarkFirstFrameWarmChromium(b *testing.B) {
	sys := startSystem(b, benchOpens)
	ctx := chromium(b)
	signIn(b, ctx, sys)
	live := fmt.Sprintf(`location.hash = '#/d/%s/c/1'`, sys.agent.ID())
	view := func() float64 {
		tctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		if _, err := chromedp.Run(tctx, chromedp.Evaluate[any](`location.hash = '#/'`)); err != nil {
			b.Fatal(err)
		}
		if err := chromedp.Do(tctx, waitJS(`window.peercam.sessions().length === 0`)); err != nil {
			b.Fatal(err)
		}
		if _, err := chromedp.Run(tctx, chromedp.Evaluate[any](live)); err != nil {
			b.Fatal(err)
		}
		ms, err := chromedp.Run(tctx, chromedp.Poll[float64](`(() => { const s = window.peercam.sessions()[0]; return s && s.firstFrameMs; })()`,
			chromedp.WithPollingInterval(10*time.Millisecond)))
		if err != nil {
			b.Fatal(err)
		}
		return ms
	}
	view() // warms the stream: the camera pull stays open for the linger
	var samples, behind []float64
	b.ResetTimer()
	for b.Loop() {
		samples = append(samples, view())
		// Lag to live once the GOP cache is played through: the jitter
		// buffer's delay, 1.5 s after the first frame.
		b.StopTimer()
		time.Sleep(1500 * time.Millisecond)
		tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		d, err := chromedp.Run(tctx, chromedp.Evaluate[float64](`window.peercam.sessions()[0].playoutDelayMs || 0`))
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		behind = append(behind, d)
		b.StartTimer()
	}
	b.StopTimer()
	reportPercentiles(b, samples, "ms-first-frame")
	reportPercentiles(b, behind, "ms-behind-live")
}

// benchOpens lets a benchmark open sessions from one address as fast as it
// likes; the per-address limit would hold it to one a second.
func benchOpens(c *server.Config) { c.OpenBurst = 1 << 20 }

func BenchmarkFirstFrameWarmWHEP(b *testing.B) {
	sys := startSystem(b, benchOpens)
	token, err := mintToken(context.Background(), sys.dataDir, sys.agent.ID(), []string{"1"}, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	url := fmt.Sprintf("%s/whep/%s/1", sys.rv.URL(), sys.agent.ID())
	watchWHEP(b, url, token, 1)
	var samples []float64
	b.ResetTimer()
	for b.Loop() {
		res := watchWHEP(b, url, token, 1)
		samples = append(samples, float64(res.firstFrame.Microseconds())/1000)
	}
	b.StopTimer()
	reportPercentiles(b, samples, "ms-first-frame")
}

// The first keyframe of a warm stream for a WHEP viewer, H.265 beside H.264
// on the same recorder (channel 1 H.265 main, channel 3 H.264 main, both
// kept pulled), from the POST to the first whole keyframe.
func BenchmarkFirstFrameWarmWHEPCodecs(b *testing.B) {
	sys := startRecorderSystem(b, benchOpens)
	for _, c := range []struct{ name, camera, mime, fmtp string }{
		{"H264", "3", webrtc.MimeTypeH264, offerH264},
		{"H265", "1", webrtc.MimeTypeH265, offerH265},
	} {
		b.Run(c.name, func(b *testing.B) {
			var samples []float64
			for b.Loop() {
				res := watchCodec(b, sys, c.camera, c.mime, c.fmtp, 1)
				if res.status != 201 || res.stream != "main" {
					b.Fatalf("WHEP %d, served %s", res.status, res.stream)
				}
				samples = append(samples, float64(res.firstKey.Microseconds())/1000)
			}
			reportPercentiles(b, samples, "ms-first-keyframe")
		})
	}
}

// BenchmarkFirstFrameCold is the first viewer of a main stream nobody is
// watching (the camera sends a keyframe every 4 s and none on request),
// from the WHEP POST to the first whole keyframe: with the sub streams kept
// warm (the default), the viewer starts on the sub stream's cached picture;
// without, it waits for the main stream's next keyframe.
func BenchmarkFirstFrameCold(b *testing.B) {
	for _, warm := range []bool{true, false} {
		name := "warm-sub"
		if !warm {
			name = "no-warm-sub"
		}
		b.Run(name, func(b *testing.B) {
			in := startInfraSim(b, 1, nil, benchOpens)
			ag, _ := startAgent(b, in, 1, func(c *agent.Config) { c.WarmSubStreams = warm; c.Linger = time.Millisecond })
			waitFor(b, 10*time.Second, "agent online", func() bool { return in.rv.Hub().Online(ag.ID()) })
			if err := server.ClaimDevice(context.Background(), in.dataDir, ownerName, ag.ID(), "Shop"); err != nil {
				b.Fatal(err)
			}
			token, err := mintToken(context.Background(), in.dataDir, ag.ID(), []string{"1"}, time.Hour)
			if err != nil {
				b.Fatal(err)
			}
			url := fmt.Sprintf("%s/whep/%s/1", in.rv.URL(), ag.ID())
			main := ag.Stream("1", "main")
			if warm {
				waitFor(b, 10*time.Second, "sub stream warm", func() bool { return ag.Stream("1", "sub").Stats().GOP > 0 })
			}
			samples := coldViews(b, func() bool { return main.Stats().Running }, func() time.Duration { return watchWHEP(b, url, token, 1).firstFrame })
			reportPercentiles(b, samples, "ms-first-frame")
		})
	}
	// An H.265 main stream cannot start on the H.264 sub stream: its first
	// viewer gets the camera's next keyframe, or one asked for over RTCP
	// (PLI/FIR on the RTSP session) or ISAPI, from the WHEP POST to the
	// first whole keyframe.
	for _, ask := range []string{"rtcp", "isapi", "none"} {
		b.Run("h265-main/ask-"+ask, func(b *testing.B) {
			sys := startColdH265(b, ask)
			ag := sys.agent
			main := ag.Stream("1", "main")
			// The first view learns the stream's codec; from then on it is
			// cold each time.
			watchCodec(b, sys, "1", webrtc.MimeTypeH265, offerH265, 1)
			samples := coldViews(b, func() bool { return main.Stats().Running }, func() time.Duration {
				res := watchCodec(b, sys, "1", webrtc.MimeTypeH265, offerH265, 1)
				if res.status != 201 || res.codec != "H265" {
					b.Fatalf("WHEP %d, served %s", res.status, res.codec)
				}
				return res.firstKey
			})
			rtcp, http := sys.sim.KeyframeRequests()
			b.ReportMetric(float64(rtcp+http)/float64(len(samples)+1), "camera-asks/view")
			reportPercentiles(b, samples, "ms-first-keyframe")
		})
	}
}

// coldViews times view once per b.Loop round (in ms), each on a cold main
// stream: after the agent stopped pulling it (pulled is false), at a random phase against
// the camera's keyframes. The waits are not timed.
func coldViews(b *testing.B, pulled func() bool, view func() time.Duration) []float64 {
	var samples []float64
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		waitFor(b, 10*time.Second, "main stream stopped", func() bool { return !pulled() })
		time.Sleep(time.Duration(len(samples)%7) * 450 * time.Millisecond)
		b.StartTimer()
		samples = append(samples, float64(view().Microseconds())/1000)
	}
	b.StopTimer()
	return samples
}
