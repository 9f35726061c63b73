package rtspsource

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/peercam/peercam/firmware-sim/camera"
	"github.com/peercam/peercam/firmware-sim/isapi"
	"github.com/peercam/peercam/firmware-sim/nvr"
	"github.com/peercam/peercam/internal/media/h264"
)

// kfSim is a simulated camera whose main stream sends a keyframe every
// 10 s and none to a new session, with ISAPI on a web server beside it.
func kfSim(t *testing.T, ignoreRTCP bool) (*nvr.Server, string) {
	t.Helper()
	cfg := nvr.DefaultConfig()
	cfg.Listen, cfg.Audio, cfg.LongGOPChannels = "127.0.0.1:0", false, []int{1}
	cfg.IgnoreRTCPKeyframeRequests = ignoreRTCP
	cfg.Logger = slog.New(slog.DiscardHandler)
	sim, err := nvr.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	web := httptest.NewServer(isapi.Handler(cfg.User, cfg.Pass, sim.Keyframe, cfg.Logger))
	t.Cleanup(web.Close)
	return sim, web.URL
}

// pull runs a stream until its first keyframe, an ISAPI answer if
// untilISAPI, or 2 s; it returns how long the keyframe took (0: none came)
// and what OnAsked heard.
func pull(t *testing.T, cfg Config, untilISAPI bool) (time.Duration, []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var mu sync.Mutex
	var asked []string
	cfg.OnAsked = func(via string, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			via += ": " + err.Error()
		}
		asked = append(asked, via)
		if untilISAPI && strings.HasPrefix(via, "isapi") {
			cancel()
		}
	}
	start := time.Now()
	var took time.Duration
	_ = Run(ctx, cfg, Handler{OnVideo: func(au [][]byte, _ uint32) {
		if took == 0 && h264.IsKeyframe(au) {
			took = time.Since(start)
			cancel()
		}
	}})
	time.Sleep(50 * time.Millisecond) // an ISAPI answer in flight
	mu.Lock()
	defer mu.Unlock()
	return took, append([]string(nil), asked...)
}

// A camera with a 10 s GOP sends a keyframe at once when asked over RTCP
// (PLI/FIR on the RTSP session) or over ISAPI, and the agent asks when a
// pull starts; without asking, the pull waits for the camera's own.
func TestKeyframeRequests(t *testing.T) {
	t.Run("rtcp", func(t *testing.T) {
		sim, _ := kfSim(t, false)
		took, asked := pull(t, Config{URL: sim.URL(1, camera.Main), KeyframeRequests: true}, false)
		rtcp, http := sim.KeyframeRequests()
		if took == 0 || rtcp == 0 || http != 0 || len(asked) == 0 || asked[0] != "rtcp" {
			t.Fatalf("keyframe after %s; camera got %d RTCP and %d ISAPI requests; agent said %q", took, rtcp, http, asked)
		}
		t.Logf("first keyframe %s after the start", took.Round(time.Millisecond))
	})
	t.Run("isapi", func(t *testing.T) {
		sim, web := kfSim(t, true)
		took, asked := pull(t, Config{URL: sim.URL(1, camera.Main), KeyframeRequests: true,
			ISAPI: web + "/ISAPI/Streaming/channels/101/requestKeyFrame"}, false)
		_, http := sim.KeyframeRequests()
		if took == 0 || http == 0 || !slices.Contains(asked, "isapi") {
			t.Fatalf("keyframe after %s; camera got %d ISAPI requests; agent said %q", took, http, asked)
		}
		t.Logf("first keyframe %s after the start", took.Round(time.Millisecond))
	})
	t.Run("isapi-wrong-password", func(t *testing.T) {
		sim, web := kfSim(t, true)
		u := strings.Replace(web, "http://", "http://admin:wrong@", 1)
		_, asked := pull(t, Config{URL: sim.URL(1, camera.Main), KeyframeRequests: true,
			ISAPI: u + "/ISAPI/Streaming/channels/101/requestKeyFrame"}, true)
		if _, http := sim.KeyframeRequests(); http != 0 || !containsPart(asked, "isapi: isapi requestKeyFrame: the camera refused the user and password (HTTP 401)") {
			t.Fatalf("camera counted %d; agent said %q", http, asked)
		}
	})
	t.Run("isapi-no-such-channel", func(t *testing.T) {
		sim, web := kfSim(t, true)
		_, asked := pull(t, Config{URL: sim.URL(1, camera.Main), KeyframeRequests: true,
			ISAPI: web + "/ISAPI/Streaming/channels/901/requestKeyFrame"}, true)
		if !containsPart(asked, "has no such channel or API (HTTP 404)") {
			t.Fatalf("agent said %q", asked)
		}
	})
	t.Run("off", func(t *testing.T) {
		sim, web := kfSim(t, false)
		took, asked := pull(t, Config{URL: sim.URL(1, camera.Main), ISAPI: web + "/ISAPI/Streaming/channels/101/requestKeyFrame"}, false)
		rtcp, http := sim.KeyframeRequests()
		if rtcp != 0 || http != 0 || len(asked) != 0 {
			t.Fatalf("asked with requests off: %d RTCP, %d ISAPI, %q", rtcp, http, asked)
		}
		t.Logf("first keyframe without asking: %s (0: none within 2 s)", took.Round(time.Millisecond))
	})
}

func containsPart(list []string, part string) bool {
	for _, v := range list {
		if strings.Contains(v, part) {
			return true
		}
	}
	return false
}
