package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
