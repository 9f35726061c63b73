package main

import (
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// crossTargets reads the agent targets from the Makefile's CROSS list, so
// this test and make cross cannot drift apart.
func crossTargets(t *testing.T) [][]string {
	t.Helper()
	b, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	var targets [][]string
	for _, m := range regexp.MustCompile(`(?m)^\s*(linux-\w+):(\w+):(\w+):(\S*)`).FindAllStringSubmatch(string(b), -1) {
		env := []string{"GOOS=" + m[2], "GOARCH=" + m[3]}
		if m[4] != "" {
			env = append(env, m[4])
		}
		targets = append(targets, append([]string{m[1]}, env...))
	}
	if len(targets) < 7 {
		t.Fatalf("found %d targets in the Makefile's CROSS list, want at least 7", len(targets))
	}
	return targets
}

// The agent runs on recorders without a C toolchain or libc to match: no
// package outside the standard library may contain cgo, and the whole tree
// must resolve with CGO_ENABLED=0 for every target.
func TestAgentNeedsNoCgo(t *testing.T) {
	if testing.Short() {
		t.Skip("go list per target")
	}
	list := func(env ...string) string {
		cmd := exec.Command("go", "list", "-e", "-deps", "-f",
			`{{.ImportPath}}|{{.Standard}}|{{len .CgoFiles}}|{{with .Error}}{{.Err}}{{end}}`, ".")
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go list %v: %v\n%s", env, err, out)
		}
		return string(out)
	}
	// With cgo on, which packages would use it?
	for line := range strings.Lines(list("CGO_ENABLED=1")) {
		f := strings.Split(strings.TrimSpace(line), "|")
		if f[1] == "false" && f[2] != "0" {
			t.Errorf("%s has cgo files; the agent must build without cgo", f[0])
		}
	}
	for _, tg := range crossTargets(t) {
		n := 0
		for line := range strings.Lines(list(append([]string{"CGO_ENABLED=0"}, tg[1:]...)...)) {
			n++
			if f := strings.Split(strings.TrimSpace(line), "|"); f[3] != "" {
				t.Errorf("%s: %s: %s", tg[0], f[0], f[3])
			}
		}
		if n < 50 {
			t.Errorf("%s: only %d packages listed; the list is broken", tg[0], n)
		}
	}
}

// The agent must fit small recorders' flash: at most 12 MiB for armv7,
// stripped as make cross builds it; and the README's size table must be the
// one a real build gives (make sizes writes it).
func TestAgentSizeBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-builds the agent")
	}
	out := filepath.Join(t.TempDir(), "agent-armv7")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=arm", "GOARM=7")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, b)
	}
	fi, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	mib := float64(fi.Size()) / (1 << 20)
	t.Logf("armv7 agent: %.2f MiB", mib)
	if mib > 12 {
		t.Fatalf("the armv7 agent is %.2f MiB, over its 12 MiB budget: find where the bytes went with make sizes", mib)
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`device-agent-linux-armv7\s+([0-9.]+) MiB`).FindSubmatch(readme)
	if m == nil {
		t.Fatal("README has no armv7 size line; run make sizes")
	}
	if said, _ := strconv.ParseFloat(string(m[1]), 64); math.Abs(said-mib) > 0.15 {
		t.Fatalf("README says %.1f MiB for armv7, a build gives %.2f MiB: run make sizes", said, mib)
	}
}
