package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/peercam/peercam/device-agent/agent"
	"github.com/peercam/peercam/rendezvous/server"
)

// scrape reads a Prometheus endpoint and returns each sample's value by its
// name and labels, as `name{a="b",c="d"}` (labels sorted, as the parser
// gives them).
func scrape(t testing.TB, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("%s is not the Prometheus text format: %v", url, err)
	}
	out := map[string]float64{}
	for name, f := range fams {
		for _, m := range f.Metric {
			key := name
			if len(m.Label) > 0 {
				var ls []string
				for _, l := range m.Label {
					ls = append(ls, l.GetName()+`="`+l.GetValue()+`"`)
				}
				key += "{" + strings.Join(ls, ",") + "}"
			}
			out[key] = value(m)
			if h := m.GetHistogram(); h != nil {
				out[key+"_count"] = float64(h.GetSampleCount())
			}
		}
	}
	return out
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return 0
}

// freeAddr is a free loopback TCP address.
func freeAddr(t testing.TB) string { return fmt.Sprintf("127.0.0.1:%d", freePort(t)) }

// Both endpoints serve the Prometheus text format, and their figures move
// with what happens: a viewer comes and goes, video goes out on a host
// path, a sign-in fails.
func TestMetricsEndpoints(t *testing.T) {
	rvMetrics, agMetrics := freeAddr(t), freeAddr(t)
	in := startInfraSim(t, 1, nil, func(c *server.Config) { c.MetricsAddr = rvMetrics })
	ag, _ := startAgent(t, in, 1, func(c *agent.Config) { c.MetricsListen = agMetrics })
	waitFor(t, 10*time.Second, "agent online", func() bool { return in.rv.Hub().Online(ag.ID()) })
	if err := server.ClaimDevice(context.Background(), in.dataDir, ownerName, ag.ID(), "Shop"); err != nil {
		t.Fatal(err)
	}
	agURL, rvURL := "http://"+agMetrics+"/metrics", "http://"+rvMetrics+"/metrics"
	waitFor(t, 5*time.Second, "agent metrics endpoint", func() bool {
		_, err := http.Get(agURL)
		return err == nil
	})
	a0, r0 := scrape(t, agURL), scrape(t, rvURL)
	if a0["peercam_agent_viewers"] != 0 || r0["peercam_rendezvous_devices_online"] != 1 {
		t.Fatalf("at start: %v viewers, %v devices online", a0["peercam_agent_viewers"], r0["peercam_rendezvous_devices_online"])
	}
	for _, name := range []string{"go_goroutines", "go_gc_duration_seconds_count", "peercam_agent_heap_live_bytes"} {
		if _, ok := a0[name]; !ok {
			t.Errorf("agent metrics lack %s", name)
		}
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes"} {
		if _, ok := r0[name]; !ok {
			t.Errorf("rendezvous metrics lack %s", name)
		}
	}

	token, err := mintToken(context.Background(), in.dataDir, ag.ID(), []string{"1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p, stopPlayer := play(t, in.rv.URL()+"/whep/"+ag.ID()+"/1", token)
	waitFor(t, 15*time.Second, "playing", func() bool { return p.frames.Load() > 25 })
	a1, r1 := scrape(t, agURL), scrape(t, rvURL)
	cam := `{camera="1",stream="main"}`
	checks := []struct {
		what string
		ok   bool
	}{
		{"agent: one viewer", a1["peercam_agent_viewers"] == 1},
		{"agent: the camera's viewer", a1["peercam_agent_camera_viewers"+cam] == 1},
		{"agent: camera up", a1["peercam_agent_camera_up"+cam] == 1},
		{"agent: bytes out", a1["peercam_agent_bytes_out_total"+cam] > 10000},
		{"agent: frames out", a1["peercam_agent_frames_out_total"+cam] > 25},
		{"agent: a host path", a1[`peercam_agent_sessions_connected_total{path="host"}`] == 1},
		{"agent: forwarding delays observed", a1["peercam_agent_forward_delay_seconds_count"] > 0},
		{"agent: signaling in", a1[`peercam_agent_signaling_messages_total{direction="in"}`] > a0[`peercam_agent_signaling_messages_total{direction="in"}`]},
		{"rendezvous: one session", r1["peercam_rendezvous_sessions"] == 1},
		{"rendezvous: a session opened", r1["peercam_rendezvous_sessions_opened_total"] == 1},
		{"rendezvous: device messages", r1[`peercam_rendezvous_signaling_messages_total{from="device"}`] > 0},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("%s: no", c.what)
		}
	}
	if t.Failed() {
		t.Logf("agent: %v", a1)
		t.FailNow()
	}
	stopPlayer()
	waitFor(t, 15*time.Second, "viewer count back to 0", func() bool { return scrape(t, agURL)["peercam_agent_viewers"] == 0 })

	req, _ := http.NewRequest("POST", in.rv.URL()+"/api/login", strings.NewReader(`{"name":"`+ownerName+`","password":"wrong"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-PeerCam-CSRF", "1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := scrape(t, rvURL)[`peercam_rendezvous_logins_total{result="failed"}`]; got != 1 {
		t.Fatalf("failed sign-ins %v after one, want 1", got)
	}
}
