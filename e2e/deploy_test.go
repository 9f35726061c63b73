package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// pidsOf lists the processes whose command line starts with bin.
func pidsOf(bin string) []int {
	var pids []int
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if err == nil && bytes.HasPrefix(b, []byte(bin+"\x00")) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// deploy/peercam-agent.init under BusyBox's shell, as a recorder runs it:
// start brings the agent online, a crashed agent comes back, stop ends it.
func TestBusyBoxInitScript(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the agent")
	}
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatal("busybox is missing: make deps installs it")
	}
	in := startInfra(t, 1)
	dir := t.TempDir()
	bin := agentBinary(t, runtime.GOARCH)
	cfg := filepath.Join(dir, "agent.yaml")
	os.WriteFile(cfg, []byte("rendezvous: "+in.rv.URL()+"\nstate_dir: "+filepath.Join(dir, "state")+
		"\nwebrtc_listen: 127.0.0.1:0\ncameras:\n  - url: rtsp://admin:admin@"+in.sim.Addr()+"/Streaming/Channels/101\n"), 0o600)
	script, _ := filepath.Abs("../deploy/peercam-agent.init")
	run := func(arg string) string {
		cmd := exec.Command(busybox, "sh", script, arg)
		cmd.Env = append(os.Environ(), "PEERCAM_BIN="+bin, "PEERCAM_CONFIG="+cfg,
			"PEERCAM_PIDFILE="+filepath.Join(dir, "agent.pid"), "PEERCAM_LOG="+filepath.Join(dir, "agent.log"))
		// A script that leaves its output open in a background child
		// would hang the call; WaitDelay turns that into a failure.
		cmd.WaitDelay = 5 * time.Second
		out, err := cmd.CombinedOutput()
		if err != nil && arg != "status" {
			t.Fatalf("init script %s: %v\n%s", arg, err, out)
		}
		return string(out)
	}
	t.Cleanup(func() {
		run("stop")
		for _, pid := range pidsOf(bin) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	idOut, err := exec.Command(bin, "-config", cfg, "-print-id").Output()
	if err != nil {
		t.Fatal(err)
	}
	id := strings.TrimSpace(string(idOut))

	if out := run("start"); !strings.Contains(out, "started") {
		t.Fatalf("start said %q", out)
	}
	waitFor(t, 20*time.Second, "agent online after start", func() bool { return in.rv.Hub().Online(id) })
	if out := run("status"); !strings.Contains(out, "running") {
		t.Fatalf("status said %q", out)
	}
	// The agent dies (out of memory, say): the script starts it again.
	pids := pidsOf(bin)
	if len(pids) != 1 {
		t.Fatalf("%d agent processes, want 1", len(pids))
	}
	syscall.Kill(pids[0], syscall.SIGKILL)
	waitFor(t, 10*time.Second, "agent offline after kill", func() bool { return !in.rv.Hub().Online(id) })
	waitFor(t, 20*time.Second, "agent back online", func() bool { return in.rv.Hub().Online(id) })

	if out := run("stop"); !strings.Contains(out, "stopped") {
		t.Fatalf("stop said %q", out)
	}
	waitFor(t, 10*time.Second, "agent offline after stop", func() bool { return !in.rv.Hub().Online(id) })
	if left := pidsOf(bin); len(left) != 0 {
		t.Fatalf("agent processes left after stop: %v", left)
	}
	if out := run("status"); !strings.Contains(out, "stopped") {
		t.Fatalf("status said %q", out)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "agent.log")); !bytes.Contains(b, []byte("device agent starting")) {
		t.Fatalf("agent log through the script:\n%s", b)
	}
}
