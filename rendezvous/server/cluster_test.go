package server

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"

	"github.com/peercam/peercam/internal/testutil/natstest"
	"github.com/peercam/peercam/internal/testutil/pgtest"
	"github.com/peercam/peercam/proto"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// startNodes runs n rendezvous nodes on one PostgreSQL database and one
// nats-server, with owners alice and bob.
func startNodes(t *testing.T, n int) []*testServer {
	t.Helper()
	dsn := pgtest.Database(t)
	nats := natstest.Start(t)
	var out []*testServer
	for i := range n {
		s := startWith(t, func(c *Config) {
			c.Store, c.NATS, c.Node = dsn, nats.URL, string(rune('A'+i))
		})
		s.dir = dsn
		out = append(out, s)
	}
	return out
}

// authed finishes a device's handshake.
func authed(t *testing.T, s *testServer, key ed25519.PrivateKey) *device {
	t.Helper()
	d, ch := connectDevice(t, s, key)
	send(t, d.ws, &proto.Auth{Signature: ed25519.Sign(d.key, proto.AuthPayload(ch.Nonce, d.id))})
	if _, ok := recv(t, d.ws).(*proto.Welcome); !ok {
		t.Fatal("no welcome")
	}
	return d
}

// A device connected twice, to two nodes (a stale link and its successor,
// or a copied key): the older link is dropped by its node, and a viewer on
// a third node talks to the newer one only — no mixed answers. A link that
// is older but reconnects later wins in turn.
func TestClusterDeviceConnectedTwice(t *testing.T) {
	nodes := startNodes(t, 3)
	A, B, C := nodes[0], nodes[1], nodes[2]
	_, key, _ := ed25519.GenerateKey(nil)
	first := authed(t, A, key)
	if err := ClaimDevice(context.Background(), C.dir, "alice", first.id, "Door"); err != nil {
		t.Fatal(err)
	}
	firstIn := inbox(t, first.ws)
	second := authed(t, B, key)
	secondIn := inbox(t, second.ws)

	// A drops its link: the device moved.
	deadline := time.Now().Add(3 * time.Second)
	for {
		if _, ok := <-firstIn; !ok {
			break // closed
		}
		if time.Now().After(deadline) {
			t.Fatal("node A kept the older link open")
		}
	}
	if A.Hub().OnlineHere(first.id) || !B.Hub().OnlineHere(first.id) {
		t.Fatal("the device is not held by B alone")
	}

	// A viewer on C reaches the device on B; the answer comes back.
	alice := C.client(t)
	alice.login("alice", "alice-password")
	v := dial(t, C, "/ws/viewer", http.Header{"Cookie": {cookieOf(t, alice)}})
	vin := inbox(t, v)
	send(t, v, &proto.Open{Device: first.id, Camera: "1", Ref: "r1"})
	m, _ := next(vin, 5*time.Second)
	sess, ok := m.(*proto.Session)
	if !ok {
		t.Fatalf("open on C: %#v", m)
	}
	send(t, v, &proto.Offer{Session: sess.Session, SDP: "v=0\r\n"})
	m, _ = next(secondIn, 5*time.Second)
	if off, ok := m.(*proto.Offer); !ok || off.Session != sess.Session || off.Token == "" {
		t.Fatalf("device on B got %#v, want the offer", m)
	}
	send(t, second.ws, &proto.Answer{Session: sess.Session, SDP: "v=0\r\nanswer-from-B\r\n"})
	m, _ = next(vin, 5*time.Second)
	if ans, ok := m.(*proto.Answer); !ok || ans.SDP != "v=0\r\nanswer-from-B\r\n" {
		t.Fatalf("viewer on C got %#v, want B's answer", m)
	}

	// The first device reconnects, to A again: now B's link is the stale
	// one. Messages the old B link sends for the session are dropped; the
	// session talks to the new link.
	third := authed(t, A, key)
	thirdIn := inbox(t, third.ws)
	within(t, 3*time.Second, "B dropped its link", func() bool { return !B.Hub().OnlineHere(first.id) })
	send(t, v, &proto.Candidate{Session: sess.Session, Candidate: "candidate:1 1 udp 1 127.0.0.1 9 typ host"})
	m, _ = next(thirdIn, 5*time.Second)
	if c, ok := m.(*proto.Candidate); !ok || c.Session != sess.Session {
		t.Fatalf("device's newest link got %#v, want the viewer's candidate", m)
	}
	// The viewer hears nothing from the dropped link.
	if m, _ := next(vin, 300*time.Millisecond); m != nil {
		t.Fatalf("viewer got %#v after the device moved", m)
	}

	// Offline everywhere: the viewer on C is told, and C says offline
	// within 2 s.
	third.ws.Close()
	m, _ = next(vin, 3*time.Second)
	wantError(t, m, proto.CodeDeviceOffline)
	within(t, 2*time.Second, "C says the device is offline", func() bool { return !C.Hub().Online(first.id) })
}

