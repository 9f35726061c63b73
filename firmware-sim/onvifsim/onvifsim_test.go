package onvifsim

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/peercam/peercam/firmware-sim/nvr"
	"github.com/peercam/peercam/internal/onvif"
)

func startSim(t *testing.T) (*nvr.Server, *Server, net.PacketConn) {
	t.Helper()
	cfg := nvr.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.Channels = 2
	cfg.H265Channels = []int{2}
	cfg.Audio = false
	cfg.Logger = slog.New(slog.DiscardHandler)
	srv, err := nvr.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	disc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o, err := Start(Config{HTTP: ln, Discovery: disc, User: "admin", Pass: "admin", Channels: 2, Logger: cfg.Logger,
		StreamOf: func(ch int, kind string) Stream {
			u, c, w, h := srv.StreamInfo(ch, kind)
			return Stream{URL: u, Encoding: c, Width: w, Height: h}
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(o.Close)
	return srv, o, disc
}

// A unicast probe finds the simulator; its Device and Media services give
// make and model and each channel's main and sub stream URLs, with
// WS-Security UsernameToken authentication.
func TestDiscoverAndResolve(t *testing.T) {
	srv, o, disc := startSim(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ms, err := onvif.Discover(ctx, conn, disc.LocalAddr(), 500*time.Millisecond)
	if err != nil || len(ms) != 1 || len(ms[0].XAddrs) != 1 || ms[0].XAddrs[0] != o.DeviceURL() {
		t.Fatalf("discover: %v %+v, want one match at %s", err, ms, o.DeviceURL())
	}
	c := &onvif.Client{Device: ms[0].XAddrs[0], User: "admin", Pass: "admin"}
	info, err := c.DeviceInformation(ctx)
	if err != nil || info.Manufacturer != "PeerCam" || info.SerialNumber == "" {
		t.Fatalf("device information: %+v %v", info, err)
	}
	cams, err := c.Cameras(ctx)
	if err != nil || len(cams) != 2 {
		t.Fatalf("cameras: %+v %v", cams, err)
	}
	if cams[0].MainURL != srv.URL(1, "main") || cams[0].SubURL != srv.URL(1, "sub") || cams[0].Encoding != "H264" {
		t.Fatalf("channel 1: %+v, want %s and %s", cams[0], srv.URL(1, "main"), srv.URL(1, "sub"))
	}
	if cams[1].Encoding != "H265" || cams[1].Main.Width != 1280 || cams[1].Sub == nil || cams[1].Sub.Encoding != "H264" {
		t.Fatalf("channel 2: %+v, want H.265 main and an H.264 sub", cams[1])
	}

	for name, cl := range map[string]*onvif.Client{
		"wrong password": {Device: o.DeviceURL(), User: "admin", Pass: "nope"},
		"no credentials": {Device: o.DeviceURL()},
	} {
		if _, err := cl.DeviceInformation(ctx); !errors.Is(err, onvif.ErrAuth) {
			t.Fatalf("%s: %v, want ErrAuth", name, err)
		}
	}
}

// A replayed UsernameToken from long ago is refused.
func TestTokenTooOld(t *testing.T) {
	_, o, _ := startSim(t)
	c := &onvif.Client{Device: o.DeviceURL(), User: "admin", Pass: "admin", Now: func() time.Time { return time.Now().Add(-time.Hour) }}
	if _, err := c.DeviceInformation(context.Background()); !errors.Is(err, onvif.ErrAuth) {
		t.Fatalf("hour-old token: %v, want ErrAuth", err)
	}
}

// Bad input is answered, never fatal.
func TestGarbage(t *testing.T) {
	_, o, disc := startSim(t)
	for _, b := range []string{"", "<x>", "not xml at all", strings.Repeat("<a>", 1000)} {
		if _, err := onvif.ParseRequest([]byte(b)); err == nil && b != "" {
			t.Fatalf("garbage %q parsed", b)
		}
		if _, ok := onvif.ParseProbe([]byte(b)); ok {
			t.Fatalf("garbage %q taken for a probe", b)
		}
	}
	c, _ := net.Dial("udp4", disc.LocalAddr().String())
	_, _ = c.Write([]byte("garbage"))
	c.Close()
	cl := &onvif.Client{Device: o.DeviceURL(), User: "admin", Pass: "admin"}
	if _, err := cl.DeviceInformation(context.Background()); err != nil {
		t.Fatalf("after garbage: %v", err)
	}
}
