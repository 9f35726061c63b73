package server

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/peercam/peercam/proto"
	"github.com/peercam/peercam/rendezvous/internal/store"
)

type testServer struct {
	*Server
	dir string
	// stop ends Run and waits for it to return (again: nothing).
	stop func()
}

func start(t *testing.T) *testServer { return startWith(t, nil) }

// startWith runs a server on 127.0.0.1 with owners alice and bob; change
// adjusts the config first.
func startWith(t *testing.T, change func(*Config)) *testServer {
	t.Helper()
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.STUNAddr = "127.0.0.1:0"
	cfg.Logger = slog.New(slog.DiscardHandler)
	if change != nil {
		change(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	for _, u := range []string{"alice", "bob"} {
		// Nodes of one cluster share their owners: the first adds them.
		if err := AddUser(context.Background(), cfg.StoreAt(), u, u+"-password"); err != nil && !errors.Is(err, store.ErrExists) {
			t.Fatal(err)
		}
	}
	return &testServer{s, cfg.StoreAt(), stop}
}

type client struct {
	t    *testing.T
	base string
	http *http.Client
}

func (s *testServer) client(t *testing.T) *client {
	jar, _ := cookiejar.New(nil)
	return &client{t: t, base: s.URL(), http: &http.Client{Jar: jar}}
}

func (c *client) do(method, path string, body any, csrf bool) (int, map[string]any, http.Header) {
	c.t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, c.base+path, r)
	req.Header.Set("Content-Type", "application/json")
	if csrf {
		req.Header.Set("X-PeerCam-CSRF", "1")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out, resp.Header
}

func (c *client) login(name, pw string) {
	c.t.Helper()
	if st, body, _ := c.do("POST", "/api/login", map[string]string{"name": name, "password": pw}, true); st != 200 {
		c.t.Fatalf("login %s: %d %v", name, st, body)
	}
}

func TestLoginSessionAndCSRF(t *testing.T) {
	s := start(t)
	c := s.client(t)
	if st, body, _ := c.do("POST", "/api/login", map[string]string{"name": "alice", "password": "wrong-password"}, true); st != 401 || body["error"] != "bad_credentials" {
		t.Fatalf("wrong password: %d %v", st, body)
	}
	if st, _, _ := c.do("GET", "/api/me", nil, false); st != 401 {
		t.Fatalf("/api/me before login: %d", st)
	}
	_, _, hdr := c.do("POST", "/api/login", map[string]string{"name": "alice", "password": "alice-password"}, true)
	cookie := hdr.Get("Set-Cookie")
	for _, attr := range []string{"HttpOnly", "SameSite=Lax", "Path=/"} {
		if !strings.Contains(cookie, attr) {
			t.Fatalf("cookie %q lacks %s", cookie, attr)
		}
	}
	if st, body, _ := c.do("GET", "/api/me", nil, false); st != 200 || body["name"] != "alice" {
		t.Fatalf("/api/me: %d %v", st, body)
	}
	if st, body, _ := c.do("POST", "/api/devices/claim", map[string]string{"code": "x"}, false); st != 403 || body["error"] != "csrf" {
		t.Fatalf("cookie POST without the CSRF header: %d %v", st, body)
	}
	if st, body, _ := c.do("POST", "/api/login", map[string]any{"name": "alice", "password": "x", "admin": true}, true); st != 400 {
		t.Fatalf("unknown field in the body: %d %v", st, body)
	}
}

func TestLoginRateLimit(t *testing.T) {
	s := start(t)
	c := s.client(t)
	var st int
	var hdr http.Header
	for i := 0; i < 15 && st != 429; i++ {
		st, _, hdr = c.do("POST", "/api/login", map[string]string{"name": "alice", "password": "guess"}, true)
	}
	if st != 429 || hdr.Get("Retry-After") == "" {
		t.Fatalf("after many wrong passwords: %d, Retry-After %q", st, hdr.Get("Retry-After"))
	}
}

func TestSetupLinkRequired(t *testing.T) {
	s := start(t)
	c := s.client(t)
	if st, body, _ := c.do("POST", "/api/setup", map[string]string{"token": "guess", "name": "mallory", "password": "mallory-password"}, false); st != 403 {
		t.Fatalf("setup without the printed link: %d %v", st, body)
	}
}

// device is a hand-driven agent connection.
type device struct {
	t   *testing.T
	ws  *websocket.Conn
	key ed25519.PrivateKey
	id  string
}

func dial(t *testing.T, s *testServer, path string, hdr http.Header) *websocket.Conn {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial(strings.Replace(s.URL(), "http", "ws", 1)+path, hdr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	return ws
}

func send(t *testing.T, ws *websocket.Conn, m proto.Message) {
	t.Helper()
	b, err := proto.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := ws.WriteMessage(websocket.TextMessage, b); err != nil {
		t.Fatal(err)
	}
}

func recv(t *testing.T, ws *websocket.Conn) proto.Message {
	t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, b, err := ws.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	m, err := proto.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func wantError(t *testing.T, m proto.Message, code proto.Code) {
	t.Helper()
	e, ok := m.(*proto.Error)
	if !ok || e.Code != code {
		t.Fatalf("got %#v, want error %s", m, code)
	}
	if e.Message == "" {
		t.Fatal("error without a message")
	}
}

func connectDevice(t *testing.T, s *testServer, key ed25519.PrivateKey) (*device, *proto.Challenge) {
	t.Helper()
	if key == nil {
		_, key, _ = ed25519.GenerateKey(nil)
	}
	pub := key.Public().(ed25519.PublicKey)
	d := &device{t: t, ws: dial(t, s, "/ws/device", nil), key: key, id: proto.DeviceID(pub)}
	send(t, d.ws, &proto.Hello{DeviceID: d.id, PublicKey: pub, Cameras: []proto.Camera{{ID: "1", Name: "Door"}}})
	ch, ok := recv(t, d.ws).(*proto.Challenge)
	if !ok {
		t.Fatal("no challenge")
	}
	return d, ch
}

func TestDeviceAuthAndClaim(t *testing.T) {
	s := start(t)
	d, ch := connectDevice(t, s, nil)
	sig := ed25519.Sign(d.key, proto.AuthPayload(ch.Nonce, d.id))
	send(t, d.ws, &proto.Auth{Signature: sig})
	w, ok := recv(t, d.ws).(*proto.Welcome)
	if !ok || w.Claimed || len(w.ServerKey) != ed25519.PublicKeySize {
		t.Fatalf("welcome %#v", w)
	}
	code, ok := recv(t, d.ws).(*proto.ClaimCode)
	if !ok || !strings.Contains(code.URL, "#claim=") {
		t.Fatalf("claim code %#v", code)
	}

	// A replayed signature is worthless: the next connection gets a new nonce.
	d2, _ := connectDevice(t, s, d.key)
	send(t, d2.ws, &proto.Auth{Signature: sig})
	wantError(t, recv(t, d2.ws), proto.CodeAuthFailed)

	alice := s.client(t)
	alice.login("alice", "alice-password")
	// Typed in lower case with spaces: still the code.
	typed := strings.ToLower(strings.ReplaceAll(code.Code, "-", " "))
	if st, body, _ := alice.do("POST", "/api/devices/claim", map[string]string{"code": typed, "name": "Front"}, true); st != 200 || body["id"] != d.id || body["online"] != true {
		t.Fatalf("claim: %d %v", st, body)
	}
	if c, ok := recv(t, d.ws).(*proto.Claimed); !ok || c.Owner != "alice" {
		t.Fatalf("device not told it was claimed: %#v", c)
	}
	bob := s.client(t)
	bob.login("bob", "bob-password")
	if st, body, _ := bob.do("POST", "/api/devices/claim", map[string]string{"code": code.Code}, true); st != 404 || body["error"] != "bad_claim_code" {
		t.Fatalf("reused claim code: %d %v", st, body)
	}
	if err := ClaimDevice(context.Background(), s.dir, "bob", d.id, ""); err == nil || !strings.Contains(err.Error(), "already has an owner") {
		t.Fatalf("claiming a claimed device: %v", err)
	}

	// Bob cannot open Alice's camera; the answer does not reveal it exists.
	v := dial(t, s, "/ws/viewer", http.Header{"Cookie": {cookieOf(t, bob)}})
	send(t, v, &proto.Open{Device: d.id, Camera: "1"})
	wantError(t, recv(t, v), proto.CodeNotFound)
	// Alice can; the hub assigns a session and hands out its STUN server.
	va := dial(t, s, "/ws/viewer", http.Header{"Cookie": {cookieOf(t, alice)}})
	send(t, va, &proto.Open{Device: d.id, Camera: "1"})
	sess, ok := recv(t, va).(*proto.Session)
	if !ok || len(sess.ICEServers) == 0 || !strings.HasPrefix(sess.ICEServers[0].URLs[0], "stun:127.0.0.1:") {
		t.Fatalf("session %#v", sess)
	}
	// The offer reaches the device with a token for that camera only.
	send(t, va, &proto.Offer{Session: sess.Session, SDP: "v=0"})
	off, ok := recv(t, d.ws).(*proto.Offer)
	if !ok || off.Camera != "1" || off.Token == "" || off.Trickle == nil || !*off.Trickle {
		t.Fatalf("offer at the device %#v", off)
	}
	// Device gone: the viewer is told.
	d.ws.Close()
	wantError(t, recv(t, va), proto.CodeDeviceOffline)
	send(t, va, &proto.Open{Device: d.id, Camera: "1"})
	wantError(t, recv(t, va), proto.CodeDeviceOffline)
}

func cookieOf(t *testing.T, c *client) string {
	t.Helper()
	req, _ := http.NewRequest("GET", c.base, nil)
	var parts []string
	for _, ck := range c.http.Jar.Cookies(req.URL) {
		parts = append(parts, ck.Name+"="+ck.Value)
	}
	return strings.Join(parts, "; ")
}

func TestDeviceIDMustMatchKey(t *testing.T) {
	s := start(t)
	_, key, _ := ed25519.GenerateKey(nil)
	_, other, _ := ed25519.GenerateKey(nil)
	ws := dial(t, s, "/ws/device", nil)
	send(t, ws, &proto.Hello{DeviceID: proto.DeviceID(other.Public().(ed25519.PublicKey)), PublicKey: key.Public().(ed25519.PublicKey)})
	wantError(t, recv(t, ws), proto.CodeAuthFailed)
}

func TestBadFrames(t *testing.T) {
	s := start(t)
	ws := dial(t, s, "/ws/viewer", nil)
	if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"v":1,"type":"open","device":"d","camera":1}`)); err != nil {
		t.Fatal(err)
	}
	wantError(t, recv(t, ws), proto.CodeBadMessage)
	if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"v":9,"type":"open"}`)); err != nil {
		t.Fatal(err)
	}
	wantError(t, recv(t, ws), proto.CodeUnsupportedVersion)
	// Still open after bad frames: an anonymous open is refused properly.
	send(t, ws, &proto.Open{Device: "nope", Camera: "1"})
	wantError(t, recv(t, ws), proto.CodeNotFound)
	// An oversized frame ends the connection with close code 1009.
	if err := ws.WriteMessage(websocket.TextMessage, bytes.Repeat([]byte("a"), proto.MaxMessageSize+1)); err != nil {
		t.Fatal(err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _, err := ws.ReadMessage()
	if !websocket.IsCloseError(err, websocket.CloseMessageTooBig) {
		t.Fatalf("after an oversized frame: %v, want close 1009", err)
	}
}

// A server that stops has finished with its links when Run returns: the
// device's last-seen time is written, and nothing touches the store (or
// the data directory) after.
func TestStopWaitsForLinks(t *testing.T) {
	s := start(t)
	d, ch := connectDevice(t, s, nil)
	send(t, d.ws, &proto.Auth{Signature: ed25519.Sign(d.key, proto.AuthPayload(ch.Nonce, d.id))})
	recv(t, d.ws)                       // welcome
	time.Sleep(1100 * time.Millisecond) // last-seen has whole seconds
	stopped := time.Now()
	s.stop()
	st, err := store.Open(s.dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rec, err := st.Device(context.Background(), d.id)
	if err != nil {
		t.Fatal(err)
	}
	if rec.LastSeen.Unix() < stopped.Unix() {
		t.Fatalf("last seen %v, before the stop at %v: Run returned before the link had ended", rec.LastSeen, stopped)
	}
}
