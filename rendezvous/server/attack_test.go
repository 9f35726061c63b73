package server

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/peercam/peercam/proto"
	"github.com/peercam/peercam/rendezvous/internal/api"
	"github.com/peercam/peercam/rendezvous/internal/store"
)

// The attacks an outside review found, each a named case that must fail.
// The cases against the real binaries (agent included) are in
// e2e/attack_test.go.

// recvUntil reads device or viewer messages until want accepts one.
func recvUntil(t *testing.T, ws *websocket.Conn, what string, want func(proto.Message) bool) proto.Message {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if m := recv(t, ws); want(m) {
			return m
		}
	}
	t.Fatalf("no %s within 5 s", what)
	return nil
}

// clientFrom is an HTTP client whose connections come from ip (any
// 127.0.0.0/8 address works on Linux loopback), to play many sources.
func (s *testServer) clientFrom(t *testing.T, ip string) *client {
	jar, _ := cookiejar.New(nil)
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &client{t: t, base: s.URL(), http: &http.Client{Jar: jar, Transport: &http.Transport{DialContext: d.DialContext}}}
}

// raw sends a request with the given body and headers, as a forged form
// or a script would.
func raw(t *testing.T, c *http.Client, method, url, contentType, body string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

func loginToken(t *testing.T, s *testServer, name string) (string, *client) {
	t.Helper()
	c := s.client(t)
	st, body, _ := c.do("POST", "/api/login", map[string]string{"name": name, "password": name + "-password"}, true)
	if st != 200 {
		t.Fatalf("login %s: %d %v", name, st, body)
	}
	return body["token"].(string), c
}

func bearerDo(t *testing.T, s *testServer, token, method, path string, body any) (int, map[string]any) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, s.URL()+path, r)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// Removing a device revokes every share and minted token issued for it and
// ends their live sessions at once; after a new owner claims it, the old
// links open nothing.
func TestAttackOldOwnerLinksAfterRemoval(t *testing.T) {
	s := start(t)
	d := onlineDevice(t, s)
	aliceTok, _ := loginToken(t, s, "alice")
	st, share := bearerDo(t, s, aliceTok, "POST", "/api/shares", map[string]any{"device": d.id, "cameras": []string{"1"}, "ttl_seconds": 30 * 86400})
	if st != 201 {
		t.Fatalf("share: %d %v", st, share)
	}
	st, minted := bearerDo(t, s, aliceTok, "POST", "/api/devices/"+d.id+"/tokens", map[string]any{"cameras": []string{"1"}, "ttl_seconds": 30 * 86400})
	if st != 200 {
		t.Fatalf("mint: %d %v", st, minted)
	}
	if st, list := bearerDo(t, s, aliceTok, "GET", "/api/tokens", nil); st != 200 {
		t.Fatalf("token list: %d %v", st, list)
	}
	v := dial(t, s, "/ws/viewer", nil)
	send(t, v, &proto.Open{Device: d.id, Camera: "1", Token: share["token"].(string)})
	sess, ok := recv(t, v).(*proto.Session)
	if !ok {
		t.Fatal("share did not open before the removal")
	}

	start := time.Now()
	if st, body := bearerDo(t, s, aliceTok, "DELETE", "/api/devices/"+d.id, nil); st != 200 || body["revoked"] != float64(2) {
		t.Fatalf("remove: %d %v, want 2 revoked", st, body)
	}
	bye := recvUntil(t, d.ws, "bye for the share's session", func(m proto.Message) bool { b, ok := m.(*proto.Bye); return ok && b.Session == sess.Session })
	if bye.(*proto.Bye).Reason != string(proto.CodeRevoked) {
		t.Fatalf("device bye %#v, want reason revoked", bye)
	}
	wantError(t, recv(t, v), proto.CodeRevoked)
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("live session ended %v after the removal, want under 2 s", el)
	}
	recvUntil(t, d.ws, "unclaimed notice", func(m proto.Message) bool { _, ok := m.(*proto.Unclaimed); return ok })
	code := recvUntil(t, d.ws, "a new claim code", func(m proto.Message) bool { _, ok := m.(*proto.ClaimCode); return ok }).(*proto.ClaimCode)

	// Unclaimed: nothing opens, not even the former owner's login.
	for name, tok := range map[string]string{"share": share["token"].(string), "minted token": minted["token"].(string)} {
		ws := dial(t, s, "/ws/viewer", nil)
		send(t, ws, &proto.Open{Device: d.id, Camera: "1", Token: tok})
		if m := recv(t, ws); !isError(m, proto.CodeRevoked) {
			t.Fatalf("%s on the unclaimed device: %#v, want revoked", name, m)
		}
	}
	aliceWS := dial(t, s, "/ws/viewer", http.Header{"Authorization": {"Bearer " + aliceTok}})
	send(t, aliceWS, &proto.Open{Device: d.id, Camera: "1"})
	wantError(t, recv(t, aliceWS), proto.CodeNotFound)

	// Bob claims it with the fresh code: alice's links still open nothing.
	bob := s.client(t)
	bob.login("bob", "bob-password")
	if st, body, _ := bob.do("POST", "/api/devices/claim", map[string]string{"code": code.Code}, true); st != 200 {
		t.Fatalf("bob's claim: %d %v", st, body)
	}
	claimed := recvUntil(t, d.ws, "claimed notice", func(m proto.Message) bool { _, ok := m.(*proto.Claimed); return ok }).(*proto.Claimed)
	if claimed.Owner != "bob" || claimed.Claim == "" || claimed.OwnerID == 0 {
		t.Fatalf("claimed %#v", claimed)
	}
	for name, tok := range map[string]string{"old share": share["token"].(string), "old minted token": minted["token"].(string)} {
		t.Run(name, func(t *testing.T) {
			ws := dial(t, s, "/ws/viewer", nil)
			send(t, ws, &proto.Open{Device: d.id, Camera: "1", Token: tok})
			wantError(t, recv(t, ws), proto.CodeRevoked)
		})
	}
	// The old owner sees their share and token as revoked; the new owner
	// has neither in their lists.
	var shares []map[string]any
	getJSON(t, s, aliceTok, "/api/shares", &shares)
	if len(shares) != 1 || shares[0]["revoked"] == nil {
		t.Fatalf("alice's shares after removal: %v", shares)
	}
	bobTok, _ := loginToken(t, s, "bob")
	var bobShares, bobTokens []map[string]any
	getJSON(t, s, bobTok, "/api/shares", &bobShares)
	getJSON(t, s, bobTok, "/api/tokens", &bobTokens)
	if len(bobShares) != 0 || len(bobTokens) != 0 {
		t.Fatalf("bob sees alice's shares %v / tokens %v", bobShares, bobTokens)
	}
}

