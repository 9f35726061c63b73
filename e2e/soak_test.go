//go:build soak

package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// make soak: 4 cameras × 4 viewers (Go WHEP viewers that open again when
// their session dies), with a fault every PEERCAM_SOAK_EVERY (default 1m)
// in turn, for PEERCAM_SOAK (default 10m), against the real binaries. It
// prints the agent's and the rendezvous's resident memory, threads and
// open files at the start and the end, and fails if one has not come back
// within 10% (open files exactly), or if a viewer is not playing at the end.

type soakViewer struct {
	camera   string
	token    string
	reopens  atomic.Int32
	lastSeen atomic.Int64 // unix ns of the last video packet
}

func (v *soakViewer) run(t *testing.T, s *binSystem, stop <-chan struct{}) {
	for {
		w := openWHEP(t, s, v.camera, v.token, true)
		opened := time.Now()
		for w.status == http.StatusCreated {
			select {
			case <-stop:
				_ = w.pc.Close()
				return
			case <-time.After(500 * time.Millisecond):
			}
			last := time.Unix(0, w.lastRTP.Load())
			if last.After(opened) {
				v.lastSeen.Store(last.UnixNano())
			} else {
				last = opened
			}
			if time.Since(last) > 6*time.Second {
				break // this session is dead (the agent restarted): open another
			}
		}
		_ = w.pc.Close()
		v.reopens.Add(1)
		select {
		case <-stop:
			return
		case <-time.After(time.Second):
		}
	}
}

type procStats struct{ rssMiB, threads, fds, goroutines int }

// statsOf reads a process's figures; metrics, when set, is its Prometheus
// endpoint, for the goroutines.
func statsOf(t testing.TB, pid int, metrics string) procStats {
	var st procStats
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			fmt.Sscanf(strings.TrimSpace(v), "%d", &st.rssMiB)
			st.rssMiB /= 1024
		}
		if v, ok := strings.CutPrefix(l, "Threads:"); ok {
			fmt.Sscanf(strings.TrimSpace(v), "%d", &st.threads)
		}
	}
	if fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
		st.fds = len(fds)
	}
	if metrics != "" {
		st.goroutines = int(scrape(t, metrics)["go_goroutines"])
	}
	return st
}

