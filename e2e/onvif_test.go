package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/peercam/peercam/device-agent/agent"
	"github.com/peercam/peercam/firmware-sim/nvr"
	"github.com/peercam/peercam/firmware-sim/onvifsim"
	"github.com/peercam/peercam/rendezvous/server"
)

// startONVIF gives the infra's simulator its ONVIF face on 127.0.0.1:
// the device service, and a discovery socket that answers unicast probes.
func startONVIF(t testing.TB, in *infra, channels int) (*onvifsim.Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	disc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o, err := onvifsim.Start(onvifsim.Config{HTTP: ln, Discovery: disc, User: "admin", Pass: "admin", Channels: channels,
		Logger: testLogger(t), StreamOf: func(ch int, kind string) onvifsim.Stream {
			u, c, w, h := in.sim.StreamInfo(ch, kind)
			return onvifsim.Stream{URL: u, Encoding: c, Width: w, Height: h}
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(o.Close)
	return o, disc.LocalAddr().String()
}

// An agent whose only camera setting is onvif: finds the recorder's
// cameras itself (by address, or by WS-Discovery with auto) and plays them.
func TestAgentFindsCamerasOverONVIF(t *testing.T) {
	for _, mode := range []string{"host", "auto"} {
		t.Run(mode, func(t *testing.T) {
			in := startInfraSim(t, 2, func(c *nvr.Config) { c.H265Channels = []int{2} })
			o, probe := startONVIF(t, in, 2)
			ag, _ := startAgent(t, in, 0, func(c *agent.Config) {
				c.NVR = nil
				host := strings.TrimSuffix(strings.TrimPrefix(o.DeviceURL(), "http://"), "/onvif/device_service")
				if mode == "auto" {
					host, c.ONVIFProbe = "auto", probe
				}
				c.ONVIF = agent.ONVIFList{{Host: host, User: "admin", Pass: "admin"}}
			})
			waitFor(t, 10*time.Second, "agent online", func() bool { return in.rv.Hub().Online(ag.ID()) })
			cams, ok := in.rv.Hub().Cameras(ag.ID())
			if !ok || len(cams) != 2 || !cams[0].HasSub || !cams[1].HasSub {
				t.Fatalf("cameras the agent found: %+v, want 2 with sub streams", cams)
			}
			if err := server.ClaimDevice(context.Background(), in.dataDir, ownerName, ag.ID(), "ONVIF NVR"); err != nil {
				t.Fatal(err)
			}
			sys := &system{sim: in.sim, rv: in.rv, agent: ag, dataDir: in.dataDir}
			if res := watchCodec(t, sys, "1", "video/H264", offerH264, 10); res.status != 201 || res.stream != "main" {
				t.Fatalf("camera 1 over WHEP: %d %s %s", res.status, res.stream, res.answer)
			}
			if res := watchCodec(t, sys, "2", "video/H265", offerH265, 10); res.status != 201 || res.codec != "H265" {
				t.Fatalf("camera 2 (H.265) over WHEP: %d %s %s", res.status, res.codec, res.answer)
			}
		})
	}
}

// device-agent discover, run as a person would on the LAN: in a network
// namespace the test makes, it sends its WS-Discovery probe to the ONVIF
// multicast group; the simulator in another namespace answers; the URLs it
// prints work (ffprobe reads them from the discovering side).
func TestDiscoverOnLAN(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root for network namespaces (CI runs as root)")
	}
	simBin, agentBin := goBuild(t, "../firmware-sim"), agentBinary(t, "amd64")
	a, b := fmt.Sprintf("pcdisc-cam-%d", os.Getpid()%10000), fmt.Sprintf("pcdisc-box-%d", os.Getpid()%10000)
	sh := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	for _, ns := range []string{a, b} {
		_ = exec.Command("ip", "netns", "del", ns).Run()
		sh("ip", "netns", "add", ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
		sh("ip", "-n", ns, "link", "set", "lo", "up")
	}
	sh("ip", "link", "add", "pcd0", "netns", a, "type", "veth", "peer", "name", "pcd1", "netns", b)
	sh("ip", "-n", a, "addr", "add", "10.77.0.1/24", "dev", "pcd0")
	sh("ip", "-n", b, "addr", "add", "10.77.0.2/24", "dev", "pcd1")
	sh("ip", "-n", a, "link", "set", "pcd0", "up")
	sh("ip", "-n", b, "link", "set", "pcd1", "up")
	// The LAN's default route, as a recorder's network has: multicast goes out on it.
	sh("ip", "-n", b, "route", "add", "default", "via", "10.77.0.1")
	sh("ip", "-n", a, "route", "add", "default", "via", "10.77.0.2")

	sim := exec.Command("ip", "netns", "exec", a, simBin, "-listen", "10.77.0.1:554", "-channels", "2", "-h265", "2",
		"-onvif", "0.0.0.0:8000", "-discovery", "0.0.0.0:3702")
	simLog := &syncBuffer{}
	sim.Stdout, sim.Stderr = simLog, simLog
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopProcess(sim, 5*time.Second) })
	waitFor(t, 10*time.Second, "simulator's ONVIF ready", func() bool { return strings.Contains(simLog.String(), "ONVIF ready") })

	out, err := exec.Command("ip", "netns", "exec", b, agentBin, "discover", "-user", "admin", "-pass", "admin", "-wait", "2s").CombinedOutput()
	t.Logf("device-agent discover:\n%s", out)
	if err != nil {
		t.Fatalf("discover: %v\nsimulator: %s", err, simLog.String())
	}
	s := string(out)
	for _, want := range []string{"PeerCam firmware-sim NVR", "http://10.77.0.1:8000/onvif/device_service", "ch2: main H265 1280x720",
		"cameras:", "url: rtsp://admin:admin@10.77.0.1:554/Streaming/Channels/101", "sub_url: rtsp://admin:admin@10.77.0.1:554/Streaming/Channels/202"} {
		if !strings.Contains(s, want) {
			t.Fatalf("discover's output lacks %q", want)
		}
	}
	// The printed URLs work: an RTSP client on the discovering side reads them.
	for _, m := range regexp.MustCompile(`(?m)^\s+(?:url|sub_url): (rtsp://\S+)$`).FindAllStringSubmatch(s, -1) {
		probe, err := exec.Command("ip", "netns", "exec", b, "ffprobe", "-v", "error", "-rtsp_transport", "tcp", "-timeout", "10000000",
			"-select_streams", "v:0", "-show_entries", "stream=codec_name", "-of", "csv=p=0", m[1]).CombinedOutput()
		if err != nil || len(strings.TrimSpace(string(probe))) == 0 {
			t.Fatalf("ffprobe %s: %v %s", m[1], err, probe)
		}
	}
}
