package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/peercam/peercam/internal/testutil/natstest"
	"github.com/peercam/peercam/internal/testutil/pgtest"
)

// clusterNode is one rendezvous process of a cluster.
type clusterNode struct {
	name    string
	base    string // its own URL, past the load balancer
	metrics string
	cmd     *exec.Cmd
}

// devicesOnline is how many agents the node holds, from its metrics.
func (n *clusterNode) devicesOnline(t testing.TB) float64 {
	t.Helper()
	if n.cmd.ProcessState != nil {
		return 0
	}
	resp, err := http.Get(n.metrics)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return scrape(t, n.metrics)["peercam_rendezvous_devices_online"]
}

// kill ends the node as a crash would: no shutdown, no goodbyes.
func (n *clusterNode) kill() {
	_ = n.cmd.Process.Signal(syscall.SIGKILL)
	_ = n.cmd.Wait()
}

// rvCluster is three rendezvous nodes sharing PostgreSQL, routing
// signaling through NATS, behind HAProxy.
type rvCluster struct {
	store           string
	nodes           []*clusterNode
	agents, viewers string // HAProxy's two front doors
	rvBin           string
}

// startCluster runs nodes A, B and C on one PostgreSQL database and one
// nats-server, and HAProxy with two front doors, as a deployment that
// keeps agents and people on separate names would: agents fill A first,
// then B, then C; viewers B, then C, then A ("balance first", so the test
// knows where each lands; leastconn is the usual choice).
func startCluster(t *testing.T) *rvCluster {
	t.Helper()
	haproxy, err := exec.LookPath("haproxy")
	if err != nil {
		t.Fatal("haproxy is not installed (make deps)")
	}
	c := &rvCluster{store: pgtest.Database(t), rvBin: goBuild(t, "../rendezvous")}
	nats := natstest.Start(t)
	agentsPort, viewersPort := freePort(t), freePort(t)
	c.agents, c.viewers = fmt.Sprintf("http://127.0.0.1:%d", agentsPort), fmt.Sprintf("http://127.0.0.1:%d", viewersPort)
	logs := io.Discard
	if os.Getenv("PEERCAM_TEST_LOG") != "" {
		logs = os.Stderr
	}
	// The schema once, as a deployment runs it before starting nodes.
	if out, err := exec.Command(c.rvBin, "migrate", "-store", c.store).CombinedOutput(); err != nil {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	for _, name := range []string{"A", "B", "C"} {
		n := &clusterNode{name: name}
		port, mport := freePort(t), freePort(t)
		n.base, n.metrics = fmt.Sprintf("http://127.0.0.1:%d", port), fmt.Sprintf("http://127.0.0.1:%d/metrics", mport)
		n.cmd = startProc(t, "rendezvous "+name, prefixed(logs, name), c.rvBin, "-store", c.store, "-nats", nats.URL, "-node", name,
			"-http", fmt.Sprintf("127.0.0.1:%d", port), "-stun", "off", "-public-url", c.viewers,
			"-metrics", fmt.Sprintf("127.0.0.1:%d", mport), "-trusted-proxy", "127.0.0.1/32")
		c.nodes = append(c.nodes, n)
	}
	for _, n := range c.nodes {
		waitFor(t, 15*time.Second, "node "+n.name+" up", func() bool { return healthy(n.base) })
	}
	server := func(n *clusterNode) string {
		return fmt.Sprintf("  server %s %s check inter 300ms fall 1 rise 2\n", n.name, strings.TrimPrefix(n.base, "http://"))
	}
	a, b, cc := c.nodes[0], c.nodes[1], c.nodes[2]
	cfg := fmt.Sprintf(`defaults
  mode http
  timeout connect 2s
  timeout client 60s
  timeout server 60s
  timeout tunnel 1h
  option redispatch
  retries 3
  option forwardfor

frontend agents
  bind 127.0.0.1:%d
  default_backend agent_nodes

frontend viewers
  bind 127.0.0.1:%d
  default_backend viewer_nodes

backend agent_nodes
  balance first
  option httpchk GET /healthz
%s%s%s
backend viewer_nodes
  balance first
  option httpchk GET /healthz
%s%s%s`, agentsPort, viewersPort, server(a), server(b), server(cc), server(b), server(cc), server(a))
	path := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	startProc(t, "haproxy", prefixed(logs, "haproxy"), haproxy, "-f", path, "-db")
	waitFor(t, 10*time.Second, "HAProxy up", func() bool { return healthy(c.agents) && healthy(c.viewers) })
	if out, err := exec.Command(c.rvBin, "user", "add", ownerName, "-store", c.store, "-password", ownerPass).CombinedOutput(); err != nil {
		t.Fatalf("user add: %v\n%s", err, out)
	}
	return c
}

func healthy(base string) bool {
	resp, err := http.Get(base + "/healthz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == 200
}

// prefixed writes each line of a process's output with its name first.
func prefixed(w io.Writer, name string) io.Writer {
	if w == io.Discard {
		return w
	}
	pr, pw := io.Pipe()
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := pr.Read(buf)
			for _, line := range strings.SplitAfter(string(buf[:n]), "\n") {
				if line != "" {
					fmt.Fprintf(w, "[%s] %s", name, line)
				}
			}
			if err != nil {
				return
			}
		}
	}()
	return pw
}