func ed25519Sign(d *device, ch *proto.Challenge) []byte {
	return ed25519.Sign(d.key, proto.AuthPayload(ch.Nonce, d.id))
}

func getJSON(t *testing.T, s *testServer, token, path string, out any) {
	t.Helper()
	req, _ := http.NewRequest("GET", s.URL()+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d", path, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatal(err)
	}
}

// Minted tokens are recorded, listed and revocable; revoking one ends its
// live sessions.
func TestAttackMintedTokenRevocable(t *testing.T) {
	s := start(t)
	d := onlineDevice(t, s)
	tok, _ := loginToken(t, s, "alice")
	_, minted := bearerDo(t, s, tok, "POST", "/api/devices/"+d.id+"/tokens", map[string]any{"cameras": []string{"1"}, "ttl_seconds": 3600})
	var list []map[string]any
	getJSON(t, s, tok, "/api/tokens", &list)
	if len(list) != 1 || list[0]["id"] != minted["id"] || list[0]["minted_by"] != "API" || list[0]["active"] != true {
		t.Fatalf("token list %v", list)
	}
	v := dial(t, s, "/ws/viewer", nil)
	send(t, v, &proto.Open{Device: d.id, Camera: "1", Token: minted["token"].(string)})
	if _, ok := recv(t, v).(*proto.Session); !ok {
		t.Fatal("minted token did not open")
	}
	if st, body := bearerDo(t, s, tok, "DELETE", "/api/tokens/"+minted["id"].(string), nil); st != 200 || body["sessions_ended"] != float64(1) {
		t.Fatalf("revoke: %d %v", st, body)
	}
	wantError(t, recv(t, v), proto.CodeRevoked)
	ws := dial(t, s, "/ws/viewer", nil)
	send(t, ws, &proto.Open{Device: d.id, Camera: "1", Token: minted["token"].(string)})
	wantError(t, recv(t, ws), proto.CodeRevoked)
	// The CLI sees and revokes them too.
	var out bytes.Buffer
	if err := ListTokens(context.Background(), s.dir, "alice", &out); err != nil || !strings.Contains(out.String(), minted["id"].(string)) || !strings.Contains(out.String(), "revoked") {
		t.Fatalf("token list CLI: %v\n%s", err, out.String())
	}
}

