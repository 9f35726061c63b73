package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/peercam/peercam/rendezvous/server"
)

// runningAgent is an agent binary running in its own process.
type runningAgent struct {
	cmd *exec.Cmd
	id  string
	// log holds the agent's stderr.
	log *os.File
}

// agentRun says how to run an agent binary.
type agentRun struct {
	// wrap is the command line the binary runs under: qemu-arm-static, or
	// unshare and a script, say.
	wrap []string
	// stateDir defaults to a fresh temporary directory.
	stateDir string
	// yaml is appended to the generated config.
	yaml string
}

// startAgentBinary runs bin with a config for the infra's NVR, waits until it
// is online and claims it.
func startAgentBinary(t testing.TB, in *infra, bin string, channels int, run agentRun) *runningAgent {
	t.Helper()
	dir := t.TempDir()
	if run.stateDir == "" {
		run.stateDir = filepath.Join(dir, "state")
	}
	cfg := fmt.Sprintf(`rendezvous: %s
state_dir: %s
webrtc_listen: 127.0.0.1:0
nvr:
  url: rtsp://admin:admin@%s/Streaming/Channels/{channel}01
  sub_url: rtsp://admin:admin@%s/Streaming/Channels/{channel}02
  channels: %d
%s`, in.rv.URL(), run.stateDir, in.sim.Addr(), in.sim.Addr(), channels, run.yaml)
	cfgPath := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	argv := func(args ...string) *exec.Cmd {
		full := append(append(append([]string{}, run.wrap...), bin), args...)
		return exec.Command(full[0], full[1:]...)
	}
	out, err := argv("-config", cfgPath, "-print-id").CombinedOutput()
	if err != nil {
		t.Fatalf("%s -print-id: %v\n%s", filepath.Base(bin), err, out)
	}
	id := strings.TrimSpace(string(out))
	logf, err := os.Create(filepath.Join(dir, "agent.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := argv("-config", cfgPath)
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a := &runningAgent{cmd: cmd, id: id, log: logf}
	t.Cleanup(func() {
		if stopProcess(cmd, 10*time.Second) {
			t.Errorf("%s did not stop within 10 s of SIGINT", filepath.Base(bin))
		}
		if t.Failed() {
			a.dumpLog(t)
		}
		logf.Close()
	})
	waitFor(t, 60*time.Second, filepath.Base(bin)+" online", func() bool { return in.rv.Hub().Online(id) })
	if err := server.ClaimDevice(context.Background(), in.dataDir, ownerName, id, "Recorder"); err != nil {
		t.Fatal(err)
	}
	return a
}

func (a *runningAgent) dumpLog(t testing.TB) {
	f, err := os.Open(a.log.Name())
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		t.Log("agent: " + sc.Text())
	}
}

// The agent as it runs on recorder hardware: cross-built for ARMv7 and
// little-endian MIPS without cgo, run under qemu-user, pulling RTSP from the
// simulator and serving a WebRTC viewer 720p H.264.
func TestAgentUnderQemu(t *testing.T) {
	if testing.Short() {
		t.Skip("cross builds and emulation")
	}
	for _, tc := range []struct {
		name, goarch, env, qemu string
	}{
		{"armv7", "arm", "GOARM=7", "qemu-arm-static"},
		{"mipsle", "mipsle", "GOMIPS=softfloat", "qemu-mipsel-static"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			qemu, err := exec.LookPath(tc.qemu)
			if err != nil {
				t.Fatalf("%s is missing: make deps installs qemu-user-static", tc.qemu)
			}
			in := startInfra(t, 2)
			bin := agentBinary(t, tc.goarch, tc.env)
			out, err := exec.Command(qemu, bin, "-version").Output()
			if err != nil || !strings.Contains(string(out), "linux/"+tc.goarch) {
				t.Fatalf("-version under %s: %q %v", tc.qemu, out, err)
			}
			a := startAgentBinary(t, in, bin, 2, agentRun{wrap: []string{qemu}})
			token, err := mintToken(context.Background(), in.dataDir, a.id, []string{"2"}, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			// Emulation is slow: a cold stream waits for the camera's next
			// keyframe (up to 4 s) on top of the emulated DTLS handshake.
			res := watchWHEPWithin(t, http.DefaultClient, fmt.Sprintf("%s/whep/%s/2", in.rv.URL(), a.id), token, 50, 60*time.Second)
			t.Logf("%s: %d frames, first after %v, %dx%d", tc.name, res.frames, res.firstFrame, res.width, res.height)
			if res.width != 1280 || res.height != 720 {
				t.Fatalf("decoded size %dx%d, want channel 2's main stream at 1280x720", res.width, res.height)
			}
		})
	}
}

// On a recorder the firmware is read-only and only a small data partition is
// writable. The agent, run with every mount read-only except its state dir,
// creates its key there, comes online and serves a viewer.
func TestAgentReadOnlyFilesystem(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the agent")
	}
	if os.Geteuid() != 0 {
		t.Fatal("needs root for a mount namespace; CI runs as root")
	}
	in := startInfra(t, 1)
	bin := agentBinary(t, runtime.GOARCH)
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	// The wrapper runs the agent in a private mount namespace where every
	// mount is remounted read-only, then the state dir alone is bound back
	// writable.
	wrapper := filepath.Join(dir, "readonly.sh")
	script := `#!/bin/sh
set -e
state=$1; shift
mount --bind "$state" "$state"
awk '{print $2}' /proc/self/mounts | while read -r m; do
	mount -o remount,bind,ro "$m" 2>/dev/null || true
done
mount -o remount,bind,rw "$state"
if touch /tmp/peercam-probe 2>/dev/null; then echo "/tmp is still writable" >&2; exit 3; fi
exec "$@"
`
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	a := startAgentBinary(t, in, bin, 1, agentRun{stateDir: state,
		wrap: []string{"unshare", "--mount", "--propagation", "private", wrapper, state}})
	token, err := mintToken(context.Background(), in.dataDir, a.id, []string{"1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	res := watchWHEP(t, fmt.Sprintf("%s/whep/%s/1", in.rv.URL(), a.id), token, 10)
	if res.width != 1280 {
		t.Fatalf("decoded width %d", res.width)
	}
	entries, _ := os.ReadDir(state)
	if len(entries) == 0 {
		t.Fatal("nothing in the state dir: where did the key go?")
	}
}

// whepViewer is a pion WHEP viewer that counts the video bytes it receives.
type whepViewer struct {
	pc    *webrtc.PeerConnection
	bytes atomic.Int64
	// opened is when the viewer started its offer.
	opened time.Time
	mu     sync.Mutex // guards frames
	// frames logs each video frame as its last packet came (see takeFrames).
	frames []rxFrame
}

// rxFrame is a video frame as a viewer got it: its RTP timestamp, whether
// it was a keyframe, and when its last packet came.
type rxFrame struct {
	ts  uint32
	key bool
	at  time.Time
}

// openWHEPViewer starts a viewer from the calling goroutine and lets it run.
// It decrypts, counts and logs the frames it gets (timestamps and arrival
// times, see rxFrame) and does nothing else (no pion interceptors: no
// NACKs, receiver reports or TWCC), so that in the benchmarks the two cores
// go to the server under test, not to its viewers.
func openWHEPViewer(tb testing.TB, url, token string) *whepViewer {
	tb.Helper()
	v := &whepViewer{pc: loopbackPC(tb, &interceptor.Registry{}), opened: time.Now()}
	tb.Cleanup(func() { v.pc.Close() })
	if _, err := v.pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		tb.Fatal(err)
	}
	v.pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		buf := make([]byte, 1500)
		var h rtp.Header
		key := false
		for {
			n, _, err := tr.Read(buf)
			if err != nil {
				return
			}
			v.bytes.Add(int64(n))
			hl, err := h.Unmarshal(buf[:n])
			if err != nil {
				continue
			}
			key = key || h264PacketKey(buf[hl:n])
			if h.Marker {
				v.mu.Lock()
				v.frames = append(v.frames, rxFrame{ts: h.Timestamp, key: key, at: time.Now()})
				v.mu.Unlock()
				key = false
			}
		}
	})
	status, _, answer := whepPost(tb, url, token, v.pc)
	if status != http.StatusCreated {
		tb.Fatalf("WHEP POST: %d %s", status, answer)
	}
	if err := v.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		tb.Fatal(err)
	}
	return v
}

