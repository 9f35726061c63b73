package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/peercam/peercam/internal/lab"
)

// The agent gets a port forward from a real home router (miniupnpd) with
// each protocol it speaks, renews the lease, offers the mapped address to
// viewers, and removes the forward when it stops. Both NATs are symmetric,
// so without the mapping the viewer could not connect directly.
func TestPortMapping(t *testing.T) {
	if testing.Short() {
		t.Skip("network namespaces")
	}
	for _, tt := range []struct {
		name    string
		router  lab.Router
		mapping string
		variant string // what the agent's log must name
	}{
		{"upnp_igd2", lab.Router{UPnP: true}, "upnp", "variant=IGDv2"},
		{"upnp_igd1", lab.Router{UPnP: true, IGDv1: true}, "upnp", "variant=IGDv1"},
		{"natpmp", lab.Router{NATPMP: true}, "natpmp", "protocol=natpmp"},
		{"pcp", lab.Router{NATPMP: true}, "pcp", "protocol=pcp"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := startLab(t, natCell{Agent: lab.NATSymmetric, Viewer: lab.NATSymmetric, Router: tt.router, Mapping: tt.mapping})
			waitFor(t, 15*time.Second, "the agent's port mapping", func() bool {
				return strings.Contains(r.log("agent"), "the router forwards a port")
			})
			agentLog := r.log("agent")
			if !strings.Contains(agentLog, tt.variant) || !strings.Contains(agentLog, "external="+lab.HomeRouterWAN+":") {
				t.Fatalf("the agent's mapping is not the expected one (%s):\n%s", tt.variant, agentLog)
			}
			fwd, err := r.lab.Forwards()
			if err != nil || len(fwd) != 1 || !strings.Contains(fwd[0], "to "+r.lab.HomeAddr+":8189") {
				t.Fatalf("router forwards %q, %v; want one forward to the agent's port 8189", fwd, err)
			}
			res := r.view(t, 10, 0)
			if res.Error != "" || res.Relayed() || res.RemoteType != "srflx" {
				t.Fatalf("want direct video to the mapped port: %+v", res)
			}
			// The lease is 4 s: a renewal every 2 s keeps the forward.
			waitFor(t, 10*time.Second, "a lease renewal", func() bool {
				return strings.Contains(r.log("agent"), "renewed the router's port mapping")
			})
			r.stop("agent")
			if !strings.Contains(r.log("agent"), "removed the router's port mapping") {
				t.Fatalf("the agent did not say it removed the mapping:\n%s", r.log("agent"))
			}
			if fwd, err := r.lab.Forwards(); err != nil || len(fwd) != 0 {
				t.Fatalf("after the agent stopped the router still forwards %q (%v)", fwd, err)
			}
		})
	}
}