// A device nobody owns opens no session, for any credential.
func TestAttackSessionOnUnclaimedDevice(t *testing.T) {
	s := start(t)
	d, ch := connectDevice(t, s, nil)
	send(t, d.ws, &proto.Auth{Signature: ed25519Sign(d, ch)})
	recv(t, d.ws) // welcome
	c := s.client(t)
	c.login("alice", "alice-password")
	v := dial(t, s, "/ws/viewer", http.Header{"Cookie": {cookieOf(t, c)}})
	send(t, v, &proto.Open{Device: d.id, Camera: "1"})
	wantError(t, recvUntil(t, v, "an error", func(m proto.Message) bool { _, ok := m.(*proto.Error); return ok }), proto.CodeNotFound)
	if _, err := MintToken(context.Background(), s.dir, d.id, []string{"1"}, time.Hour); err == nil {
		t.Fatal("minted a token for an unclaimed device")
	}
}

// A cross-site form (text/plain body that parses as JSON, no custom header)
// cannot sign a victim in, out, or up.
func TestAttackLoginCSRF(t *testing.T) {
	s := start(t)
	form := `{"name":"alice","password":"alice-password"}`
	for _, tt := range []struct {
		name, path, ct, body string
		hdr                  map[string]string
		want                 int
	}{
		{"login from a text/plain form", "/api/login", "text/plain", form, map[string]string{"Origin": "https://evil.example"}, 403},
		{"login with the CSRF header but a text/plain body", "/api/login", "text/plain", form, map[string]string{"X-PeerCam-CSRF": "1"}, 415},
		{"login with JSON but no CSRF header or Origin", "/api/login", "application/json", form, nil, 403},
		{"login with a foreign Origin", "/api/login", "application/json", form, map[string]string{"Origin": "https://evil.example"}, 403},
		{"logout from a form", "/api/logout", "text/plain", "", map[string]string{"Origin": "https://evil.example"}, 403},
		{"setup from a form", "/api/setup", "text/plain", `{"name":"m","password":"mallory-pw","token":"x"}`, map[string]string{"Origin": "https://evil.example"}, 403},
		{"login with this site's Origin", "/api/login", "application/json", form, map[string]string{"Origin": s.URL()}, 200},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := raw(t, http.DefaultClient, "POST", s.URL()+tt.path, tt.ct, tt.body, tt.hdr)
			if resp.StatusCode != tt.want {
				t.Fatalf("%d %s, want %d", resp.StatusCode, body, tt.want)
			}
			if tt.want != 200 && resp.Header.Get("Set-Cookie") != "" {
				t.Fatalf("refused, yet set a cookie: %s", resp.Header.Get("Set-Cookie"))
			}
		})
	}
	// Every JSON endpoint wants application/json, cookie or not.
	tok, _ := loginToken(t, s, "alice")
	resp, body := raw(t, http.DefaultClient, "POST", s.URL()+"/api/shares", "text/plain", `{"device":"x","cameras":["1"],"ttl_seconds":60}`,
		map[string]string{"Authorization": "Bearer " + tok})
	if resp.StatusCode != 415 || !strings.Contains(body, "unsupported_media_type") {
		t.Fatalf("text/plain share: %d %s", resp.StatusCode, body)
	}
}