func TestSoak(t *testing.T) {
	total, every := envDuration("PEERCAM_SOAK", 10*time.Minute), envDuration("PEERCAM_SOAK_EVERY", time.Minute)
	control := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	agentMetrics, rvMetrics := freeAddr(t), freeAddr(t)
	s := startBinariesWith(t, binOptions{channels: 4, maxViewers: 20,
		simArgs: []string{"-keyframe-on-play", "-control", control}, rvArgs: []string{"-open-burst", "1000", "-metrics", rvMetrics},
		agentYAML: "metrics_listen: " + agentMetrics + "\n"})
	alice := s.login(t, "alice", "alice-password", "")
	var viewers []*soakViewer
	for cam := 1; cam <= 4; cam++ {
		for i := 0; i < 4; i++ {
			var minted struct{ Token string }
			if st := s.api(t, alice, "POST", "/api/devices/"+s.agentID+"/tokens",
				map[string]any{"cameras": []string{fmt.Sprint(cam)}, "ttl_seconds": int((total + time.Hour).Seconds())}, &minted); st != 200 {
				t.Fatalf("mint: %d", st)
			}
			viewers = append(viewers, &soakViewer{camera: fmt.Sprint(cam), token: minted.Token})
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, v := range viewers {
		wg.Go(func() { v.run(t, s, stop) })
	}
	time.Sleep(20 * time.Second) // every viewer playing, memory settled
	// measure reads a process after closing the test's own idle HTTP
	// connections, which would count among the rendezvous's open files.
	measure := func(c *exec.Cmd) procStats {
		http.DefaultClient.CloseIdleConnections()
		time.Sleep(time.Second)
		m := "http://" + agentMetrics + "/metrics"
		if c == s.rv {
			m = "http://" + rvMetrics + "/metrics"
		}
		st := statsOf(t, c.Process.Pid, m)
		http.DefaultClient.CloseIdleConnections() // the scrape's own
		time.Sleep(200 * time.Millisecond)
		st.fds = statsOf(t, c.Process.Pid, "").fds
		return st
	}
	startAgent, startRV := measure(s.agent), measure(s.rv)
	// A process that restarts is compared with itself once it has settled
	// again, not with the one it replaced.
	baseAgent, baseRV := startAgent, startRV
	rebase := ""

	post := func(path string) {
		if resp, err := http.Post("http://"+control+path, "", nil); err == nil {
			resp.Body.Close()
		}
	}
	faults := []struct {
		name string
		do   func()
	}{
		{"camera restart (3 s)", func() { post("/restart?seconds=3") }},
		{"channel 2 stalls (5 s)", func() { post("/stall?channel=2&seconds=5") }},
		{"agent restart", func() {
			stopProcess(s.agent, 5*time.Second)
			time.Sleep(3 * time.Second)
			s.agent = startProc(t, "device-agent", s.agentLog, s.agentBin, "-config", s.agentCfg)
		}},
		{"rendezvous restart", func() {
			stopProcess(s.rv, 5*time.Second)
			time.Sleep(3 * time.Second)
			s.rv = startProc(t, "rendezvous", io.Discard, s.rvBin, s.rvArgs...)
		}},
		{"channel 3 sends garbage (5 s)", func() { post("/garbage?channel=3&seconds=5") }},
	}
	deadline := time.Now().Add(total)
	for i := 0; time.Now().Add(every).Before(deadline); i++ {
		time.Sleep(every - 10*time.Second)
		switch rebase {
		case "agent":
			baseAgent = measure(s.agent)
		case "rendezvous":
			baseRV = measure(s.rv)
		}
		rebase = ""
		f := faults[i%len(faults)]
		if strings.HasPrefix(f.name, "agent") {
			rebase = "agent"
		} else if strings.HasPrefix(f.name, "rendezvous") {
			rebase = "rendezvous"
		}
		t.Logf("%s: %s", time.Now().Format("15:04:05"), f.name)
		f.do()
		time.Sleep(10 * time.Second)
	}
	time.Sleep(30 * time.Second) // the last fault recovered
	switch rebase {
	case "agent":
		baseAgent = measure(s.agent)
		time.Sleep(20 * time.Second)
	case "rendezvous":
		baseRV = measure(s.rv)
		time.Sleep(20 * time.Second)
	}
	endAgent, endRV := measure(s.agent), measure(s.rv)
	close(stop)
	wg.Wait()

	t.Logf("%-11s %-18s %-18s %-18s %-18s", "", "RSS MiB", "threads", "goroutines", "open files")
	t.Logf("%-11s %-18s %-18s %-18s %-18s", "", "start/base/end", "start/base/end", "start/base/end", "start/base/end")
	row := func(name string, a, b, c procStats) {
		t.Logf("%-11s %-18s %-18s %-18s %-18s", name, fmt.Sprintf("%d/%d/%d", a.rssMiB, b.rssMiB, c.rssMiB),
			fmt.Sprintf("%d/%d/%d", a.threads, b.threads, c.threads), fmt.Sprintf("%d/%d/%d", a.goroutines, b.goroutines, c.goroutines),
			fmt.Sprintf("%d/%d/%d", a.fds, b.fds, c.fds))
	}
	row("agent", startAgent, baseAgent, endAgent)
	row("rendezvous", startRV, baseRV, endRV)
	reopens := 0
	for _, v := range viewers {
		reopens += int(v.reopens.Load())
		if gap := time.Since(time.Unix(0, v.lastSeen.Load())); gap > 5*time.Second {
			t.Errorf("a viewer of camera %s has had no video for %v at the end", v.camera, gap.Round(time.Second))
		}
	}
	t.Logf("16 viewers reopened their sessions %d times in all (WHEP has no signaling to resume on)", reopens)
	within := func(name string, a, b int) {
		if float64(b) > float64(a)*1.1+1 {
			t.Errorf("%s grew from %d to %d, more than 10%%", name, a, b)
		}
	}
	within("agent RSS", baseAgent.rssMiB, endAgent.rssMiB)
	within("agent threads", baseAgent.threads, endAgent.threads)
	within("rendezvous RSS", baseRV.rssMiB, endRV.rssMiB)
	within("rendezvous threads", baseRV.threads, endRV.threads)
	within("agent goroutines", baseAgent.goroutines, endAgent.goroutines)
	within("rendezvous goroutines", baseRV.goroutines, endRV.goroutines)
	if endAgent.fds != baseAgent.fds {
		t.Errorf("agent open files %d → %d", baseAgent.fds, endAgent.fds)
	}
	if endRV.fds != baseRV.fds {
		t.Errorf("rendezvous open files %d → %d", baseRV.fds, endRV.fds)
	}
}
