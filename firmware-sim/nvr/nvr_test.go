package nvr

import (
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/base"
	"github.com/pion/rtp"

	"github.com/peercam/peercam/firmware-sim/camera"
)

func TestParsePath(t *testing.T) {
	tests := []struct {
		name, path, query string
		ch                int
		kind              string
		ok                bool
	}{
		{"hikvision main", "/Streaming/Channels/101", "", 1, camera.Main, true},
		{"hikvision sub", "Streaming/Channels/102", "", 1, camera.Sub, true},
		{"hikvision ch16", "/Streaming/channels/1601", "", 16, camera.Main, true},
		{"hikvision third stream", "/Streaming/Channels/103", "", 0, "", false},
		{"hikvision garbage", "/Streaming/Channels/abc", "", 0, "", false},
		{"dahua main", "/cam/realmonitor", "channel=2&subtype=0", 2, camera.Main, true},
		{"dahua sub", "/cam/realmonitor", "channel=3&subtype=1", 3, camera.Sub, true},
		{"dahua no subtype", "/cam/realmonitor", "channel=3", 3, camera.Main, true},
		{"dahua bad subtype", "/cam/realmonitor", "channel=3&subtype=7", 0, "", false},
		{"unknown", "/live", "", 0, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ch, kind, ok := ParsePath(tt.path, tt.query)
			if ch != tt.ch || kind != tt.kind || ok != tt.ok {
				t.Fatalf("got %d %q %v, want %d %q %v", ch, kind, ok, tt.ch, tt.kind, tt.ok)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	c := DefaultConfig()
	c.Channels = 0
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "channels") {
		t.Fatalf("err %v, want one naming channels", err)
	}
	c = DefaultConfig()
	c.BFrameChannels = []int{2}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "bframes") {
		t.Fatalf("err %v, want one naming bframes", err)
	}
}

type probe struct {
	Streams []struct {
		CodecName  string `json:"codec_name"`
		CodecType  string `json:"codec_type"`
		Width      int    `json:"width"`
		Height     int    `json:"height"`
		RFrameRate string `json:"r_frame_rate"`
		SampleRate string `json:"sample_rate"`
	} `json:"streams"`
}

// ffprobe is an RTSP client nobody here wrote: if it reads our streams, real
// NVR clients will too.
func ffprobe(t *testing.T, url, transport string) (probe, string, error) {
	t.Helper()
	ff, err := exec.LookPath("ffprobe")
	if err != nil {
		t.Fatal("ffprobe not installed: run make deps")
	}
	cmd := exec.Command(ff, "-v", "error", "-rtsp_transport", transport, "-timeout", "10000000",
		"-show_entries", "stream=codec_name,codec_type,width,height,r_frame_rate,sample_rate",
		"-of", "json", url)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var p probe
	if err == nil {
		err = json.Unmarshal(out, &p)
	}
	return p, stderr.String(), err
}

func TestFFprobeReadsStreams(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.Channels = 3
	cfg.H265Channels = []int{3}
	srv, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)

	dahua := func(ch, sub int) string {
		return fmt.Sprintf("rtsp://admin:admin@%s/cam/realmonitor?channel=%d&subtype=%d", srv.Addr(), ch, sub)
	}
	tests := []struct {
		name, url, transport string
		codec                string
		w, h                 int
		fps                  string
	}{
		{"hikvision main tcp", srv.URL(1, camera.Main), "tcp", "h264", 1280, 720, "25/1"},
		{"hikvision sub udp", srv.URL(1, camera.Sub), "udp", "h264", 640, 360, "15/1"},
		{"dahua ch2 main udp", dahua(2, 0), "udp", "h264", 1280, 720, "25/1"},
		{"dahua ch2 sub tcp", dahua(2, 1), "tcp", "h264", 640, 360, "15/1"},
		{"H.265 main tcp", srv.URL(3, camera.Main), "tcp", "hevc", 1280, 720, "25/1"},
		{"H.265 channel's sub is H.264", srv.URL(3, camera.Sub), "tcp", "h264", 640, 360, "15/1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, stderr, err := ffprobe(t, tt.url, tt.transport)
			if err != nil {
				t.Fatalf("ffprobe: %v: %s", err, stderr)
			}
			if len(p.Streams) != 2 {
				t.Fatalf("%d streams, want video and audio: %+v", len(p.Streams), p)
			}
			v, a := p.Streams[0], p.Streams[1]
			if v.CodecType != "video" {
				v, a = a, v
			}
			if v.CodecName != tt.codec || v.Width != tt.w || v.Height != tt.h || v.RFrameRate != tt.fps {
				t.Fatalf("video %+v, want %s %dx%d at %s", v, tt.codec, tt.w, tt.h, tt.fps)
			}
			if a.CodecName != "pcm_mulaw" || a.SampleRate != "8000" {
				t.Fatalf("audio %+v, want pcm_mulaw at 8000", a)
			}
		})
	}
}

