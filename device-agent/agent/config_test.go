package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	good := func() Config {
		c := DefaultConfig()
		c.Rendezvous = "https://rv.example.net"
		c.Cameras = []CameraConfig{{URL: "rtsp://admin:pw@192.168.1.64/Streaming/Channels/101"}}
		return c
	}
	tests := []struct {
		name   string
		change func(*Config)
		says   string
	}{
		{"valid", func(*Config) {}, ""},
		{"no rendezvous", func(c *Config) { c.Rendezvous = "" }, "rendezvous: missing URL"},
		{"rendezvous not http", func(c *Config) { c.Rendezvous = "ftp://x" }, "rendezvous:"},
		{"plain http to a LAN rendezvous", func(c *Config) { c.Rendezvous = "http://192.168.1.5:8080" }, "insecure_rendezvous: true"},
		{"plain http to a public rendezvous", func(c *Config) { c.Rendezvous = "http://rv.example.net" }, "use https://"},
		{"plain http to loopback", func(c *Config) { c.Rendezvous = "http://127.0.0.1:8080" }, ""},
		{"plain http to a lab, allowed", func(c *Config) { c.Rendezvous = "http://10.0.0.2:8080"; c.InsecureRendezvous = true }, ""},
		{"camera url without scheme", func(c *Config) { c.Cameras[0].URL = "192.168.1.64/live" }, "cameras[0].url: missing scheme"},
		{"camera url wrong scheme", func(c *Config) { c.Cameras[0].URL = "http://cam/live" }, `cameras[0].url: scheme "http"`},
		{"third camera bad", func(c *Config) {
			c.Cameras = append(c.Cameras, CameraConfig{URL: "rtsp://a/b"}, CameraConfig{URL: "rtsp:///nohost"})
		}, "cameras[2].url: missing host"},
		{"bad sub url", func(c *Config) { c.Cameras[0].SubURL = "cam/sub" }, "cameras[0].sub_url"},
		{"no cameras", func(c *Config) { c.Cameras = nil }, "cameras: none configured"},
		{"nvr without {channel}", func(c *Config) { c.NVR = &NVRConfig{URL: "rtsp://nvr/ch1", Channels: 4} }, "nvr.url: must contain {channel}"},
		{"nvr zero channels", func(c *Config) { c.NVR = &NVRConfig{URL: "rtsp://nvr/{channel}", Channels: 0} }, "nvr.channels"},
		{"duplicate ids", func(c *Config) {
			c.NVR = &NVRConfig{URL: "rtsp://nvr/{channel}", Channels: 2}
			c.Cameras[0].ID = "2"
		}, `id "2" is used twice`},
		{"bad transport", func(c *Config) { c.RTSPTransport = "quic" }, "rtsp_transport"},
		{"isapi", func(c *Config) { c.Cameras[0].ISAPI = "http://192.168.1.64" }, ""},
		{"isapi not a web address", func(c *Config) { c.Cameras[0].ISAPI = "192.168.1.64" }, "cameras[0].isapi: \"192.168.1.64\" is not the camera's web address"},
		{"isapi on a Dahua path", func(c *Config) {
			c.Cameras[0].URL = "rtsp://a:b@cam/cam/realmonitor?channel=1&subtype=0"
			c.Cameras[0].ISAPI = "http://cam"
		}, "not Hikvision's /Streaming/Channels/<id>"},
		{"nvr isapi", func(c *Config) {
			c.Cameras = nil
			c.NVR = &NVRConfig{URL: "rtsp://nvr/Streaming/Channels/{channel}01", Channels: 2, ISAPI: "https://nvr:8443/"}
		}, ""},
		{"bad webrtc listen", func(c *Config) { c.WebRTCListen = "8189" }, "webrtc_listen"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good()
			tt.change(&c)
			err := c.Validate()
			if tt.says == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.says) {
				t.Fatalf("err %v, want it to say %q", err, tt.says)
			}
		})
	}
}

