package e2e

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/peercam/peercam/internal/backoff"
	"github.com/peercam/peercam/internal/testutil/natstest"
	"github.com/peercam/peercam/internal/testutil/pgtest"
	"github.com/peercam/peercam/proto"
)

// BenchmarkCluster is the rendezvous under a fleet's load (make
// bench-cluster; not part of make test): DEVICES simulated agents (real
// key handshakes, then idle, answering offers) connect to node A from
// their own loopback addresses; viewers set up SETUPS sessions a second
// (open, offer, answer, bye, with SDP of real sizes) on node A, then on
// node B, whose sessions reach the devices on A through NATS; then node A
// is killed and started again, and every device reconnects at once.
func BenchmarkCluster(b *testing.B) {
	devices := envInt("DEVICES", 18000)
	rate := envInt("SETUPS", 2000)
	window := envDuration("SETUP_WINDOW", 5*time.Second)
	for b.Loop() {
		runClusterBench(b, devices, rate, window)
	}
}

func envDuration(name string, d time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return d
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// benchNode is a rendezvous process started for the benchmark.
type benchNode struct {
	clusterNode
	args []string
	bin  string
}

func (n *benchNode) start(tb testing.TB) {
	n.cmd = exec.Command(n.bin, n.args...)
	// NODE_ENV ("GOGC=off GOMEMLIMIT=1GiB") is the nodes' environment on
	// top of the benchmark's, for measuring runtime settings.
	n.cmd.Env = append(os.Environ(), strings.Fields(os.Getenv("NODE_ENV"))...)
	if err := n.cmd.Start(); err != nil {
		tb.Fatalf("start node %s: %v", n.name, err)
	}
	cmd := n.cmd
	tb.Cleanup(func() { stopProcess(cmd, 5*time.Second) })
	waitFor(tb, 30*time.Second, "node "+n.name+" up", func() bool { return healthy(n.base) })
}

func runClusterBench(b *testing.B, nDevices, rate int, window time.Duration) {
	dsn := pgtest.Database(b)
	nats := natstest.Start(b)
	rvBin := goBuild(b, "../rendezvous")
	if out, err := exec.Command(rvBin, "user", "add", ownerName, "-store", dsn, "-password", ownerPass).CombinedOutput(); err != nil {
		b.Fatalf("user add: %v\n%s", err, out)
	}
	var nodes []*benchNode
	for _, name := range []string{"A", "B"} {
		port, mport := freePort(b), freePort(b)
		n := &benchNode{bin: rvBin}
		n.name, n.base, n.metrics = name, fmt.Sprintf("http://127.0.0.1:%d", port), fmt.Sprintf("http://127.0.0.1:%d/metrics", mport)
		// The per-address limits are for abuse from one address; the
		// load comes from a few thousand loopback addresses, so they are
		// lifted for sessions (each viewer opens hundreds a second).
		n.args = []string{"-store", dsn, "-nats", nats.URL, "-node", name, "-http", fmt.Sprintf("127.0.0.1:%d", port),
			"-stun", "off", "-metrics", fmt.Sprintf("127.0.0.1:%d", mport), "-open-burst", "100000000",
			"-viewer-msg-rate", "100000", "-viewer-msg-burst", "100000"}
		n.start(b)
		nodes = append(nodes, n)
	}
	A, B := nodes[0], nodes[1]

	// The fleet is claimed by the owner, as a vendor's is: the devices
	// table is filled once, keys and claims, the way a migration would.
	keys := make([]ed25519.PrivateKey, nDevices)
	ids := make([]string, nDevices)
	for i := range keys {
		seed := sha256.Sum256([]byte("peercam-bench-device-" + strconv.Itoa(i)))
		keys[i] = ed25519.NewKeyFromSeed(seed[:])
		ids[i] = proto.DeviceID(keys[i].Public().(ed25519.PublicKey))
	}
	fillDevices(b, dsn, keys, ids)

	// Live memory after collections: heap and goroutine stacks. Each
	// collection halves the stacks of goroutines that use under a quarter
	// of theirs (the idle agents' readers), so three reach the idle size.
	live := func() (heap, stacks float64) {
		for range 3 {
			if resp, err := http.Get(strings.TrimSuffix(A.metrics, "/metrics") + "/debug/pprof/heap?gc=1"); err == nil {
				resp.Body.Close()
			}
		}
		m := scrape(b, A.metrics)
		return m["go_memstats_heap_alloc_bytes"], m["go_memstats_stack_inuse_bytes"]
	}
	baseRSS, _ := procMemory(b, A.cmd.Process.Pid)
	baseHeap, baseStacks := live()
	profileOf := func(n *benchNode, name, path string) {
		if dir := os.Getenv("PROFILE_DIR"); dir != "" {
			resp, err := http.Get(strings.TrimSuffix(n.metrics, "/metrics") + path)
			if err == nil {
				f, _ := os.Create(dir + "/" + name)
				_, _ = io.Copy(f, resp.Body)
				f.Close()
				resp.Body.Close()
			}
		}
	}
	profile := func(name, path string) { profileOf(A, name, path) }
	go profile("connect.pprof", "/debug/pprof/profile?seconds=4")
	fleet := &simFleet{url: strings.Replace(A.base, "http://", "ws://", 1) + "/ws/device", keys: keys, ids: ids}
	start := time.Now()
	fleet.connect(b)
	b.ReportMetric(float64(nDevices)/time.Since(start).Seconds(), "devices-connected/s")
	waitFor(b, 60*time.Second, "every device online on A", func() bool { return int(A.devicesOnline(b)) == nDevices })
	heap, stacks := live()
	rss, _ := procMemory(b, A.cmd.Process.Pid)
	perDevice := (heap - baseHeap + stacks - baseStacks) / 1024 / float64(nDevices)
	b.ReportMetric(float64(nDevices), "devices-on-node")
	b.ReportMetric(perDevice, "KiB-live/device")
	b.ReportMetric((rss-baseRSS)*1024/float64(nDevices), "KiB-RSS/device")
	b.Logf("%d devices on node A: live heap %.1f → %.1f MiB, stacks %.1f → %.1f MiB (%.1f KiB a device); RSS %.0f → %.0f MiB; goroutines %.0f",
		nDevices, baseHeap/(1<<20), heap/(1<<20), baseStacks/(1<<20), stacks/(1<<20), perDevice, baseRSS, rss, scrape(b, A.metrics)["go_goroutines"])

	profile("heap.pprof", "/debug/pprof/heap")
	token := (&binSystem{base: A.base}).login(b, ownerName, ownerPass, "")
	go profile("cpu.pprof", "/debug/pprof/profile?seconds=4")
	for _, run := range []struct {
		name string
		node *benchNode
	}{{"A", A}, {"B-through-NATS", B}} {
		cpuA, cpuN := procCPU(b, A.cmd.Process.Pid), procCPU(b, run.node.cmd.Process.Pid)
		cpuGen := procCPU(b, os.Getpid())
		cpuAll, steal0 := machineCPU(b)
		if run.node != A {
			go profileOf(run.node, "cpu-"+run.name+".pprof", "/debug/pprof/profile?seconds=4")
		}
		t0 := time.Now()
		res := setupLoad(b, run.node.base, token, ids, rate, window)
		took := time.Since(t0)
		usedA, usedN := procCPU(b, A.cmd.Process.Pid)-cpuA, procCPU(b, run.node.cmd.Process.Pid)-cpuN
		usedGen := procCPU(b, os.Getpid()) - cpuGen
		all, steal1 := machineCPU(b)
		usedAll, stolen := all-cpuAll, steal1-steal0
		if run.node == A {
			usedN = 0
			// Against heap.pprof (-diff_base), what the setups allocated.
			profile("heap-setups.pprof", "/debug/pprof/heap")
		}
		// What the nodes spent, as setups a second per core: the load
		// generator, PostgreSQL and NATS share the machine's two cores.
		perCore := float64(res.done) / (usedA + usedN).Seconds()
		b.ReportMetric(res.perSecond, "setups/s-"+run.name)
		b.ReportMetric(perCore, "setups/core-s-"+run.name)
		b.ReportMetric(res.p50, "ms-setup-p50-"+run.name)
		b.ReportMetric(res.p99, "ms-setup-p99-"+run.name)
		b.Logf("viewers on node %s: %d setups in %v (%.0f/s, target %d/s), p50 %.1f ms, p99 %.1f ms, %d failed; node CPU %v (A) + %v (viewers' node) = %.0f setups per core-second; "+
			"in %v the load generator used %v, everything else (PostgreSQL, NATS, the kernel's share) %v, of %v; the hypervisor took %v",
			run.name, res.done, window, res.perSecond, rate, res.p50, res.p99, res.failed, usedA.Round(10*time.Millisecond), usedN.Round(10*time.Millisecond), perCore,
			took.Round(10*time.Millisecond), usedGen.Round(10*time.Millisecond), (usedAll - usedA - usedN - usedGen).Round(10*time.Millisecond),
			(time.Duration(runtime.NumCPU()) * took).Round(10*time.Millisecond), stolen.Round(10*time.Millisecond))
	}

	// The storm: node A dies and comes back; every device redials at once
	// (jittered), and A takes them a bounded number at a time.
	fleet.reconnect.Store(true)
	_ = A.cmd.Process.Signal(syscall.SIGKILL)
	_ = A.cmd.Wait()
	killed := time.Now()
	A.start(b)
	waitFor(b, 120*time.Second, "every device back on A", func() bool { return int(A.devicesOnline(b)) == nDevices })
	back := time.Since(killed)
	b.ReportMetric(back.Seconds(), "s-storm-all-back")
	b.Logf("node A killed and restarted: all %d devices back after %v (%d refused busy and retried)",
		nDevices, back.Round(100*time.Millisecond), fleet.busy.Load())
	fleet.stop()
}

// fillDevices registers and claims the fleet for the owner in one pass.
func fillDevices(tb testing.TB, dsn string, keys []ed25519.PrivateKey, ids []string) {
	tb.Helper()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	var owner int64
	if err := db.QueryRow(`SELECT id FROM users WHERE name = $1`, ownerName).Scan(&owner); err != nil {
		tb.Fatal(err)
	}
	now := time.Now().Unix()
	for lo := 0; lo < len(keys); lo += 1000 {
		hi := min(lo+1000, len(keys))
		var q strings.Builder
		args := []any{}
		q.WriteString(`INSERT INTO devices(id, public_key, owner_id, name, cameras, created, last_seen, claim_id, claimed_at) VALUES `)
		for i := lo; i < hi; i++ {
			if i > lo {
				q.WriteString(",")
			}
			n := len(args)
			fmt.Fprintf(&q, "($%d,$%d,$%d,'bench','[{\"id\":\"1\",\"name\":\"Camera 1\"}]',$%d,$%d,$%d,$%d)", n+1, n+2, n+3, n+4, n+4, n+5, n+4)
			args = append(args, ids[i], []byte(keys[i].Public().(ed25519.PublicKey)), owner, now, fmt.Sprintf("%024x", i+1))
		}
		if _, err := db.Exec(q.String(), args...); err != nil {
			tb.Fatal(err)
		}
	}
}

// simFleet is the simulated devices.
type simFleet struct {
	url  string
	keys []ed25519.PrivateKey
	ids  []string
	// reconnect makes a device whose link drops dial again, as agents do.
	reconnect atomic.Bool
	busy      atomic.Int64
	stopped   atomic.Bool
	mu        sync.Mutex // guards conns
	conns     []*websocket.Conn
}

// deviceAddr is device i's own loopback source address.
func deviceAddr(i int) net.IP { return net.IPv4(127, 10, byte(i/250), byte(1+i%250)) }

// connect brings every device online, 256 handshakes in flight.
func (f *simFleet) connect(tb testing.TB) {
	tb.Helper()
	sem := make(chan struct{}, 256)
	var wg sync.WaitGroup
	var failed atomic.Int64
	var firstErr atomic.Value
	for i := range f.keys {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ws, err := f.dialUntilIn(i)
			<-sem
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err)
				return
			}
			go f.serve(i, ws)
		}()
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		tb.Fatalf("%d devices could not connect; first: %v", n, firstErr.Load())
	}
}

