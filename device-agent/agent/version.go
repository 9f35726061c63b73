package agent

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"time"
)

// Stamped at build time by make build and make cross (-ldflags -X); when
// they are empty, BuildInfo falls back to what the Go toolchain recorded.
var (
	Version = "dev"
	// Commit is the git revision, e.g. 3f2a9c1d0b4e or 3f2a9c1d0b4e+dirty.
	Commit string
	// CommitTime is the commit's time in RFC 3339.
	CommitTime string
)

// Build describes the binary: what a person reads off `device-agent -version`
// when they ask "which one is on this recorder?".
type Build struct {
	Version string
	// Commit is the git revision the binary was built from, with "+dirty"
	// when the tree had changes; "unknown" outside a git checkout.
	Commit string
	// Target is GOOS/GOARCH plus the ARM or MIPS variant, e.g. linux/arm v7
	// or linux/mipsle softfloat.
	Target string
	// Time is the commit time; zero when unknown. It is also the agent's
	// lower bound for "now" when the box's clock is plainly wrong.
	Time time.Time
}

// BuildInfo reads the build details: the stamped variables first, then
// what the Go toolchain recorded in the binary.
func BuildInfo() Build {
	b := Build{Version: Version, Commit: "unknown", Target: runtime.GOOS + "/" + runtime.GOARCH}
	if info, ok := debug.ReadBuildInfo(); ok {
		var dirty bool
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				b.Commit = s.Value[:min(12, len(s.Value))]
			case "vcs.modified":
				dirty = s.Value == "true"
			case "vcs.time":
				b.Time, _ = time.Parse(time.RFC3339, s.Value)
			case "GOARM":
				b.Target += " v" + s.Value
			case "GOMIPS", "GOARM64", "GOAMD64":
				b.Target += " " + s.Value
			}
		}
		if dirty && b.Commit != "unknown" {
			b.Commit += "+dirty"
		}
	}
	if Commit != "" {
		b.Commit = Commit
	}
	if t, err := time.Parse(time.RFC3339, CommitTime); err == nil {
		b.Time = t
	}
	return b
}

func (b Build) String() string {
	return fmt.Sprintf("device-agent %s (commit %s, %s, %s)", b.Version, b.Commit, b.Target, runtime.Version())
}