// Three nodes, one truth. An agent on node A; a Chromium guest and a Go
// WHEP client served by node B watch its camera. A guest share capped at
// one viewer is refused on node C while it is used on B, and revoking it
// on C ends the session on B within 2 s. Killing node A (SIGKILL) makes the
// agent re-register through HAProxy on node B within 5 s while both
// pictures keep playing peer to peer; killing node B then moves the
// page's signaling through HAProxy to node C by itself, which takes the
// session on record and still reaches the agent.
func TestCluster(t *testing.T) {
	c := startCluster(t)
	A, B, C := c.nodes[0], c.nodes[1], c.nodes[2]
	sim := startProcSim(t)
	agent, agentMetrics := startClusterAgent(t, c, sim)
	waitFor(t, 15*time.Second, "agent on node A", func() bool { return A.devicesOnline(t) == 1 })
	if B.devicesOnline(t) != 0 || C.devicesOnline(t) != 0 {
		t.Fatal("the agent is held by more than one node")
	}
	ownerB := &ownerAPI{t: t, base: B.base, token: loginAt(t, B.base)}
	ownerC := &ownerAPI{t: t, base: C.base, token: loginAt(t, C.base)}

	// Node B and C both say the device is online (it is on A).
	for _, o := range []*ownerAPI{ownerB, ownerC} {
		var devs []struct {
			ID     string `json:"id"`
			Online bool   `json:"online"`
		}
		o.call("GET", "/api/devices", nil, &devs)
		if len(devs) != 1 || devs[0].ID != agent || !devs[0].Online {
			t.Fatalf("%s's device list: %+v", o.base, devs)
		}
	}

	// An attacker who spreads guesses over the nodes gets no more than
	// against one: what one node spends, every node counts.
	t.Run("attack/sign-in-guesses-spread-over-nodes", func(t *testing.T) {
		refusedAt := 0
		for i := 1; i <= 8 && refusedAt == 0; i++ {
			n := []*clusterNode{B, C}[i%2]
			st, _ := (&binSystem{base: n.base}).loginFrom(t, ownerName, "guess", "127.0.0.77")
			if st == http.StatusTooManyRequests {
				refusedAt = i
			} else if st != http.StatusUnauthorized {
				t.Fatalf("guess %d on %s: %d", i, n.name, st)
			}
		}
		// Five per account and address, on one node; alone, each node
		// would have seen four of eight.
		if refusedAt == 0 || refusedAt > 6 {
			t.Fatalf("8 wrong passwords alternating between two nodes: refused at %d, want by the 6th", refusedAt)
		}
		if st, _ := (&binSystem{base: C.base}).loginFrom(t, ownerName, ownerPass, ""); st != http.StatusOK {
			t.Fatalf("the owner from another address after the attack: %d", st)
		}
	})
	t.Run("attack/claim-code-guesses-spread-over-nodes", func(t *testing.T) {
		refusedAt := 0
		for i := 1; i <= 14 && refusedAt == 0; i++ {
			o := []*ownerAPI{ownerB, ownerC}[i%2]
			switch st := o.call("POST", "/api/devices/claim", map[string]string{"code": fmt.Sprintf("ZZZZ-%04d", i)}, nil); st {
			case http.StatusTooManyRequests:
				refusedAt = i
			case http.StatusBadRequest, http.StatusNotFound, http.StatusForbidden:
			default:
				t.Fatalf("guess %d: %d", i, st)
			}
		}
		// Ten in a burst on one node; alone, each would have seen seven.
		if refusedAt == 0 || refusedAt > 11 {
			t.Fatalf("14 wrong claim codes alternating between two nodes: refused at %d, want by the 11th", refusedAt)
		}
	})

	// A Go WHEP client on B, with an owner token minted on C.
	tok := mintTokenAt(t, c, agent)
	whep := openWHEPViewer(t, B.base+"/whep/"+agent+"/1", tok)
	waitFor(t, 10*time.Second, "WHEP video through node B", func() bool { return whep.bytes.Load() > 50000 })

	// A WHEP session made on B is ended by a DELETE that lands on C, by
	// its own token only.
	t.Run("whep-delete-on-another-node", func(t *testing.T) {
		pc := newLoopbackPC(t)
		defer pc.Close()
		if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
		st, loc, body := whepPost(t, B.base+"/whep/"+agent+"/1", tok, pc)
		if st != http.StatusCreated || loc == "" {
			t.Fatalf("POST on B: %d %s", st, body)
		}
		del := func(token string) int {
			req, _ := http.NewRequest("DELETE", C.base+loc, nil)
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		if st := del(mintTokenAt(t, c, agent)); st != http.StatusNotFound {
			t.Fatalf("DELETE on C with another token: %d, want 404", st)
		}
		if st := del(tok); st != http.StatusOK {
			t.Fatalf("DELETE on C: %d, want 200", st)
		}
		if st := del(tok); st != http.StatusNotFound {
			t.Fatalf("second DELETE: %d, want 404", st)
		}
	})

	// A guest share capped at one viewer, used by Chromium on B.
	sh := ownerC.share(agent, []string{"1"}, time.Hour, 1)
	link := c.viewers + sh.Link[strings.Index(sh.Link, "/s/"):]
	ctx := chromium(t)
	do(t, ctx, 30*time.Second, "guest link plays through node B",
		evalJS(`location.href = '`+link+`'`),
		waitJS(`(() => { const s = window.peercam && window.peercam.sessions()[0]; return s && s.framesDecoded > 10; })()`))
	if n := scrape(t, B.metrics)["peercam_rendezvous_sessions"]; n < 2 {
		t.Fatalf("node B has %v sessions on record, want the page's and the WHEP client's", n)
	}

	// The cap holds across nodes: C refuses a second viewer of the share.
	pc := newLoopbackPC(t)
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	if st, _, body := whepPost(t, C.base+"/whep/"+agent+"/1", sh.Token, pc); st != http.StatusForbidden || !strings.Contains(body, "viewer_cap") {
		t.Fatalf("second viewer of a share capped at 1, on node C: %d %s", st, body)
	}
	pc.Close()

	// Revoked on C: the guest's session on B ends within 2 s.
	revoked := time.Now()
	if st := ownerC.call("DELETE", "/api/shares/"+sh.ID, nil, nil); st != http.StatusOK {
		t.Fatalf("revoke on C: %d", st)
	}
	do(t, ctx, 2*time.Second, "guest page on B says the share was revoked",
		waitJS(revokedShown))
	t.Logf("share revoked on C: guest on B told after %v", time.Since(revoked).Round(time.Millisecond))
	screenshot(t, ctx, "cluster-guest-revoked")

	// A new share; the page plays again, through B.
	sh2 := ownerC.share(agent, []string{"1"}, time.Hour, 0)
	link2 := c.viewers + sh2.Link[strings.Index(sh2.Link, "/s/"):]
	do(t, ctx, 30*time.Second, "second guest link plays",
		evalJS(`location.href = '`+link2+`'`),
		waitJS(`(() => { const s = window.peercam && window.peercam.sessions()[0]; return s && s.framesDecoded > 10; })()`))

	// Node A dies. The agent comes back through HAProxy on B within 5 s;
	// the pictures never stop.
	beforePage := sessionStats(t, ctx)[0].FramesDecoded
	stall := longestStall(func() int64 { return whep.bytes.Load() })
	killed := time.Now()
	A.kill()
	waitFor(t, 5*time.Second, "agent re-registered on node B", func() bool { return B.devicesOnline(t) == 1 })
	t.Logf("node A killed: agent on node B after %v", time.Since(killed).Round(time.Millisecond))
	time.Sleep(1500 * time.Millisecond)
	if d := stall(); d > time.Second {
		t.Fatalf("the WHEP client's video stopped for %v across the failover", d)
	}
	do(t, ctx, 3*time.Second, "page still decoding after node A died",
		waitJS(fmt.Sprintf(`window.peercam.sessions()[0].framesDecoded > %d + 25`, beforePage)))

	// Node B dies too: the page's signaling goes through HAProxy to C by
	// itself, C takes the session on record, and the agent follows to C.
	beforePage = sessionStats(t, ctx)[0].FramesDecoded
	B.kill()
	do(t, ctx, 15*time.Second, "page's signaling reconnected",
		waitJS(`(() => { const s = window.peercam.sessions()[0]; return s && s.signalingReconnects >= 1; })()`))
	waitFor(t, 10*time.Second, "agent on node C and the session on record there", func() bool {
		return C.devicesOnline(t) == 1 && scrape(t, C.metrics)["peercam_rendezvous_sessions"] >= 1
	})
	do(t, ctx, 3*time.Second, "page still decoding on node C",
		waitJS(fmt.Sprintf(`window.peercam.sessions()[0].framesDecoded > %d + 25`, beforePage)))
	// C can still end it: signaling reaches the agent through the new node.
	if st := ownerC.call("DELETE", "/api/shares/"+sh2.ID, nil, nil); st != http.StatusOK {
		t.Fatalf("revoke on C: %d", st)
	}
	do(t, ctx, 2*time.Second, "page on C told of the revocation",
		waitJS(revokedShown))
	waitFor(t, 2*time.Second, "the agent ended the guest's peer connection (the WHEP client's stays)", func() bool {
		return scrape(t, agentMetrics)["peercam_agent_viewers"] == 1
	})
}

// longestStall samples a growing counter every 50 ms until the returned
// func is called, which says the longest time it did not grow.
func longestStall(count func() int64) func() time.Duration {
	stop, done := make(chan struct{}), make(chan time.Duration)
	go func() {
		last, lastAt, worst := count(), time.Now(), time.Duration(0)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				done <- max(worst, time.Since(lastAt))
				return
			case <-tick.C:
			}
			if n := count(); n > last {
				worst, last, lastAt = max(worst, time.Since(lastAt)), n, time.Now()
			}
		}
	}()
	return func() time.Duration { close(stop); return <-done }
}

