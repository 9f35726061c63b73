package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/peercam/peercam/firmware-sim/camera"
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
	// coldURL plays the second camera's main stream, which nobody pulls
	// until a viewer comes.
	coldURL string
	// metrics is the agent's metrics URL; empty for mediamtx.
	metrics string
}

type viewerRow struct {
	n                       int
	cpu, heap, rss, slowest float64
	// p50 and p99 are the agent's own forwarding delay (its metric), ms.
	p50, p99 float64
	// e2e is each frame's delay from the camera to a viewer, over every
	// viewer and frame of the window.
	e2e []time.Duration
	// viewersCPU is the benchmark's own process: its viewers.
	viewersCPU float64
	// gcs is the agent's garbage collections a second.
	gcs float64
}

// scorecard is one server's figures in BenchmarkViewers.
type scorecard struct {
	// warm and cold are the first whole keyframe after the offer, ms; back
	// is how long after it the viewer played live (ms), lag each live
	// frame's delay from the camera in those warm views.
	warm, cold, back []float64
	lag              []time.Duration
	rows             []viewerRow
}

// BenchmarkViewers is the agent beside mediamtx, in one run and one table.
// The camera is the simulator's channel 1 (720p25, 2 Mbit/s CBR, 4 s GOP);
// channel 2 is the same and nobody watches it between cold views. Each
// server in turn gets:
//   - 10 warm views: from the offer to the first whole keyframe, how long
//     until the picture is live (the GOP cache played through), and how far
//     behind the camera it then is;
//   - 6 cold views of channel 2's main stream, at spread phases against its
//     keyframes;
//   - 1, 10, 25, 50 and 100 viewers held at once: its CPU (% of one core,
//     over 10 s), RSS, the agent's live heap and forwarding delay (its
//     metrics), the slowest viewer's bitrate and every frame's delay from
//     the camera to each viewer.
//
// Delays from the camera are measured at the viewers against the
// simulator's log of what it sent (camLog), the same way for both. The
// agent runs with its default memory limit and warm sub streams. mediamtx
// runs when it is on the PATH or MEDIAMTX names its binary. Run it alone:
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
	cams := map[int]*camLog{1: {}, 2: {}}
	in := startInfraSim(b, 2, func(c *nvr.Config) {
		c.MainKbps, c.Audio = 2000, false
		c.OnVideo = func(ch int, kind string, pkts []*rtp.Packet) {
			if kind == camera.Main {
				cams[ch].add(pkts)
			}
		}
	}, benchOpens)
	metricsAddr := freeAddr(b)
	// A short linger, so that channel 2 is cold again soon after each cold
	// view; it changes nothing while channel 1 is watched.
	ag := startAgentBinary(b, in, agentBinary(b, "amd64"), 2, agentRun{yaml: fmt.Sprintf(`max_viewers: %d
linger: 100ms
metrics_listen: %s
`, steps[len(steps)-1]+2, metricsAddr)})
	token, err := mintToken(context.Background(), in.dataDir, ag.id, []string{"1", "2"}, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	whep := fmt.Sprintf("%s/whep/%s/", in.rv.URL(), ag.id)
	targets := []served{{name: "PeerCam", pid: ag.cmd.Process.Pid, url: whep + "1", coldURL: whep + "2", token: token,
		metrics: "http://" + metricsAddr + "/metrics"}}
	if mtx := startMediaMTX(b, in.sim.URL(1, "main"), in.sim.URL(2, "main")); mtx != nil {
		targets = append(targets, *mtx)
	}
	results := map[string]*scorecard{}
	b.ResetTimer()
	for _, tg := range targets {
		results[tg.name] = measureServer(b, in, cams, tg, steps)
	}
	b.StopTimer()
	// On stdout: the benchmark log keeps only its first ten lines.
	fmt.Print(scorecardTable(targets, results, steps))
	for _, tg := range targets {
		rows := results[tg.name].rows
		if cpu, ok := perViewer(rows, func(r viewerRow) float64 { return r.cpu }); ok {
			b.ReportMetric(cpu, "cpu%/viewer-"+tg.name)
		}
		if heap, ok := perViewer(rows, func(r viewerRow) float64 { return r.heap * 1024 }); ok && tg.metrics != "" {
			b.ReportMetric(heap, "heapKiB/viewer")
		}
	}
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
		fmt.Printf("agent log: %d× %s\n", n, msg)
	}
	b.ReportMetric(0, "ns/op")
}

