package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/peercam/peercam/firmware-sim/nvr"
)

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

// machineCPU is the CPU time every process on the machine has used so far
// (all cores: user, nice, system, interrupts), and the time the hypervisor
// gave this machine's cores to others (steal).
func machineCPU(b testing.TB) (busy, steal time.Duration) {
	b.Helper()
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(strings.SplitN(string(raw), "\n", 2)[0]) // cpu user nice system idle iowait irq softirq steal
	var ticks [8]int64
	for i := range ticks {
		ticks[i], _ = strconv.ParseInt(f[1+i], 10, 64)
	}
	used := ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6] // not idle, iowait, steal
	return time.Duration(used) * time.Second / 100, time.Duration(ticks[7]) * time.Second / 100
}

func rssOf(b testing.TB, pid int) float64 {
	rss, _ := procMemory(b, pid)
	return rss
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

// served is what BenchmarkViewers measures: a process serving WHEP.
type served struct {
	name  string
	pid   int
	url   string
	token string
	// metrics is the agent's metrics URL; empty for mediamtx.
	metrics string
}

type viewerRow struct {
	n                       int
	cpu, heap, rss, slowest float64
	p50, p99                float64
	// viewersCPU is the benchmark's own process: its viewers.
	viewersCPU float64
}

// BenchmarkViewers is one camera (720p25, 2 Mbit/s CBR, 4 s GOP) watched by
// 1, 10, 25, 50 and 100 WHEP viewers of the agent binary, with its default
// memory limit. At each step: the agent's CPU (% of one core, over 10 s),
// live heap and RSS, the slowest viewer's share of the stream's bitrate,
// and, from the agent's metrics, the p99 forwarding delay. With mediamtx on
// the PATH (or MEDIAMTX naming its binary) the same steps run against it,
// pulling the same camera, in the same run. Run it alone:
// go test -run '^$' -bench BenchmarkViewers -benchtime 1x ./e2e
// (VIEWERS=1,10 picks the steps.)
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
`, steps[len(steps)-1]+2, metricsAddr)})
	token, err := mintToken(context.Background(), in.dataDir, ag.id, []string{"1"}, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	targets := []served{{name: "PeerCam", pid: ag.cmd.Process.Pid, url: fmt.Sprintf("%s/whep/%s/1", in.rv.URL(), ag.id), token: token,
		metrics: "http://" + metricsAddr + "/metrics"}}
	if mtx := startMediaMTX(b, in.sim.URL(1, "main")); mtx != nil {
		targets = append(targets, *mtx)
	}
	results := map[string][]viewerRow{}
	b.ResetTimer()
	for _, tg := range targets {
		results[tg.name] = measureViewers(b, tg, steps)
	}
	b.StopTimer()
	var tbl strings.Builder
	fmt.Fprintf(&tbl, "\n| viewers |")
	for _, tg := range targets {
		fmt.Fprintf(&tbl, " %s CPU %% | %s RSS MiB |", tg.name, tg.name)
	}
	fmt.Fprintf(&tbl, " PeerCam live heap MiB | PeerCam forwarding p99 | slowest viewer Mbit/s |\n|---|")
	for range targets {
		tbl.WriteString("---|---|")
	}
	tbl.WriteString("---|---|---|\n")
	for i, n := range steps {
		fmt.Fprintf(&tbl, "| %d |", n)
		slowest := results["PeerCam"][i].slowest
		for _, tg := range targets {
			r := results[tg.name][i]
			fmt.Fprintf(&tbl, " %.1f | %.0f |", r.cpu, r.rss)
			slowest = min(slowest, r.slowest)
		}
		pr := results["PeerCam"][i]
		fmt.Fprintf(&tbl, " %.1f | ≤ %.1f ms | %.2f |\n", pr.heap, pr.p99, slowest)
	}
	for _, tg := range targets {
		rows := results[tg.name]
		if len(rows) < 2 {
			continue
		}
		first, last := rows[0], rows[len(rows)-1]
		per := (last.cpu - first.cpu) / float64(last.n-first.n)
		fmt.Fprintf(&tbl, "\n%s, marginal per viewer (%d→%d): %.3f%% of a core", tg.name, first.n, last.n, per)
		b.ReportMetric(per, "cpu%/viewer-"+tg.name)
		if tg.metrics != "" {
			heapKiB := (last.heap - first.heap) * 1024 / float64(last.n-first.n)
			fmt.Fprintf(&tbl, ", %.0f KiB live heap", heapKiB)
			b.ReportMetric(heapKiB, "heapKiB/viewer")
		}
	}
	b.Log(tbl.String())
	// Quiet logs: what the agent said at warning level or above.
	raw, _ := os.ReadFile(ag.log.Name())
	counts := map[string]int{}
	for _, l := range strings.Split(string(raw), "\n") {
		if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
			msg := l
			if i := strings.Index(l, "msg="); i >= 0 {
				msg = l[i:min(len(l), i+90)]
			}
			counts[msg]++
		}
	}
	for msg, n := range counts {
		b.Logf("agent log: %d× %s", n, msg)
	}
	b.ReportMetric(0, "ns/op")
}

// measureViewers adds viewers of tg step by step and measures each step.
func measureViewers(b *testing.B, tg served, steps []int) []viewerRow {
	var viewers []*whepViewer
	defer func() {
		for _, v := range viewers {
			v.pc.Close()
		}
		time.Sleep(3 * time.Second) // the sessions end before the next target
	}()
	var rows []viewerRow
	const window = 10 * time.Second
	for _, n := range steps {
		var wg sync.WaitGroup
		var mu sync.Mutex
		for len(viewers) < n {
			batch := min(n-len(viewers), 10)
			for i := 0; i < batch; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					v := openWHEPViewer(b, tg.url, tg.token)
					mu.Lock()
					viewers = append(viewers, v)
					mu.Unlock()
				}()
			}
			wg.Wait()
		}
		time.Sleep(5 * time.Second) // past the GOP cache catch-up, or the first keyframe
		before := make([]int64, len(viewers))
		for i, v := range viewers {
			before[i] = v.bytes.Load()
		}
		var m0, m1 map[string]float64
		if tg.metrics != "" {
			m0 = scrape(b, tg.metrics)
		}
		c0, t0, h0 := procCPU(b, tg.pid), time.Now(), procCPU(b, os.Getpid())
		time.Sleep(window)
		c1, el, h1 := procCPU(b, tg.pid), time.Since(t0), procCPU(b, os.Getpid())
		r := viewerRow{n: n, cpu: float64(c1-c0) / float64(el) * 100, rss: rssOf(b, tg.pid), slowest: -1,
			viewersCPU: float64(h1-h0) / float64(el) * 100}
		for i, v := range viewers {
			rate := float64(v.bytes.Load()-before[i]) * 8 / el.Seconds() / 1e6
			if r.slowest < 0 || rate < r.slowest {
				r.slowest = rate
			}
		}
		if tg.metrics != "" {
			m1 = scrape(b, tg.metrics)
			delta := map[string]float64{}
			for k, v := range m1 {
				delta[k] = v - m0[k]
			}
			r.heap = m1["peercam_agent_heap_live_bytes"] / (1 << 20)
			r.p50 = histQuantile(delta, "peercam_agent_forward_delay_seconds", 0.5) * 1000
			r.p99 = histQuantile(delta, "peercam_agent_forward_delay_seconds", 0.99) * 1000
		}
		rows = append(rows, r)
		b.Logf("%s, %3d viewers: CPU %5.1f%% of a core, live heap %5.1f MiB, RSS %5.1f MiB; slowest viewer %.2f Mbit/s; forwarding p50 ≤ %.2f, p99 ≤ %.2f ms; the viewers used %.0f%%",
			tg.name, n, r.cpu, r.heap, r.rss, r.slowest, r.p50, r.p99, r.viewersCPU)
	}
	return rows
}

// startMediaMTX runs mediamtx pulling camera, with WebRTC on loopback, if
// it is on the machine; nil if not.
func startMediaMTX(b *testing.B, camera string) *served {
	bin := os.Getenv("MEDIAMTX")
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("mediamtx"); err != nil {
			b.Log("mediamtx is not on the PATH (nor in MEDIAMTX): PeerCam alone")
			return nil
		}
	}
	dir := b.TempDir()
	httpAddr, udp := freeAddr(b), freeAddr(b)
	cfg := fmt.Sprintf(`logLevel: warn
api: no
metrics: no
pprof: no
playback: no
rtsp: no
rtmp: no
hls: no
srt: no
webrtc: yes
webrtcAddress: %s
webrtcLocalUDPAddress: %s
webrtcLocalTCPAddress: ""
webrtcIPsFromInterfaces: no
webrtcAdditionalHosts: [127.0.0.1]
webrtcICEServers2: []
paths:
  cam1:
    source: %s
    rtspTransport: tcp
`, httpAddr, udp, camera)
	path := filepath.Join(dir, "mediamtx.yml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		b.Fatal(err)
	}
	logf, _ := os.Create(filepath.Join(dir, "mediamtx.log"))
	cmd := exec.Command(bin, path)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { stopProcess(cmd, 5*time.Second); logf.Close() })
	waitFor(b, 10*time.Second, "mediamtx listening", func() bool {
		resp, err := http.Get("http://" + httpAddr + "/cam1/")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
	time.Sleep(2 * time.Second) // its source connected
	return &served{name: "mediamtx", pid: cmd.Process.Pid, url: "http://" + httpAddr + "/cam1/whep"}
}