// takeFrames returns the frames logged since the last call.
func (v *whepViewer) takeFrames() []rxFrame {
	v.mu.Lock()
	defer v.mu.Unlock()
	f := v.frames
	v.frames = nil
	return f
}

// firstKey is how long after its offer the viewer had its first whole
// keyframe, waiting up to within; false if none came.
func (v *whepViewer) firstKey(within time.Duration) (time.Duration, bool) {
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		v.mu.Lock()
		for _, f := range v.frames {
			if f.key {
				v.mu.Unlock()
				return f.at.Sub(v.opened), true
			}
		}
		v.mu.Unlock()
	}
	return 0, false
}

// h264PacketKey reports whether an H.264 RTP payload (RFC 6184) carries an
// IDR slice or a sequence parameter set, the start of a keyframe.
func h264PacketKey(p []byte) bool {
	if len(p) < 2 {
		return false
	}
	isKey := func(t byte) bool { return t == 5 || t == 7 }
	switch t := p[0] & 0x1f; t {
	case 24: // STAP-A: 16-bit sizes, each followed by a NAL unit
		for i := 1; i+2 < len(p); {
			size := int(p[i])<<8 | int(p[i+1])
			if isKey(p[i+2] & 0x1f) {
				return true
			}
			i += 2 + size
		}
		return false
	case 28: // FU-A: the start fragment names the NAL unit's type
		return p[1]&0x80 != 0 && isKey(p[1]&0x1f)
	default:
		return isKey(t)
	}
}