// dialUntilIn dials and hands shakes, honouring the server's Retry-After.
func (f *simFleet) dialUntilIn(i int) (*websocket.Conn, error) {
	for attempt := 0; ; attempt++ {
		ws, err := f.dial(i)
		var busy *busyRefusal
		if errors.As(err, &busy) && attempt < 100 {
			f.busy.Add(1)
			time.Sleep(busy.after/2 + time.Duration(i%1000)*busy.after/1000)
			continue
		}
		return ws, err
	}
}

type busyRefusal struct{ after time.Duration }

func (e *busyRefusal) Error() string { return "busy" }

func (f *simFleet) dial(i int) (*websocket.Conn, error) {
	d := websocket.Dialer{HandshakeTimeout: 30 * time.Second, ReadBufferSize: 1024, WriteBufferSize: 1024,
		NetDialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: deviceAddr(i)}}).DialContext}
	ws, resp, err := d.Dial(f.url, nil)
	if err != nil {
		if resp != nil && resp.StatusCode == http.StatusServiceUnavailable {
			s, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
			return nil, &busyRefusal{after: time.Duration(max(s, 1)) * time.Second}
		}
		return nil, err
	}
	key, id := f.keys[i], f.ids[i]
	send := func(m proto.Message) error { return wsSend(ws, m) }
	read := func() (proto.Message, error) { return wsRead(ws) }
	fail := func(err error) (*websocket.Conn, error) { ws.Close(); return nil, err }
	if err := send(&proto.Hello{DeviceID: id, PublicKey: key.Public().(ed25519.PublicKey), AgentVersion: "bench",
		Cameras: []proto.Camera{{ID: "1", Name: "Camera 1"}}}); err != nil {
		return fail(err)
	}
	m, err := read()
	ch, ok := m.(*proto.Challenge)
	if err != nil || !ok {
		return fail(fmt.Errorf("device %d: no challenge: %v %T", i, err, m))
	}
	if err := send(&proto.Auth{Signature: ed25519.Sign(key, proto.AuthPayload(ch.Nonce, id))}); err != nil {
		return fail(err)
	}
	if m, err = read(); err != nil {
		return fail(err)
	}
	if _, ok := m.(*proto.Welcome); !ok {
		return fail(fmt.Errorf("device %d: %T instead of welcome", i, m))
	}
	f.mu.Lock()
	f.conns = append(f.conns, ws)
	f.mu.Unlock()
	return ws, nil
}

