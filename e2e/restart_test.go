package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/peercam/peercam/internal/lab"
)

// A session survives network changes without the viewer reopening it: when
// the viewer moves to a new address, or either side's link drops for a few
// seconds, the viewer restarts ICE on the same session and video resumes.
func TestICERestart(t *testing.T) {
	if testing.Short() {
		t.Skip("network namespaces")
	}
	for _, tt := range []struct {
		name string
		// change breaks the path and returns when the network is whole
		// again.
		change func(t *testing.T, l *lab.Lab)
		// restart: the path cannot come back without an ICE restart.
		restart bool
	}{
		{"viewer_new_address", func(t *testing.T, l *lab.Lab) {
			if _, err := l.Renumber(l.Viewer); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"viewer_link_drops_5s", func(t *testing.T, l *lab.Lab) { flap(t, l, l.Viewer, 5*time.Second) }, false},
		{"agent_uplink_drops_5s", func(t *testing.T, l *lab.Lab) { flap(t, l, l.Home, 5*time.Second) }, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := startLab(t, natCell{Agent: lab.NATCone, Viewer: lab.NATSymmetric})
			wait := r.viewStart(t, 1, 16*time.Second)
			waitFor(t, 15*time.Second, "the viewer to connect", func() bool {
				return strings.Contains(r.log("agent"), "viewer connected")
			})
			time.Sleep(4 * time.Second) // video flows
			tt.change(t, r.lab)
			res := wait()
			t.Logf("%s: %d ICE restarts, recovered %d time(s), %d frames after recovery, %d in all",
				tt.name, res.Restarts, res.Recovered, res.FramesAfterRecovery, res.Frames)
			if res.Error != "" {
				t.Fatalf("viewer: %+v", res)
			}
			if res.Recovered < 1 || res.FramesAfterRecovery < 50 {
				t.Fatalf("video did not resume after the change: %+v", res)
			}
			if tt.restart && res.Restarts < 1 {
				t.Fatalf("recovered without an ICE restart, which this change needs: %+v", res)
			}
			if res.Restarts > 0 && !strings.Contains(r.log("agent"), "viewer restarts ICE") {
				t.Fatalf("the viewer restarted ICE but the agent never saw it:\n%s", r.log("agent"))
			}
		})
	}
}

// flap takes a host's link down for d, then brings it back.
func flap(t *testing.T, l *lab.Lab, host string, d time.Duration) {
	t.Helper()
	if err := l.SetLink(host, false); err != nil {
		t.Fatal(err)
	}
	time.Sleep(d)
	if err := l.SetLink(host, true); err != nil {
		t.Fatal(err)
	}
}