// within waits up to d until ok.
func within(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !ok(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting until %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Admission control: with every handshake slot taken (a reconnect storm),
// another device is told 503 with a Retry-After of 1–3 s, not queued; the
// slot is free again once the handshake in progress ends.
func TestHandshakeAdmission(t *testing.T) {
	s := startWith(t, func(c *Config) { c.MaxHandshakes = 1 })
	// Upgraded, and silent: its handshake holds the one slot.
	first := dial(t, s, "/ws/device", nil)
	url := strings.Replace(s.URL(), "http", "ws", 1) + "/ws/device"
	_, resp, err := websocket.DefaultDialer.Dial(url, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("second device during a handshake: %v %v, want 503", resp, err)
	}
	if ra, _ := strconv.Atoi(resp.Header.Get("Retry-After")); ra < 1 || ra > 3 {
		t.Fatalf("Retry-After %q, want 1–3", resp.Header.Get("Retry-After"))
	}
	first.Close()
	within(t, 3*time.Second, "the slot is free again", func() bool {
		ws, _, err := websocket.DefaultDialer.Dial(url, nil)
		if err == nil {
			ws.Close()
		}
		return err == nil
	})
}

// The device's node holds its record for opens made there; a removal made
// through another node ends what that record allowed: once the device has
// been told it is unclaimed, the former owner's open on the device's node
// is refused.
func TestClusterHeldRecordRemovedElsewhere(t *testing.T) {
	nodes := startNodes(t, 2)
	A, B := nodes[0], nodes[1]
	_, key, _ := ed25519.GenerateKey(nil)
	d := authed(t, A, key)
	if err := ClaimDevice(context.Background(), A.dir, "alice", d.id, "Door"); err != nil {
		t.Fatal(err)
	}
	recvUntil(t, d.ws, "claimed notice", func(m proto.Message) bool { _, ok := m.(*proto.Claimed); return ok })
	alice := A.client(t)
	alice.login("alice", "alice-password")
	v := dial(t, A, "/ws/viewer", http.Header{"Cookie": {cookieOf(t, alice)}})
	for range 2 { // read and held, then used
		send(t, v, &proto.Open{Device: d.id, Camera: "1"})
		sess, ok := recv(t, v).(*proto.Session)
		if !ok {
			t.Fatal("the owner could not open on the device's node")
		}
		send(t, v, &proto.Bye{Session: sess.Session})
	}
	tok, _ := loginToken(t, B, "alice")
	if st, body := bearerDo(t, B, tok, "DELETE", "/api/devices/"+d.id, nil); st != 200 {
		t.Fatalf("remove on B: %d %v", st, body)
	}
	recvUntil(t, d.ws, "unclaimed notice", func(m proto.Message) bool { _, ok := m.(*proto.Unclaimed); return ok })
	send(t, v, &proto.Open{Device: d.id, Camera: "1"})
	if m := recv(t, v); !isError(m, proto.CodeNotFound) {
		t.Fatalf("the former owner's open on A after a removal on B: %#v, want not_found", m)
	}
}

// Messages for a device whose session is pinned to another of its links,
// as a viewer's node sends them before it hears of a takeover (or while
// two nodes hold the device's subject): one pinned to an older link goes
// to the device's newest, here; one pinned to a newer link elsewhere is
// left to that node. Neither ends the viewer's session ("gone"), as both
// did when any other link's message was answered with "gone".
func TestClusterMessagePinnedToAnotherLink(t *testing.T) {
	dsn, srv := pgtest.Database(t), natstest.Start(t)
	A := startWith(t, func(c *Config) { c.Store, c.NATS, c.Node = dsn, srv.URL, "A" })
	_, key, _ := ed25519.GenerateKey(nil)
	d := authed(t, A, key)
	in := inbox(t, d.ws)

	nc, err := nats.Connect(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	gone, err := nc.SubscribeSync("peercam.node.X")
	if err != nil {
		t.Fatal(err)
	}
	within(t, 3*time.Second, "A answers for the device on NATS", func() bool {
		_, err := nc.Request("peercam.dev."+d.id, []byte(`{"op":"locate"}`), 200*time.Millisecond)
		return err == nil
	})
	pinned := func(gen string, since int64, sid string) {
		t.Helper()
		msg, err := proto.Encode(&proto.Candidate{Session: sid, Candidate: "candidate:1 1 udp 1 192.0.2.1 9 typ host"})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(map[string]any{"op": "msg", "node": "X", "device": d.id, "gen": gen, "since": since,
			"session": sid, "type": "candidate", "msg": json.RawMessage(msg)})
		if err := nc.Publish("peercam.dev."+d.id, b); err != nil {
			t.Fatal(err)
		}
	}
	candidate := func(within time.Duration) *proto.Candidate {
		deadline := time.Now().Add(within)
		for time.Now().Before(deadline) {
			m, _ := next(in, time.Until(deadline))
			if c, ok := m.(*proto.Candidate); ok {
				return c
			}
		}
		return nil
	}

	pinned("X:1", time.Now().Add(-time.Hour).UnixNano(), "older")
	if c := candidate(3 * time.Second); c == nil || c.Session != "older" {
		t.Fatalf("a message pinned to an older link: the device got %#v, want it", c)
	}
	pinned("X:2", time.Now().Add(time.Hour).UnixNano(), "newer")
	if c := candidate(500 * time.Millisecond); c != nil {
		t.Fatalf("a message pinned to a newer link elsewhere reached this older one: %#v", c)
	}
	if m, err := gone.NextMsg(200 * time.Millisecond); err == nil {
		t.Fatalf("the viewer's node was told %s", m.Data)
	}
}

// A node reads its rate-limit budgets only after it has heard what the
// other nodes spent and flushed before: a guess on B a moment after a
// failure on A counts it, even when A's announcement is queued behind
// thousands of others (a busy cluster). Otherwise an attacker alternating
// between nodes gets a guess or two more (the "refused at 7" the e2e
// attack case saw under load).
func TestClusterLimitsHeardBeforeTheNextGuess(t *testing.T) {
	nodes := startNodes(t, 2)
	A, B := nodes[0], nodes[1]
	var heard atomic.Bool
	B.Hub().OnSharedLimit(func(name, key string, forget bool) {
		if name == "pair" && key == "last" {
			heard.Store(true)
		}
	})
	for i := range 20000 {
		A.Hub().ShareLimit("flood", strconv.Itoa(i), false)
	}
	A.Hub().ShareLimit("pair", "last", false)
	A.Hub().FlushShared()
	B.Hub().HearShared()
	if !heard.Load() {
		t.Fatal("B read its budgets before it had heard what A spent and flushed")
	}
}
