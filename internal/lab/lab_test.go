package lab

import (
	"strings"
	"testing"
)

// Each NAT does what it claims: hosts behind any router reach the public
// segment, and only a NAT-less host can be reached from it unasked.
func TestReachability(t *testing.T) {
	for _, nat := range NATs {
		t.Run(string(nat), func(t *testing.T) {
			l, err := New(Config{AgentNAT: nat, ViewerNAT: NATCone})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			ping := func(ns, addr string) bool {
				return l.Command(ns, "ping", "-c", "1", "-W", "1", addr).Run() == nil
			}
			if !ping(l.Home, RendezvousAddr) {
				t.Fatal("home host cannot reach the rendezvous")
			}
			if !ping(l.Viewer, RendezvousAddr) {
				t.Fatal("viewer cannot reach the rendezvous")
			}
			if got := ping(l.RV, l.HomeAddr); got != (nat == NATNone) {
				t.Fatalf("rendezvous reaching the home host unasked: %v", got)
			}
			rx, tx, err := l.Bytes(l.RV, "wan")
			if err != nil || rx == 0 || tx == 0 {
				t.Fatalf("rendezvous counters rx %d tx %d, %v", rx, tx, err)
			}
		})
	}
}

func TestRulesPerNAT(t *testing.T) {
	if r := rules(NATSymmetric, "192.168.1.10"); !strings.Contains(r, "fully-random") {
		t.Fatal("symmetric NAT without fully-random")
	}
	if r := rules(NATCone, "192.168.1.10"); strings.Contains(r, "fully-random") || !strings.Contains(r, "masquerade") {
		t.Fatal("cone NAT rules")
	}
	if r := rules(NATNone, "192.168.1.10"); strings.Contains(r, "masquerade") {
		t.Fatal("no NAT masquerades")
	}
}