func TestISAPIKeyframeURL(t *testing.T) {
	for _, tc := range []struct{ base, rtsp, want string }{
		{"http://192.168.1.64", "rtsp://a:b@192.168.1.64:554/Streaming/Channels/101", "http://192.168.1.64/ISAPI/Streaming/channels/101/requestKeyFrame"},
		{"http://nvr:8080/", "rtsp://nvr/streaming/channels/1602?transportmode=unicast", "http://nvr:8080/ISAPI/Streaming/channels/1602/requestKeyFrame"},
		{"", "rtsp://nvr/Streaming/Channels/101", ""},
		{"http://cam", "rtsp://cam/h264/ch1/main/av_stream", ""},
		{"http://cam", "rtsp://cam/Streaming/Channels/1", ""},
	} {
		if got := ISAPIKeyframeURL(tc.base, tc.rtsp); got != tc.want {
			t.Errorf("%s %s: %q, want %q", tc.base, tc.rtsp, got, tc.want)
		}
	}
	if !DefaultConfig().KeyframeRequests {
		t.Error("keyframe requests are off by default")
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) string {
		p := filepath.Join(dir, "agent.yaml")
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	c, err := LoadConfig(write(`
rendezvous: https://rv.example.net
nvr:
  url: rtsp://admin:pw@10.0.0.2/cam/realmonitor?channel={channel}&subtype=0
  sub_url: rtsp://admin:pw@10.0.0.2/cam/realmonitor?channel={channel}&subtype=1
  channels: 2
cameras:
  - name: Gate
    url: rtsp://admin:pw@10.0.0.3/Streaming/Channels/101
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	cams := c.ResolvedCameras()
	if len(cams) != 3 || cams[1].ID != "2" || cams[1].Name != "Channel 2" ||
		cams[1].SubURL != "rtsp://admin:pw@10.0.0.2/cam/realmonitor?channel=2&subtype=1" || cams[2].ID != "3" || cams[2].Name != "Gate" {
		t.Fatalf("cameras %+v", cams)
	}
	if c.StateDir != "peercam-state" || c.Linger.Seconds() != 30 {
		t.Fatalf("defaults lost: %+v", c)
	}

	_, err = LoadConfig(write("rendezvous: https://x\ncamras: []\n"))
	if err == nil || !strings.Contains(err.Error(), "camras") {
		t.Fatalf("typo in a key: err %v, want it named", err)
	}
	t.Setenv("PEERCAM_RENDEZVOUS", "https://env.example.net")
	c, err = LoadConfig(write("rendezvous: https://file.example.net\n"))
	if err != nil || c.Rendezvous != "https://env.example.net" {
		t.Fatalf("environment does not override the file: %v %q", err, c.Rendezvous)
	}
}

func TestSize(t *testing.T) {
	tests := []struct {
		name, in string
		want     Size
		bad      bool
	}{
		{"mebibytes", "48MiB", 48 << 20, false},
		{"kibibytes", "512KiB", 512 << 10, false},
		{"decimal megabytes", "64MB", 64e6, false},
		{"short binary", "1G", 1 << 30, false},
		{"bytes", "4096", 4096, false},
		{"fraction", "1.5MiB", 3 << 19, false},
		{"off", "off", 0, false},
		{"space before unit", "32 MiB", 32 << 20, false},
		{"bits are not a size", "10Mbit", 0, true},
		{"negative", "-1MiB", 0, true},
		{"empty", "", 0, true},
		{"absurd", "9999999GiB", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s Size
			err := s.UnmarshalText([]byte(tt.in))
			if tt.bad {
				if err == nil || !strings.Contains(err.Error(), "is not a size") {
					t.Fatalf("%q: err %v, want a refusal", tt.in, err)
				}
				return
			}
			if err != nil || s != tt.want {
				t.Fatalf("%q = %d, %v; want %d", tt.in, s, err, tt.want)
			}
		})
	}
	if got := Size(48 << 20).String(); got != "48MiB" {
		t.Fatalf("String() = %q", got)
	}
}

func TestMemoryAndLogSettings(t *testing.T) {
	base := func() Config {
		c := DefaultConfig()
		c.Rendezvous = "https://rv.example.net"
		c.Cameras = []CameraConfig{{URL: "rtsp://cam/live"}}
		return c
	}
	if c := base(); c.MemoryLimit != 48<<20 || c.Validate() != nil {
		t.Fatalf("default memory limit %s", c.MemoryLimit)
	}
	c := base()
	c.MemoryLimit = 8 << 20
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "memory_limit: 8MiB is too small") {
		t.Fatalf("err %v", err)
	}
	c = base()
	c.LogFile = "/var/log/peercam.log"
	c.LogMaxSize = 100 << 10
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "log_max_size") {
		t.Fatalf("err %v", err)
	}

	dir := t.TempDir()
	path := filepath.Join(dir, "agent.yaml")
	os.WriteFile(path, []byte("rendezvous: https://rv\nmemory_limit: 32MiB\nlog_max_size: 2MiB\ncameras: [{url: rtsp://cam/x}]\n"), 0o600)
	got, err := LoadConfig(path)
	if err != nil || got.MemoryLimit != 32<<20 || got.LogMaxSize != 2<<20 {
		t.Fatalf("loaded %s %s, %v", got.MemoryLimit, got.LogMaxSize, err)
	}
	t.Setenv("GOMEMLIMIT", "64MiB")
	if got, _ := LoadConfig(path); got.MemoryLimit != 64<<20 {
		t.Fatalf("GOMEMLIMIT not applied: %s", got.MemoryLimit)
	}
	os.WriteFile(path, []byte("memory_limit: lots\n"), 0o600)
	if _, err := LoadConfig(path); err == nil || !strings.Contains(err.Error(), "is not a size") {
		t.Fatalf("err %v", err)
	}
}

// A log file never grows past its cap: at most the file and one older one.
func TestLogFileCapped(t *testing.T) {
	dir := t.TempDir()
	c := DefaultConfig()
	c.LogFile = filepath.Join(dir, "agent.log")
	w := c.LogWriter()
	line := []byte(strings.Repeat("x", 1023) + "\n")
	for range 3 << 10 { // 3 MiB through a 1 MiB cap
		if _, err := w.Write(line); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	var total int64
	deadline := time.Now().Add(5 * time.Second)
	for {
		entries, _ := os.ReadDir(dir)
		total = 0
		for _, e := range entries {
			info, _ := e.Info()
			total += info.Size()
			if info.Size() > 1<<20 {
				t.Fatalf("%s is %d bytes, over the 1 MiB cap", e.Name(), info.Size())
			}
		}
		if len(entries) <= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d log files, want the log and one older file", len(entries))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if total < 1<<20 {
		t.Fatalf("only %d bytes kept; the newest lines must survive", total)
	}
}

// Whatever agent.yaml holds, loading and checking it returns an error or a
// config; it never panics.
func FuzzLoadConfig(f *testing.F) {
	f.Add("rendezvous: https://rv.example.net\ncameras:\n  - url: rtsp://a/b\n")
	f.Add("rendezvous: http://127.0.0.1:8080\nnvr:\n  url: rtsp://x/{channel}\n  channels: 4\nonvif: auto\n")
	f.Add("onvif: [{host: 10.0.0.1, user: a, pass: b}]\nmemory_limit: 64MiB\n")
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, yaml string) {
		p := filepath.Join(dir, "agent.yaml")
		if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		if cfg, err := LoadConfig(p); err == nil {
			_ = cfg.Validate()
			_ = cfg.ResolvedCameras()
		}
	})
}

func TestMemoryAdvice(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Rendezvous = "https://rv.example.net"
	cfg.NVR = &NVRConfig{URL: "rtsp://a:b@nvr/Streaming/Channels/{channel}01", SubURL: "rtsp://a:b@nvr/Streaming/Channels/{channel}02", Channels: 4}
	if a := cfg.MemoryAdvice(); a != "" {
		t.Fatalf("the defaults (16 viewers, 4 cameras, 48MiB) got advice: %s", a)
	}
	cfg.MaxViewers = 100
	if a := cfg.MemoryAdvice(); a != "" {
		t.Fatalf("100 viewers of 4 cameras in 48MiB (measured: 21 MiB live for 100 of one) got advice: %s", a)
	}
	cfg.MaxViewers = 200
	a := cfg.MemoryAdvice()
	if !strings.Contains(a, "raise memory_limit to") || !strings.Contains(a, "lower max_viewers to") {
		t.Fatalf("200 viewers in 48MiB: advice %q, want which setting to raise", a)
	}
	cfg.MemoryLimit = 0
	if a := cfg.MemoryAdvice(); a != "" {
		t.Fatalf("no memory limit, yet advice: %s", a)
	}
}