func TestRefusals(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.Audio = false
	srv, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	tests := []struct {
		name, url, says string
	}{
		{"wrong password", "rtsp://admin:nope@" + srv.Addr() + "/Streaming/Channels/101", "401"},
		{"no credentials", "rtsp://" + srv.Addr() + "/Streaming/Channels/101", "401"},
		{"unknown path", "rtsp://admin:admin@" + srv.Addr() + "/Streaming/Channels/901", "404"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			_, stderr, err := ffprobe(t, tt.url, "tcp")
			if err == nil {
				t.Fatal("ffprobe succeeded, want refusal")
			}
			if !strings.Contains(stderr, tt.says) {
				t.Fatalf("ffprobe said %q, want %s", stderr, tt.says)
			}
			if time.Since(start) > 8*time.Second {
				t.Fatalf("refusal took %v; it should be immediate", time.Since(start))
			}
		})
	}
}

// The faults a test can switch: a channel that refuses its credentials (and
// only that channel), and back; a long GOP chosen at start, kept across a
// restart's config.
func TestRejectAndLongGOP(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.Channels = 2
	cfg.Audio = false
	cfg.LongGOPChannels = []int{2}
	srv, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if err := srv.Reject(1, true); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := ffprobe(t, srv.URL(1, camera.Main), "tcp"); err == nil || !strings.Contains(stderr, "401") {
		t.Fatalf("channel 1 rejecting: ffprobe err %v, said %q; want 401", err, stderr)
	}
	p, stderr, err := ffprobe(t, srv.URL(2, camera.Main), "tcp")
	if err != nil || len(p.Streams) != 1 || p.Streams[0].Width != 1280 {
		t.Fatalf("channel 2 while 1 rejects: %v %s %+v", err, stderr, p)
	}
	got := srv.Config()
	if fmt.Sprint(got.RejectChannels, got.LongGOPChannels) != "[1] [2]" {
		t.Fatalf("config after the faults: reject %v, long-gop %v; want [1] [2]", got.RejectChannels, got.LongGOPChannels)
	}
	if err := srv.Reject(1, false); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := ffprobe(t, srv.URL(1, camera.Main), "tcp"); err != nil {
		t.Fatalf("channel 1 accepting again: %v %s", err, stderr)
	}
	if err := srv.Reject(3, true); err == nil {
		t.Fatal("rejecting a channel that does not exist: no error")
	}
}

// A recorder that comes back on the port its clients are retrying (as
// faults.Recorder.Restart does) answers them while Start is still building
// its streams: each must get the stream or a refusal, never a crash of the
// server from reading the stream table as it is written.
func TestStartWhileClientsRetry(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cfg := DefaultConfig()
	cfg.Listen, cfg.Channels, cfg.Audio = addr, 16, false
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var described atomic.Int64
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(ch int) {
			defer wg.Done()
			u, _ := base.ParseURL(fmt.Sprintf("rtsp://admin:admin@%s/Streaming/Channels/%d01", addr, ch))
			for {
				select {
				case <-stop:
					return
				default:
				}
				c := gortsplib.Client{}
				if c.Start(u.Scheme, u.Host) == nil {
					if _, _, err := c.Describe(u); err == nil {
						described.Add(1)
					}
					c.Close()
				}
			}
		}(16 - i)
	}
	time.Sleep(50 * time.Millisecond)
	srv, err := Start(cfg)
	if err != nil {
		close(stop)
		wg.Wait()
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()
	srv.Close()
	if described.Load() == 0 {
		t.Fatal("no client was served once the recorder was up")
	}
}

// Playing counts the sessions playing a stream, and OnVideo sees each video
// frame of every stream as it goes out, played or not.
func TestPlayingAndOnVideo(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Listen, cfg.Audio = "127.0.0.1:0", false
	var mu sync.Mutex
	frames := map[string]int{}
	var lastTS uint32
	cfg.OnVideo = func(ch int, kind string, pkts []*rtp.Packet) {
		mu.Lock()
		defer mu.Unlock()
		frames[fmt.Sprint(ch, kind)]++
		if ch == 1 && kind == camera.Main {
			lastTS = pkts[len(pkts)-1].Timestamp
		}
	}
	srv, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	waitUntil := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !ok(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal(what)
			}
		}
	}
	if n := srv.Playing(1, camera.Main); n != 0 {
		t.Fatalf("playing before any client: %d", n)
	}
	u, _ := base.ParseURL(srv.URL(1, camera.Main))
	c := gortsplib.Client{}
	if err := c.Start(u.Scheme, u.Host); err != nil {
		t.Fatal(err)
	}
	desc, _, err := c.Describe(u)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetupAll(desc.BaseURL, desc.Medias); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Play(nil); err != nil {
		t.Fatal(err)
	}
	waitUntil("one session playing main", func() bool { return srv.Playing(1, camera.Main) == 1 })
	time.Sleep(600 * time.Millisecond) // 15 frames at 25 fps
	if n := srv.Playing(1, camera.Sub); n != 0 {
		t.Fatalf("sub stream playing %d, want 0", n)
	}
	c.Close()
	waitUntil("no session after the client closed", func() bool { return srv.Playing(1, camera.Main) == 0 })
	mu.Lock()
	main, sub, ts := frames["1main"], frames["1sub"], lastTS
	mu.Unlock()
	if main < 10 || sub < 10 || ts == 0 {
		t.Fatalf("OnVideo saw %d main and %d sub frames (last main timestamp %d); want both streams' frames", main, sub, ts)
	}
}