// measureServer takes one server's scorecard (see BenchmarkViewers).
func measureServer(b *testing.B, in *infra, cams map[int]*camLog, tg served, steps []int) *scorecard {
	sc := &scorecard{}
	var viewers []*whepViewer
	defer func() {
		for _, v := range viewers {
			v.pc.Close()
		}
		time.Sleep(3 * time.Second) // the sessions end before the next server
	}()
	// One viewer holds channel 1 (it is the first of the steps' viewers),
	// so the warm views find it pulled.
	holder := openWHEPViewer(b, tg.url, tg.token)
	viewers = append(viewers, holder)
	if _, ok := holder.firstKey(15 * time.Second); !ok {
		b.Fatalf("%s: no keyframe within 15 s", tg.name)
	}
	for range 10 {
		v := openWHEPViewer(b, tg.url, tg.token)
		d, ok := v.firstKey(15 * time.Second)
		if !ok {
			b.Fatalf("%s: a warm view got no keyframe within 15 s", tg.name)
		}
		time.Sleep(1500 * time.Millisecond)
		frames := v.takeFrames()
		v.pc.Close()
		sc.warm = append(sc.warm, msOf(d))
		if lag, live := cams[1].match(frames); lag != nil {
			sc.back = append(sc.back, msOf(frames[live].at.Sub(frames[0].at)))
			sc.lag = append(sc.lag, lag...)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for i := range 6 {
		waitFor(b, 15*time.Second, tg.name+" lets the cold camera go", func() bool { return in.sim.Playing(2, camera.Main) == 0 })
		time.Sleep(time.Duration(i) * 650 * time.Millisecond) // phases over the 4 s GOP
		v := openWHEPViewer(b, tg.coldURL, tg.token)
		d, ok := v.firstKey(15 * time.Second)
		v.pc.Close()
		if !ok {
			b.Fatalf("%s: a cold view got no keyframe within 15 s", tg.name)
		}
		sc.cold = append(sc.cold, msOf(d))
	}
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
			v.takeFrames()
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
		unmatched := 0
		for i, v := range viewers {
			rate := float64(v.bytes.Load()-before[i]) * 8 / el.Seconds() / 1e6
			if r.slowest < 0 || rate < r.slowest {
				r.slowest = rate
			}
			frames := v.takeFrames()
			d, live := cams[1].match(frames)
			r.e2e = append(r.e2e, d...)
			unmatched += live
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
			r.gcs = delta["go_gc_duration_seconds_count"] / el.Seconds()
		}
		sc.rows = append(sc.rows, r)
		b.Logf("%s, %3d viewers: CPU %5.1f%% of a core, live heap %5.1f MiB, RSS %5.1f MiB; slowest viewer %.2f Mbit/s; forwarding p50 ≤ %.2f, p99 ≤ %.2f ms, %.1f GC/s; camera to viewer p50 %s, p99 %s (%d frames, %d not matched); the viewers used %.0f%%",
			tg.name, n, r.cpu, r.heap, r.rss, r.slowest, r.p50, r.p99, r.gcs, quantileMs(r.e2e, 0.5), quantileMs(r.e2e, 0.99), len(r.e2e), unmatched, r.viewersCPU)
	}
	return sc
}

// perViewer is f's slope from the first step to the last, per viewer;
// false with fewer than two steps.
func perViewer(rows []viewerRow, f func(r viewerRow) float64) (float64, bool) {
	if len(rows) < 2 {
		return 0, false
	}
	first, last := rows[0], rows[len(rows)-1]
	return (f(last) - f(first)) / float64(last.n-first.n), true
}

func msOf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// quantileMs is the q quantile of ds in ms, to two decimals; "–" for none.
func quantileMs(ds []time.Duration, q float64) string {
	if len(ds) == 0 {
		return "–"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return fmt.Sprintf("%.2f", msOf(s[min(len(s)-1, int(q*float64(len(s))))]))
}

// pair is "p50 / pHigh" of ms samples, to the whole ms; "–" for none.
func pair(ms []float64, high float64) string {
	if len(ms) == 0 {
		return "–"
	}
	s := slices.Clone(ms)
	slices.Sort(s)
	pick := func(q float64) float64 { return s[min(len(s)-1, int(q*float64(len(s))))] }
	return fmt.Sprintf("%.0f / %.0f", pick(0.5), pick(high))
}

// scorecardTable is BenchmarkViewers' one table: a row per figure, a
// column per server.
func scorecardTable(targets []served, res map[string]*scorecard, steps []int) string {
	var t strings.Builder
	t.WriteString("\n| |")
	for _, tg := range targets {
		fmt.Fprintf(&t, " %s |", tg.name)
	}
	t.WriteString("\n|---|")
	for range targets {
		t.WriteString("---|")
	}
	row := func(label string, cell func(tg served, sc *scorecard) string) {
		fmt.Fprintf(&t, "\n| %s |", label)
		for _, tg := range targets {
			fmt.Fprintf(&t, " %s |", cell(tg, res[tg.name]))
		}
	}
	perStep := func(f func(r viewerRow) string) func(served, *scorecard) string {
		return func(_ served, sc *scorecard) string {
			var cells []string
			for _, r := range sc.rows {
				cells = append(cells, f(r))
			}
			return strings.Join(cells, " / ")
		}
	}
	// agentOnly is cell for the agent, whose metrics have the figure.
	agentOnly := func(cell func(served, *scorecard) string) func(served, *scorecard) string {
		return func(tg served, sc *scorecard) string {
			if tg.metrics == "" {
				return "–"
			}
			return cell(tg, sc)
		}
	}
	marginal := func(f func(r viewerRow) float64, format string) func(served, *scorecard) string {
		return func(_ served, sc *scorecard) string {
			if v, ok := perViewer(sc.rows, f); ok {
				return fmt.Sprintf(format, v)
			}
			return "–"
		}
	}
	var ns []string
	for _, n := range steps {
		ns = append(ns, strconv.Itoa(n))
	}
	at := strings.Join(ns, " / ")
	span := fmt.Sprintf("%d→%d", steps[0], steps[len(steps)-1])
	row("first keyframe, warm stream (ms from the offer, p50 / p95)", func(_ served, sc *scorecard) string { return pair(sc.warm, 0.95) })
	row("first keyframe, cold main stream (ms, p50 / p95)", func(_ served, sc *scorecard) string { return pair(sc.cold, 0.95) })
	row("live after the first frame (ms, p50 / p95)", func(_ served, sc *scorecard) string { return pair(sc.back, 0.95) })
	row("then behind the camera (ms, p50 / p99)", func(_ served, sc *scorecard) string {
		return quantileMs(sc.lag, 0.5) + " / " + quantileMs(sc.lag, 0.99)
	})
	row("CPU, % of a core, at "+at+" viewers", perStep(func(r viewerRow) string { return fmt.Sprintf("%.1f", r.cpu) }))
	row("CPU per viewer ("+span+"), % of a core", marginal(func(r viewerRow) float64 { return r.cpu }, "%.3f"))
	row("RSS, MiB, at "+at, perStep(func(r viewerRow) string { return fmt.Sprintf("%.0f", r.rss) }))
	row("RSS per viewer ("+span+"), KiB", marginal(func(r viewerRow) float64 { return r.rss * 1024 }, "%.0f"))
	row("live heap, MiB, at "+at, agentOnly(perStep(func(r viewerRow) string { return fmt.Sprintf("%.1f", r.heap) })))
	row("live heap per viewer ("+span+"), KiB", agentOnly(marginal(func(r viewerRow) float64 { return r.heap * 1024 }, "%.0f")))
	row("camera → viewer, ms p50, at "+at, perStep(func(r viewerRow) string { return quantileMs(r.e2e, 0.5) }))
	row("camera → viewer, ms p99, at "+at, perStep(func(r viewerRow) string { return quantileMs(r.e2e, 0.99) }))
	row("forwarding in the agent, ms p99 (bucket), at "+at, agentOnly(perStep(func(r viewerRow) string { return "≤ " + strconv.FormatFloat(r.p99, 'g', -1, 64) })))
	row("slowest viewer, Mbit/s, at "+at, perStep(func(r viewerRow) string { return fmt.Sprintf("%.2f", r.slowest) }))
	t.WriteString("\n")
	return t.String()
}

// startMediaMTX runs mediamtx pulling camera, with WebRTC on loopback, if
// it is on the machine; nil if not.
func startMediaMTX(b *testing.B, live, cold string) *served {
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
  cam2:
    source: %s
    rtspTransport: tcp
    sourceOnDemand: yes
    sourceOnDemandCloseAfter: 100ms
`, httpAddr, udp, live, cold)
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
	return &served{name: "mediamtx", pid: cmd.Process.Pid, url: "http://" + httpAddr + "/cam1/whep", coldURL: "http://" + httpAddr + "/cam2/whep"}
}
