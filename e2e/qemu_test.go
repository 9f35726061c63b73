package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/peercam/peercam/rendezvous/server"
)

// agentBinary cross-builds the agent the way make cross does and returns its
// path.
func agentBinary(t testing.TB, goarch string, env ...string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "device-agent-"+goarch)
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, "../device-agent")
	cmd.Env = append(os.Environ(), append([]string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=" + goarch}, env...)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build agent for %s: %v\n%s", goarch, err, b)
	}
	return out
}

// runningAgent is an agent binary running in its own process.
type runningAgent struct {
	cmd *exec.Cmd
	id  string
	// log holds the agent's stderr.
	log *os.File
}

// startAgentBinary runs bin (under qemu when qemu is not empty) with a config
// for the infra's NVR, waits until it is online and claims it.
func startAgentBinary(t testing.TB, in *infra, qemu, bin string, channels int, extraYAML string) *runningAgent {
	t.Helper()
	dir := t.TempDir()
	cfg := fmt.Sprintf(`rendezvous: %s
state_dir: %s
webrtc_listen: 127.0.0.1:0
nvr:
  url: rtsp://admin:admin@%s/Streaming/Channels/{channel}01
  sub_url: rtsp://admin:admin@%s/Streaming/Channels/{channel}02
  channels: %d
%s`, in.rv.URL(), filepath.Join(dir, "state"), in.sim.Addr(), in.sim.Addr(), channels, extraYAML)
	cfgPath := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	argv := func(args ...string) *exec.Cmd {
		if qemu != "" {
			return exec.Command(qemu, append([]string{bin}, args...)...)
		}
		return exec.Command(bin, args...)
	}
	out, err := argv("-config", cfgPath, "-print-id").Output()
	if err != nil {
		t.Fatalf("%s -print-id: %v", filepath.Base(bin), err)
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
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
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
			a := startAgentBinary(t, in, qemu, bin, 2, "")
			token, err := server.MintToken(context.Background(), in.dataDir, a.id, []string{"2"}, time.Hour)
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