// answerSDP is the size of a real agent's answer (one video, one audio
// track, its candidates).
var answerSDP = "v=0\r\n" + strings.Repeat("a=x-bench-padding-line-of-a-real-answer-sdp\r\n", 36)

// offerSDP is the size of Chromium's offer for one video and one audio
// transceiver.
var offerSDP = "v=0\r\n" + strings.Repeat("a=x-bench-padding-line-of-a-chromium-offer-sdp\r\n", 80)

// The load generator's side of the protocol is cheap, so that the two
// cores go to the rendezvous under test: what it sends is encoded once,
// as real messages, with the session's ID put in (template); what it
// reads is looked at for its type and IDs only (field).

// template is an encoded message with a hole for one ID.
type template struct{ head, tail []byte }

const hole = "@@id@@"

func newTemplate(m proto.Message) template {
	b, err := proto.Encode(m)
	if err != nil {
		panic(err)
	}
	i := bytes.Index(b, []byte(hole))
	return template{head: b[:i:i], tail: b[i+len(hole):]}
}

// with is the message with id in the hole (IDs need no JSON escaping).
func (t template) with(id string) []byte {
	return append(append(append(make([]byte, 0, len(t.head)+len(id)+len(t.tail)), t.head...), id...), t.tail...)
}

var (
	typeOffer, typeAnswer  = (&proto.Offer{}).MessageType(), (&proto.Answer{}).MessageType()
	typeSession, typeError = (&proto.Session{}).MessageType(), (&proto.Error{}).MessageType()
	answerTemplate         = sync.OnceValue(func() template { return newTemplate(&proto.Answer{Session: hole, SDP: answerSDP}) })
	offerTemplate          = sync.OnceValue(func() template { return newTemplate(&proto.Offer{Session: hole, SDP: offerSDP}) })
)