// procMemory reads a process's resident set and its peak, in MiB.
func procMemory(tb testing.TB, pid int) (rss, peak float64) {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb / 1024
		case "VmHWM:":
			peak = kb / 1024
		}
	}
	return rss, peak
}

// BenchmarkAgentRSS measures the agent's memory with 4 cameras and 2 viewers
// on each camera's main stream, after 10 s of streaming: natively, and as
// the ARMv7 build under qemu-user (whose figure includes the emulator's
// own memory, so it overstates a real ARM box).
func BenchmarkAgentRSS(b *testing.B) {
	for _, tc := range []struct {
		name, goarch, env string
		wrap              []string
	}{
		{"amd64", "amd64", "", nil},
		{"armv7-qemu", "arm", "GOARM=7", []string{"qemu-arm-static"}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			in := startInfra(b, 4)
			bin := agentBinary(b, tc.goarch, tc.env)
			a := startAgentBinary(b, in, bin, 4, agentRun{wrap: tc.wrap})
			token, err := mintToken(context.Background(), in.dataDir, a.id, []string{"1", "2", "3", "4"}, time.Hour)
			if err != nil {
				b.Fatal(err)
			}
			var viewers []*whepViewer
			for cam := 1; cam <= 4; cam++ {
				for range 2 {
					viewers = append(viewers, openWHEPViewer(b, fmt.Sprintf("%s/whep/%s/%d", in.rv.URL(), a.id, cam), token))
				}
			}
			time.Sleep(10 * time.Second)
			for i, v := range viewers {
				if v.bytes.Load() == 0 {
					b.Fatalf("viewer %d received nothing", i)
				}
			}
			rss, peak := procMemory(b, a.cmd.Process.Pid)
			for range b.N {
			}
			b.ReportMetric(rss, "RSS-MiB")
			b.ReportMetric(peak, "peak-RSS-MiB")
		})
	}
}