// startProcSim runs a one-camera firmware-sim process and returns its
// RTSP address.
func startProcSim(t *testing.T) string {
	t.Helper()
	port := freePort(t)
	startProc(t, "firmware-sim", io.Discard, goBuild(t, "../firmware-sim"), "-listen", fmt.Sprintf("127.0.0.1:%d", port), "-channels", "1")
	return fmt.Sprintf("127.0.0.1:%d", port)
}

// startClusterAgent runs an agent binary dialling the agents' front door,
// claims it for the owner and returns its ID and metrics URL.
func startClusterAgent(t *testing.T, c *rvCluster, sim string) (string, string) {
	t.Helper()
	bin := agentBinary(t, "amd64")
	dir, mport := t.TempDir(), freePort(t)
	cfg := filepath.Join(dir, "agent.yaml")
	_ = os.WriteFile(cfg, []byte(fmt.Sprintf(`rendezvous: %s
state_dir: %s
webrtc_listen: 127.0.0.1:0
metrics_listen: 127.0.0.1:%d
cameras:
  - url: rtsp://admin:admin@%s/Streaming/Channels/101
    always_on: true
`, c.agents, filepath.Join(dir, "state"), mport, sim)), 0o600)
	out, err := exec.Command(bin, "-config", cfg, "-print-id").Output()
	if err != nil {
		t.Fatalf("agent -print-id: %v", err)
	}
	id := strings.TrimSpace(string(out))
	logs := io.Discard
	if os.Getenv("PEERCAM_TEST_LOG") != "" {
		logs = os.Stderr
	}
	startProc(t, "device-agent", prefixed(logs, "agent"), bin, "-config", cfg)
	waitFor(t, 15*time.Second, "agent registered and claimed", func() bool {
		return exec.Command(c.rvBin, "device", "claim", "-store", c.store, "-user", ownerName, id).Run() == nil
	})
	return id, fmt.Sprintf("http://127.0.0.1:%d/metrics", mport)
}

func loginAt(t *testing.T, base string) string {
	t.Helper()
	s := &binSystem{base: base}
	return s.login(t, ownerName, ownerPass, "")
}

func mintTokenAt(t *testing.T, c *rvCluster, device string) string {
	t.Helper()
	out, err := exec.Command(c.rvBin, "token", "mint", "-store", c.store, "-device", device, "-camera", "1", "-ttl", "1h").Output()
	if err != nil {
		t.Fatalf("token mint: %v", err)
	}
	f := strings.Fields(string(out))
	for _, w := range f {
		if strings.Count(w, ".") == 2 {
			return w
		}
	}
	t.Fatalf("no token in %q", out)
	return ""
}