// Signing out ends the session on the server: the token is dead as a
// bearer and as a cookie, and "sign out everywhere" and a password change
// end every session.
func TestAttackSessionsEnd(t *testing.T) {
	s := start(t)
	t.Run("logout ends the token as bearer and cookie", func(t *testing.T) {
		tok, c := loginToken(t, s, "alice")
		cookie := cookieOf(t, c)
		if st, _, _ := c.do("POST", "/api/logout", nil, true); st != 200 {
			t.Fatalf("logout: %d", st)
		}
		if st, _ := bearerDo(t, s, tok, "GET", "/api/me", nil); st != 401 {
			t.Fatalf("bearer after logout: %d, want 401", st)
		}
		resp, _ := raw(t, http.DefaultClient, "GET", s.URL()+"/api/me", "", "", map[string]string{"Cookie": cookie})
		if resp.StatusCode != 401 {
			t.Fatalf("cookie after logout: %d, want 401", resp.StatusCode)
		}
	})
	t.Run("sign out everywhere", func(t *testing.T) {
		phone, _ := loginToken(t, s, "alice")
		laptop, _ := loginToken(t, s, "alice")
		other, _ := loginToken(t, s, "bob")
		if st, body := bearerDo(t, s, laptop, "POST", "/api/logout-all", nil); st != 200 || body["sessions_ended"].(float64) < 2 {
			t.Fatalf("logout-all: %d %v", st, body)
		}
		for name, tok := range map[string]string{"phone": phone, "laptop": laptop} {
			if st, _ := bearerDo(t, s, tok, "GET", "/api/me", nil); st != 401 {
				t.Fatalf("%s after logout-all: %d", name, st)
			}
		}
		if st, _ := bearerDo(t, s, other, "GET", "/api/me", nil); st != 200 {
			t.Fatalf("another user's session ended too: %d", st)
		}
	})
	t.Run("password change ends every session", func(t *testing.T) {
		tok, _ := loginToken(t, s, "bob")
		if n, err := SetPassword(context.Background(), s.dir, "bob", "bob-new-password"); err != nil || n < 1 {
			t.Fatalf("passwd: %d %v", n, err)
		}
		if st, _ := bearerDo(t, s, tok, "GET", "/api/me", nil); st != 401 {
			t.Fatalf("old session after a password change: %d", st)
		}
		c := s.client(t)
		c.login("bob", "bob-new-password")
	})
	t.Run("a signed-out cookie opens no viewer session", func(t *testing.T) {
		d := onlineDevice(t, s)
		c := s.client(t)
		c.login("alice", "alice-password")
		cookie := cookieOf(t, c)
		v := dial(t, s, "/ws/viewer", http.Header{"Cookie": {cookie}})
		send(t, v, &proto.Open{Device: d.id, Camera: "1"})
		if _, ok := recv(t, v).(*proto.Session); !ok {
			t.Fatal("owner could not open")
		}
		c.do("POST", "/api/logout", nil, true)
		wantError(t, recv(t, v), proto.CodeUnauthorized) // the live session ends with the sign-in
		send(t, v, &proto.Open{Device: d.id, Camera: "1"})
		wantError(t, recv(t, v), proto.CodeUnauthorized)
	})
}

// Many wrong passwords from many addresses do not lock the owner out:
// failures are charged per (account, address); an address that has not
// failed still signs in; guessing from one address stays bounded.
func TestAttackOwnerLockout(t *testing.T) {
	s := start(t)
	for i := 2; i <= 12; i++ {
		c := s.clientFrom(t, fmt.Sprintf("127.0.0.%d", i))
		if st, body, _ := c.do("POST", "/api/login", map[string]string{"name": "alice", "password": "guess"}, true); st != 401 {
			t.Fatalf("guess from 127.0.0.%d: %d %v", i, st, body)
		}
	}
	owner := s.clientFrom(t, "127.0.0.13")
	if st, body, _ := owner.do("POST", "/api/login", map[string]string{"name": "alice", "password": "alice-password"}, true); st != 200 {
		t.Fatalf("owner's correct password after 11 guesses from 11 addresses: %d %v", st, body)
	}
	guesser := s.clientFrom(t, "127.0.0.14")
	var st int
	var hdr http.Header
	for i := 0; i < 10 && st != 429; i++ {
		st, _, hdr = guesser.do("POST", "/api/login", map[string]string{"name": "alice", "password": "guess"}, true)
	}
	if st != 429 || hdr.Get("Retry-After") == "" {
		t.Fatalf("10 guesses from one address: last %d, Retry-After %q; want 429", st, hdr.Get("Retry-After"))
	}
	// Still: the owner from a clean address.
	if st, body, _ := s.clientFrom(t, "127.0.0.15").do("POST", "/api/login", map[string]string{"name": "alice", "password": "alice-password"}, true); st != 200 {
		t.Fatalf("owner after a guesser hit the limit: %d %v", st, body)
	}
}