// field is the string value of the first "key":"…" in an encoded message
// ("" when there is none): for types and IDs, which are not escaped.
func field(b []byte, key string) string {
	k := append(append([]byte{'"'}, key...), '"', ':', '"')
	i := bytes.Index(b, k)
	if i < 0 {
		return ""
	}
	rest := b[i+len(k):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	return string(rest[:j])
}

// serve is a device's idle life: answer offers, let gorilla answer the
// server's pings; redial when the link drops, if asked to.
func (f *simFleet) serve(i int, ws *websocket.Conn) {
	for {
		for {
			_, b, err := ws.ReadMessage()
			if err != nil {
				break
			}
			if field(b, "type") == typeOffer {
				_ = ws.WriteMessage(websocket.TextMessage, answerTemplate().with(field(b, "session")))
			}
		}
		ws.Close()
		if f.stopped.Load() || !f.reconnect.Load() {
			return
		}
		policy := backoff.Policy{Fast: 2 * time.Minute, FastMax: 2 * time.Second, SlowMax: 30 * time.Second}
		for attempt := 0; ; attempt++ {
			time.Sleep(policy.Delay(attempt, 0))
			var err error
			if ws, err = f.dialUntilIn(i); err == nil {
				break
			}
			if f.stopped.Load() {
				return
			}
		}
	}
}

func (f *simFleet) stop() {
	f.stopped.Store(true)
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.conns {
		c.Close()
	}
}

type setupResult struct {
	done, failed int
	perSecond    float64
	p50, p99     float64
}

// setupLoad runs session setups at rate a second for window, from 64
// viewer sockets on their own addresses, to random devices.
func setupLoad(tb testing.TB, base, token string, ids []string, rate int, window time.Duration) setupResult {
	tb.Helper()
	const viewers = 64
	url := strings.Replace(base, "http://", "ws://", 1) + "/ws/viewer"
	ticks := make(chan struct{}, rate)
	ctx, cancel := context.WithTimeout(context.Background(), window)
	defer cancel()
	go func() {
		// Open loop: one setup due every 1/rate, in 10 ms batches.
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		due, start := 0, time.Now()
		for {
			select {
			case <-ctx.Done():
				close(ticks)
				return
			case <-t.C:
			}
			for want := int(time.Since(start).Seconds() * float64(rate)); due < want; due++ {
				select {
				case ticks <- struct{}{}:
				default: // the viewers are behind: that setup is not made
				}
			}
		}
	}()
	var mu sync.Mutex
	var lat []float64
	failed := 0
	var wg sync.WaitGroup
	for v := range viewers {
		d := websocket.Dialer{NetDialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 30, 0, byte(1+v))}}).DialContext}
		ws, _, err := d.Dial(url, http.Header{"Authorization": {"Bearer " + token}})
		if err != nil {
			tb.Fatalf("viewer socket: %v", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer ws.Close()
			seq := 0
			for range ticks {
				seq++
				dev := ids[(v*7919+seq*104729)%len(ids)]
				t0 := time.Now()
				if err := setupOnce(ws, dev, fmt.Sprintf("v%d-%d", v, seq)); err != nil {
					mu.Lock()
					failed++
					mu.Unlock()
					if errors.Is(err, errSocket) {
						return
					}
					continue
				}
				ms := float64(time.Since(t0).Microseconds()) / 1000
				mu.Lock()
				lat = append(lat, ms)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	sort.Float64s(lat)
	pick := func(q float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(q*float64(len(lat))))]
	}
	return setupResult{done: len(lat), failed: failed, perSecond: float64(len(lat)) / window.Seconds(), p50: pick(0.5), p99: pick(0.99)}
}

