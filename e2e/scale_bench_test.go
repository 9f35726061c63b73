package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/peercam/peercam/firmware-sim/nvr"
)

// lightViewer is a WHEP viewer that only counts what it receives: many of
// them fit in the benchmark's process beside the agent they measure.
type lightViewer struct {
	pc      *webrtc.PeerConnection
	packets atomic.Int64
	bytes   atomic.Int64
}

func openLightViewer(b testing.TB, url, token string) *lightViewer {
	b.Helper()
	v := &lightViewer{pc: newLoopbackPC(b)}
	if _, err := v.pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		b.Fatal(err)
	}
	v.pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		buf := make([]byte, 1500)
		for {
			n, _, err := tr.Read(buf)
			if err != nil {
				return
			}
			v.packets.Add(1)
			v.bytes.Add(int64(n))
		}
	})
	status, _, answer := whepPost(b, url, token, v.pc)
	if status != http.StatusCreated {
		b.Fatalf("WHEP POST: %d %s", status, answer)
	}
	if err := v.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		b.Fatal(err)
	}
	return v
}

// procCPU is a process's user+system CPU time so far.
func procCPU(b testing.TB, pid int) time.Duration {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name (which may hold spaces) in parentheses.
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

func procRSS(b testing.TB, pid int) float64 {
	raw, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			kb, _ := strconv.ParseFloat(strings.Fields(l)[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// histQuantile estimates a quantile from a Prometheus histogram's buckets
// (the upper bound of the bucket it falls in).
func histQuantile(m map[string]float64, name string, q float64) float64 {
	type bk struct{ le, n float64 }
	var bs []bk
	for k, v := range m {
		if strings.HasPrefix(k, name+"_bucket{le=\"") {
			le, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimPrefix(k, name+"_bucket{le=\""), "\"}"), 64)
			if err == nil {
				bs = append(bs, bk{le, v})
			}
		}
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].le < bs[j].le })
	if len(bs) == 0 || bs[len(bs)-1].n == 0 {
		return 0
	}
	total := bs[len(bs)-1].n
	for _, b := range bs {
		if b.n >= q*total {
			return b.le
		}
	}
	return bs[len(bs)-1].le
}

// BenchmarkViewers is one camera (720p25, 2 Mbit/s CBR, 4 s GOP) watched by
// 1, 10, 25, 50 and 100 WHEP viewers of the agent binary, with its default
// memory limit. At each step: the agent's CPU (% of one core, over 10 s),
// live heap and RSS, the slowest viewer's share of the stream's bitrate,
// and, from the agent's metrics, the p99 forwarding delay. Run it alone:
// go test -run '^$' -bench BenchmarkViewers -benchtime 1x ./e2e
func BenchmarkViewers(b *testing.B) {
	steps := []int{1, 10, 25, 50, 100}
	if s := os.Getenv("VIEWERS"); s != "" {
		steps = nil
		for _, f := range strings.Split(s, ",") {
			n, _ := strconv.Atoi(f)
			steps = append(steps, n)
		}
	}
	in := startInfraSim(b, 1, func(c *nvr.Config) { c.MainKbps = 2000; c.Audio = false }, benchOpens)
	metricsAddr := freeAddr(b)
	ag := startAgentBinary(b, in, agentBinary(b, "amd64"), 1, agentRun{yaml: fmt.Sprintf(`max_viewers: %d
metrics_listen: %s
cameras: []
`, steps[len(steps)-1]+2, metricsAddr)})
	pid := ag.cmd.Process.Pid
	token, err := mintToken(context.Background(), in.dataDir, ag.id, []string{"1"}, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	url := fmt.Sprintf("%s/whep/%s/1", in.rv.URL(), ag.id)
	var viewers []*lightViewer
	defer func() {
		for _, v := range viewers {
			v.pc.Close()
		}
	}()
	type row struct {
		n                int
		cpu, heap, rss   float64
		slowest, p99, mb float64
	}
	var rows []row
	mURL := "http://" + metricsAddr + "/metrics"
	const window = 10 * time.Second
	b.ResetTimer()
	for _, n := range steps {
		var wg sync.WaitGroup
		var mu sync.Mutex
		for len(viewers) < n {
			batch := min(n-len(viewers), 10)
			for i := 0; i < batch; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					v := openLightViewer(b, url, token)
					mu.Lock()
					viewers = append(viewers, v)
					mu.Unlock()
				}()
			}
			wg.Wait()
		}
		time.Sleep(5 * time.Second) // past the GOP cache catch-up
		before := make([]int64, len(viewers))
		for i, v := range viewers {
			before[i] = v.bytes.Load()
		}
		m0 := scrape(b, mURL)
		c0, t0 := procCPU(b, pid), time.Now()
		time.Sleep(window)
		c1, el := procCPU(b, pid), time.Since(t0)
		m1 := scrape(b, mURL)
		slowest := -1.0
		for i, v := range viewers {
			rate := float64(v.bytes.Load()-before[i]) * 8 / el.Seconds() / 1e6
			if slowest < 0 || rate < slowest {
				slowest = rate
			}
		}
		delta := map[string]float64{}
		for k, v := range m1 {
			delta[k] = v - m0[k]
		}
		r := row{n: n, cpu: float64(c1-c0) / float64(el) * 100, heap: m1["peercam_agent_heap_live_bytes"] / (1 << 20),
			rss: procRSS(b, pid), slowest: slowest, p99: histQuantile(delta, "peercam_agent_forward_delay_seconds", 0.99) * 1000}
		rows = append(rows, r)
		b.Logf("%3d viewers: agent CPU %5.1f%% of a core, live heap %5.1f MiB, RSS %5.1f MiB; slowest viewer %.2f Mbit/s; forwarding p99 ≤ %.2f ms",
			n, r.cpu, r.heap, r.rss, r.slowest, r.p99)
		b.ReportMetric(r.cpu, fmt.Sprintf("cpu%%-%d", n))
		b.ReportMetric(r.heap, fmt.Sprintf("heapMiB-%d", n))
	}
	if len(rows) > 1 {
		first, last := rows[0], rows[len(rows)-1]
		per := (last.cpu - first.cpu) / float64(last.n-first.n)
		heapKiB := (last.heap - first.heap) * 1024 / float64(last.n-first.n)
		b.Logf("marginal per viewer: %.3f%% of a core, %.0f KiB live heap", per, heapKiB)
		b.ReportMetric(per, "cpu%/viewer")
		b.ReportMetric(heapKiB, "heapKiB/viewer")
	}
	for _, v := range viewers {
		v.pc.Close()
	}
	viewers = nil
	time.Sleep(3 * time.Second)
	// Quiet logs: what the agent said, beyond one line per session.
	raw, _ := os.ReadFile(ag.log.Name())
	counts := map[string]int{}
	for _, l := range strings.Split(string(raw), "\n") {
		if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
			msg := l
			if i := strings.Index(l, "msg="); i >= 0 {
				msg = l[i:]
				if len(msg) > 90 {
					msg = msg[:90]
				}
			}
			counts[msg]++
		}
	}
	for msg, n := range counts {
		b.Logf("agent log: %d× %s", n, msg)
	}
	b.ReportMetric(0, "ns/op")
}
