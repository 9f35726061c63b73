package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Binaries are built once per test process into builtDir, which TestMain
// removes; tests that run the same program share the build.
var (
	buildMu  sync.Mutex // guards built and builtDir
	built    = map[string]string{}
	builtDir string
)

// goBuild builds the command in pkg (relative to e2e/) the way make cross
// does, static and stripped, for the target in env (GOARCH=…, GOARM=…), and
// returns the binary's path.
func goBuild(t testing.TB, pkg string, env ...string) string {
	t.Helper()
	name := filepath.Base(pkg)
	for _, kv := range env {
		name += "-" + strings.ToLower(strings.ReplaceAll(kv, "=", ""))
	}
	buildMu.Lock()
	defer buildMu.Unlock()
	if path, ok := built[name]; ok {
		return path
	}
	if builtDir == "" {
		dir, err := os.MkdirTemp("", "peercam-e2e-bin")
		if err != nil {
			t.Fatal(err)
		}
		builtDir = dir
	}
	path := filepath.Join(builtDir, name)
	ld := "-s -w"
	if os.Getenv("PEERCAM_SYMBOLS") != "" {
		ld = "" // for perf
	}
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", ld, "-o", path, pkg)
	cmd.Env = append(append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux"), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s %v: %v\n%s", pkg, env, err, out)
	}
	built[name] = path
	return path
}

// agentBinary is the agent built for goarch (plus GOARM or GOMIPS in env).
func agentBinary(t testing.TB, goarch string, env ...string) string {
	t.Helper()
	return goBuild(t, "../device-agent", append([]string{"GOARCH=" + goarch}, env...)...)
}

// stopProcess asks a started command to stop with SIGINT, as an init
// system would, and kills it after within; it reports whether it had to.
func stopProcess(cmd *exec.Cmd, within time.Duration) (killed bool) {
	_ = cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
		return false
	case <-time.After(within):
		_ = cmd.Process.Kill()
		<-done
		return true
	}
}

// syncBuffer is an output sink tests can read while a process or an
// in-process component writes to it.
type syncBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