// Behind a reverse proxy, limits apply to the client it names; the header
// from anyone else is ignored.
func TestAttackTrustedProxy(t *testing.T) {
	s := startWith(t, func(c *Config) { c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")} })
	proxy := s.client(t)
	guess := func(c *client, xff string) int {
		req, _ := http.NewRequest("POST", s.URL()+"/api/login", strings.NewReader(`{"name":"alice","password":"guess"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-PeerCam-CSRF", "1")
		req.Header.Set("X-Forwarded-For", xff)
		resp, err := c.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// Through the proxy, one client guessing is limited...
	var st int
	for i := 0; i < 10 && st != 429; i++ {
		st = guess(proxy, "198.51.100.7")
	}
	if st != 429 {
		t.Fatalf("one client behind the proxy guessed 10 times: %d", st)
	}
	// ...and another client behind the same proxy is not.
	ok := s.client(t)
	req, _ := http.NewRequest("POST", s.URL()+"/api/login", strings.NewReader(`{"name":"alice","password":"alice-password"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-PeerCam-CSRF", "1")
	req.Header.Set("X-Forwarded-For", "198.51.100.8")
	resp, err := ok.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("another client behind the proxy: %d", resp.StatusCode)
	}
	// An untrusted source cannot pick its address with the header.
	direct := s.clientFrom(t, "127.0.0.2")
	for i := 0; i < 10 && st != 429; i++ {
		st = guess(direct, fmt.Sprintf("203.0.113.%d", i))
	}
	st = 0
	for i := 0; i < 12 && st != 429; i++ {
		st = guess(direct, fmt.Sprintf("203.0.113.%d", 100+i))
	}
	if st != 429 {
		t.Fatal("an untrusted source rotated X-Forwarded-For to escape the limit")
	}
}

// Once an owner exists, setup links create nothing; adding the first owner
// deletes every setup link.
func TestAttackSetupLinkAfterOwner(t *testing.T) {
	s := start(t)
	st, err := store.Open(s.dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.PutSetupToken(context.Background(), "old-link", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	c := s.client(t)
	code, body, _ := c.do("POST", "/api/setup", map[string]string{"token": "old-link", "name": "mallory", "password": "mallory-password"}, true)
	if code != 403 || body["error"] != "setup_done" {
		t.Fatalf("setup after an owner exists: %d %v", code, body)
	}
	if _, err := st.UserByName(context.Background(), "mallory"); err == nil {
		t.Fatal("mallory was created")
	}
	// A fresh server: the link printed at start dies with the first owner.
	dir := t.TempDir()
	st2, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	_ = st2.PutSetupToken(context.Background(), "first-link", time.Now().Add(time.Hour))
	if _, err := st2.AddUser(context.Background(), "owner", "hash"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := st2.SetupTokenValid(context.Background(), "first-link"); ok {
		t.Fatal("setup link still valid after the first owner was created")
	}
}

// A guest churning sessions cannot push security events out of reach:
// opens are rate-limited per token and address, sessions without an offer
// become one aggregated line, and security events are their own category,
// paged with a cursor.
func TestAttackAuditWipe(t *testing.T) {
	s := start(t)
	d := onlineDevice(t, s)
	tok, _ := loginToken(t, s, "alice")
	_, share := bearerDo(t, s, tok, "POST", "/api/shares", map[string]any{"device": d.id, "cameras": []string{"1"}, "ttl_seconds": 3600})
	ws := dial(t, s, "/ws/viewer", nil)
	limited := 0
	for i := 0; i < 150; i++ {
		send(t, ws, &proto.Open{Device: d.id, Camera: "1", Token: share["token"].(string), Ref: fmt.Sprint(i)})
		switch m := recv(t, ws).(type) {
		case *proto.Session:
			send(t, ws, &proto.Bye{Session: m.Session})
		case *proto.Error:
			if m.Code != proto.CodeRateLimited || m.Ref != fmt.Sprint(i) {
				t.Fatalf("open %d: %#v, want rate_limited with ref %d", i, m, i)
			}
			limited++
		}
	}
	if limited < 100 {
		t.Fatalf("150 opens in a burst, only %d rate-limited", limited)
	}
	s.Hub().FlushAudit()
	var sec struct {
		Events []map[string]any `json:"events"`
	}
	waitUntil(t, "aggregated line", func() bool {
		var sess struct {
			Events []map[string]any `json:"events"`
		}
		getJSON(t, s, tok, "/api/audit?category=sessions", &sess)
		for _, e := range sess.Events {
			if e["kind"] == store.AuditSessionsUnused && strings.Contains(e["detail"].(string), "without an offer") {
				return len(sess.Events) < 5
			}
		}
		return false
	})
	getJSON(t, s, tok, "/api/audit?category=security", &sec)
	kinds := map[any]bool{}
	for _, e := range sec.Events {
		kinds[e["kind"]] = true
		if e["category"] != "security" {
			t.Fatalf("security page holds %v", e)
		}
	}
	for _, k := range []string{store.AuditLoginOK, store.AuditClaim, store.AuditShareCreated} {
		if !kinds[k] {
			t.Fatalf("security log lost %s after the flood: %v", k, sec.Events)
		}
	}

	// Paging reaches every event.
	for i := 0; i < 7; i++ {
		bearerDo(t, s, tok, "POST", "/api/devices/"+d.id+"/tokens", map[string]any{"cameras": []string{"1"}, "ttl_seconds": 60})
	}
	seen, next, pages := 0, "", 0
	for {
		var page struct {
			Events []map[string]any `json:"events"`
			Next   string           `json:"next"`
		}
		q := "/api/audit?category=security&limit=3"
		if next != "" {
			q += "&before=" + next
		}
		getJSON(t, s, tok, q, &page)
		seen += len(page.Events)
		pages++
		if page.Next == "" {
			break
		}
		next = page.Next
	}
	if seen < 10 || pages < 4 {
		t.Fatalf("paged %d events in %d pages, want all (≥10)", seen, pages)
	}
}

func isError(m proto.Message, code proto.Code) bool {
	e, ok := m.(*proto.Error)
	return ok && e.Code == code
}

// waitUntil is within 5 s.
func waitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	within(t, 5*time.Second, what, ok)
}

// API shares without max_viewers get one viewer, and sessions that never
// offer give their slot back after the offer timeout.
func TestAttackSlotExhaustion(t *testing.T) {
	s := startWith(t, func(c *Config) { c.OfferTimeout = 500 * time.Millisecond })
	d := onlineDevice(t, s)
	tok, _ := loginToken(t, s, "alice")
	_, share := bearerDo(t, s, tok, "POST", "/api/shares", map[string]any{"device": d.id, "cameras": []string{"1"}, "ttl_seconds": 3600})
	var list []map[string]any
	getJSON(t, s, tok, "/api/shares", &list)
	if list[0]["max_viewers"] != float64(api.DefaultShareViewers) {
		t.Fatalf("API share without max_viewers: cap %v, want 1", list[0]["max_viewers"])
	}
	hold := dial(t, s, "/ws/viewer", nil)
	send(t, hold, &proto.Open{Device: d.id, Camera: "1", Token: share["token"].(string)})
	if _, ok := recv(t, hold).(*proto.Session); !ok {
		t.Fatal("first open refused")
	}
	second := dial(t, s, "/ws/viewer", nil)
	send(t, second, &proto.Open{Device: d.id, Camera: "1", Token: share["token"].(string)})
	wantError(t, recv(t, second), proto.CodeViewerCap)
	// The holder never offers: its session ends and the slot is free.
	wantError(t, recv(t, hold), proto.CodeTimeout)
	send(t, second, &proto.Open{Device: d.id, Camera: "1", Token: share["token"].(string)})
	if _, ok := recv(t, second).(*proto.Session); !ok {
		t.Fatal("slot not freed after the offer timeout")
	}
}

// Viewer sockets per address are capped.
func TestAttackConnectionFlood(t *testing.T) {
	s := startWith(t, func(c *Config) { c.MaxConnsPerAddr = 4 })
	url := strings.Replace(s.URL(), "http", "ws", 1)
	for _, path := range []string{"/ws/viewer", "/ws/device"} {
		t.Run(path, func(t *testing.T) {
			var conns []*websocket.Conn
			defer func() {
				for _, c := range conns {
					c.Close()
				}
			}()
			for i := 0; i < 4; i++ {
				c, _, err := websocket.DefaultDialer.Dial(url+path, nil)
				if err != nil {
					t.Fatalf("connection %d: %v", i, err)
				}
				conns = append(conns, c)
			}
			_, resp, err := websocket.DefaultDialer.Dial(url+path, nil)
			if err == nil || resp == nil || resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
				t.Fatalf("5th connection from one address: %v %v, want 429 with Retry-After", err, resp)
			}
		})
	}
}

// Devices that register and are never claimed are deleted after 24 h,
// unless connected.
func TestAttackUnclaimedDevicesExpire(t *testing.T) {
	s := start(t)
	d, ch := connectDevice(t, s, nil)
	send(t, d.ws, &proto.Auth{Signature: ed25519Sign(d, ch)})
	recv(t, d.ws)
	gone, ch2 := connectDevice(t, s, nil)
	send(t, gone.ws, &proto.Auth{Signature: ed25519Sign(gone, ch2)})
	recv(t, gone.ws)
	gone.ws.Close()
	waitUntil(t, "device offline", func() bool { return !s.Hub().Online(gone.id) })
	st, err := store.Open(s.dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	n, err := st.ExpireUnclaimed(context.Background(), time.Now().Add(time.Hour), s.Hub().Online)
	if err != nil || n != 1 {
		t.Fatalf("expired %d (%v), want 1", n, err)
	}
	if _, err := st.Device(context.Background(), gone.id); err == nil {
		t.Fatal("the disconnected unclaimed device is still there")
	}
	if _, err := st.Device(context.Background(), d.id); err != nil {
		t.Fatal("the connected unclaimed device was deleted")
	}
}

// The WHEP refusals carry the right status and a JSON body with the code.
func TestAttackWHEPStatusCodes(t *testing.T) {
	s := start(t)
	d := onlineDevice(t, s)
	tok, _ := loginToken(t, s, "alice")
	_, revoked := bearerDo(t, s, tok, "POST", "/api/shares", map[string]any{"device": d.id, "cameras": []string{"1"}, "ttl_seconds": 3600})
	bearerDo(t, s, tok, "DELETE", "/api/shares/"+revoked["id"].(string), nil)
	_, capped := bearerDo(t, s, tok, "POST", "/api/shares", map[string]any{"device": d.id, "cameras": []string{"1"}, "ttl_seconds": 3600})
	hold := dial(t, s, "/ws/viewer", nil)
	send(t, hold, &proto.Open{Device: d.id, Camera: "1", Token: capped["token"].(string)})
	recv(t, hold)
	whep := func(token string) (*http.Response, map[string]string) {
		resp, body := raw(t, http.DefaultClient, "POST", s.URL()+"/whep/"+d.id+"/1", "application/sdp", "v=0\r\n",
			map[string]string{"Authorization": "Bearer " + token})
		var out map[string]string
		if err := json.Unmarshal([]byte(body), &out); err != nil {
			t.Fatalf("status %d, body not JSON: %q", resp.StatusCode, body)
		}
		return resp, out
	}
	for _, tt := range []struct {
		name, token string
		status      int
		code        proto.Code
	}{
		{"revoked share", revoked["token"].(string), 403, proto.CodeRevoked},
		{"viewer cap reached", capped["token"].(string), 403, proto.CodeViewerCap},
		{"no valid token", "not-a-token", 401, proto.CodeUnauthorized},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := whep(tt.token)
			if resp.StatusCode != tt.status || body["error"] != string(tt.code) || body["message"] == "" {
				t.Fatalf("%d %v, want %d %s", resp.StatusCode, body, tt.status, tt.code)
			}
		})
	}
	t.Run("rate-limited token", func(t *testing.T) {
		var resp *http.Response
		var body map[string]string
		for i := 0; i < 20; i++ {
			if resp, body = whep("bad.token." + fmt.Sprint(i)); resp.StatusCode == 429 {
				break
			}
		}
		if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" || body["error"] != string(proto.CodeRateLimited) {
			t.Fatalf("after 20 bad tokens: %d %v Retry-After %q", resp.StatusCode, body, resp.Header.Get("Retry-After"))
		}
	})
}

// WHEP DELETE only works with the credentials that opened the session.
func TestAttackWHEPDeleteOtherIdentity(t *testing.T) {
	s := start(t)
	d := onlineDevice(t, s)
	tok, _ := loginToken(t, s, "alice")
	_, mine := bearerDo(t, s, tok, "POST", "/api/devices/"+d.id+"/tokens", map[string]any{"cameras": []string{"1"}, "ttl_seconds": 3600})
	_, theirs := bearerDo(t, s, tok, "POST", "/api/devices/"+d.id+"/tokens", map[string]any{"cameras": []string{"1"}, "ttl_seconds": 3600})
	var wg sync.WaitGroup
	wg.Go(func() {
		// The hand-driven device answers the WHEP offer.
		off := recvUntil(t, d.ws, "the WHEP offer", func(m proto.Message) bool { _, ok := m.(*proto.Offer); return ok }).(*proto.Offer)
		send(t, d.ws, &proto.Answer{Session: off.Session, SDP: "v=0\r\n"})
	})
	resp, _ := raw(t, http.DefaultClient, "POST", s.URL()+"/whep/"+d.id+"/1", "application/sdp", "v=0\r\n",
		map[string]string{"Authorization": "Bearer " + mine["token"].(string)})
	wg.Wait()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != 201 || loc == "" {
		t.Fatalf("WHEP POST: %d, Location %q", resp.StatusCode, loc)
	}
	for name, cred := range map[string]string{"another valid token": theirs["token"].(string), "the owner's login": tok} {
		resp, body := raw(t, http.DefaultClient, "DELETE", s.URL()+loc, "", "", map[string]string{"Authorization": "Bearer " + cred})
		if resp.StatusCode != 404 {
			t.Fatalf("DELETE with %s: %d %s, want 404", name, resp.StatusCode, body)
		}
	}
	if s.Hub().SessionCount() != 1 {
		t.Fatal("the session ended on a foreign DELETE")
	}
	resp, body := raw(t, http.DefaultClient, "DELETE", s.URL()+loc, "", "", map[string]string{"Authorization": "Bearer " + mine["token"].(string)})
	if resp.StatusCode != 200 {
		t.Fatalf("DELETE with the opening token: %d %s", resp.StatusCode, body)
	}
}

// A removal made with the admin CLI while the server runs ends the live
// sessions within 2 s too, and the device learns it has no owner.
func TestAttackRemoveFromCLIEndsSessions(t *testing.T) {
	s := start(t)
	d := onlineDevice(t, s)
	_, v, sess := watchShare(t, s, d)
	start := time.Now()
	if n, err := RemoveDevice(context.Background(), s.dir, "alice", d.id); err != nil || n != 1 {
		t.Fatalf("device remove: %d %v", n, err)
	}
	recvUntil(t, d.ws, "bye", func(m proto.Message) bool { b, ok := m.(*proto.Bye); return ok && b.Session == sess.Session })
	wantError(t, recv(t, v), proto.CodeRevoked)
	recvUntil(t, d.ws, "unclaimed notice", func(m proto.Message) bool { _, ok := m.(*proto.Unclaimed); return ok })
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("CLI removal took %v to end the session, want under 2 s", el)
	}
}

// The node holds a connected, claimed device's record for authorize (it
// reads no store row per open). A removal by the admin CLI, another
// process, must still end what the held record allows: once the node has
// seen the store change (it tells the device it is unclaimed), the former
// owner's open is refused. A node that kept the record it held would open
// it, and this case would fail.
func TestAttackHeldRecordAfterCLIRemoval(t *testing.T) {
	s := start(t)
	d := onlineDevice(t, s)
	recvUntil(t, d.ws, "claimed notice", func(m proto.Message) bool { _, ok := m.(*proto.Claimed); return ok })
	c := s.client(t)
	c.login("alice", "alice-password")
	v := dial(t, s, "/ws/viewer", http.Header{"Cookie": {cookieOf(t, c)}})
	for range 2 { // the first open reads the record and holds it, the second uses it
		send(t, v, &proto.Open{Device: d.id, Camera: "1"})
		sess, ok := recv(t, v).(*proto.Session)
		if !ok {
			t.Fatal("the owner could not open before the removal")
		}
		send(t, v, &proto.Bye{Session: sess.Session})
	}
	if _, err := RemoveDevice(context.Background(), s.dir, "alice", d.id); err != nil {
		t.Fatalf("device remove: %v", err)
	}
	recvUntil(t, d.ws, "unclaimed notice", func(m proto.Message) bool { _, ok := m.(*proto.Unclaimed); return ok })
	send(t, v, &proto.Open{Device: d.id, Camera: "1"})
	if m := recv(t, v); !isError(m, proto.CodeNotFound) {
		t.Fatalf("the former owner's open after a CLI removal: %#v, want not_found", m)
	}
}