var errSocket = errors.New("viewer socket failed")

// wsSend writes one signaling message.
func wsSend(ws *websocket.Conn, m proto.Message) error {
	b, err := proto.Encode(m)
	if err != nil {
		return err
	}
	return ws.WriteMessage(websocket.TextMessage, b)
}

// wsRead reads one signaling message.
func wsRead(ws *websocket.Conn) (proto.Message, error) {
	_, b, err := ws.ReadMessage()
	if err != nil {
		return nil, err
	}
	return proto.Decode(b)
}

// setupOnce is one session: open, offer, the device's answer, bye.
func setupOnce(ws *websocket.Conn, device, ref string) error {
	// A failure of the socket itself ends the viewer (errSocket); one of
	// the session, only that setup.
	send := func(m proto.Message) error {
		if wsSend(ws, m) != nil {
			return errSocket
		}
		return nil
	}
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	read := func() ([]byte, string, error) {
		_, b, err := ws.ReadMessage()
		if err != nil {
			return nil, "", errSocket
		}
		return b, field(b, "type"), nil
	}
	refused := func(b []byte) error {
		if m, err := proto.Decode(b); err == nil {
			if e, ok := m.(*proto.Error); ok {
				return fmt.Errorf("%s %s", e.Code, e.Message)
			}
		}
		return fmt.Errorf("refused: %s", b)
	}
	if err := send(&proto.Open{Device: device, Camera: "1", Ref: ref}); err != nil {
		return err
	}
	var sid string
	for sid == "" {
		b, typ, err := read()
		if err != nil {
			return err
		}
		switch {
		case typ == typeSession && field(b, "ref") == ref:
			sid = field(b, "session")
		case typ == typeError && field(b, "ref") == ref:
			return fmt.Errorf("open: %w", refused(b))
		}
	}
	if ws.WriteMessage(websocket.TextMessage, offerTemplate().with(sid)) != nil {
		return errSocket
	}
	for {
		b, typ, err := read()
		if err != nil {
			return err
		}
		switch {
		case typ == typeAnswer && field(b, "session") == sid:
			return send(&proto.Bye{Session: sid, Reason: "bench"})
		case typ == typeError && field(b, "session") == sid:
			return fmt.Errorf("session: %w", refused(b))
		}
	}
}
