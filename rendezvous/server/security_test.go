package server

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"

	"github.com/peercam/peercam/internal/viewertoken"
	"github.com/peercam/peercam/proto"
	"github.com/peercam/peercam/rendezvous/internal/api"
	"github.com/peercam/peercam/rendezvous/internal/auth"
	"github.com/peercam/peercam/rendezvous/internal/store"
)

// onlineDevice connects a hand-driven device with cameras 1 and 2, claimed by
// alice.
func onlineDevice(t *testing.T, s *testServer) *device {
	t.Helper()
	d, ch := connectDevice(t, s, nil)
	send(t, d.ws, &proto.Auth{Signature: ed25519.Sign(d.key, proto.AuthPayload(ch.Nonce, d.id))})
	if m := recv(t, d.ws); !isWelcome(m) {
		t.Fatalf("got %#v, want a welcome", m)
	}
	if err := ClaimDevice(context.Background(), s.dir, "alice", d.id, ""); err != nil {
		t.Fatal(err)
	}
	return d
}

func isWelcome(m proto.Message) bool { _, ok := m.(*proto.Welcome); return ok }

// The security suite: every case is refused with its documented wire code.
func TestSecuritySuite(t *testing.T) {
	s := start(t)
	d := onlineDevice(t, s)
	// A second device of alice's, for "token for another device".
	d2 := onlineDevice(t, s)
	ctx := context.Background()
	st, err := store.Open(s.dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	key, err := auth.LoadKey(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	pub := key.Public().(ed25519.PublicKey)
	_, otherKey, _ := ed25519.GenerateKey(nil)
	alice, _ := st.UserByName(ctx, "alice")
	now := time.Now()

	rec, err := st.Device(ctx, d.id)
	if err != nil {
		t.Fatal(err)
	}
	claims := func() viewertoken.Claims {
		c := viewertoken.Claims{Device: d.id, Cameras: []string{"1"}, Perms: []string{viewertoken.PermLive}, Owner: rec.OwnerID, Claim: rec.ClaimID}
		c.Subject = "user:1"
		return c
	}
	sign := func(k ed25519.PrivateKey, c viewertoken.Claims, at time.Time, ttl time.Duration) string {
		tok, err := viewertoken.Sign(k, c, at, ttl)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	minted, err := api.MintViewerToken(ctx, st, key, rec, []string{"1"}, time.Hour, "test")
	if err != nil {
		t.Fatal(err)
	}
	good := minted.Token
	// Well signed and in scope, but never recorded: not issued by the API.
	unrecorded := sign(key, claims(), now, time.Hour)
	mapClaims := jwt.MapClaims{"aud": viewertoken.Audience, "dev": d.id, "cams": []string{"1"}, "perms": []string{"live"},
		"exp": now.Add(time.Hour).Unix(), "jti": "x"}
	algNone, _ := jwt.NewWithClaims(jwt.SigningMethodNone, mapClaims).SignedString(jwt.UnsafeAllowNoneSignatureType)
	hs256, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, mapClaims).SignedString([]byte(pub))
	ownerSession, _ := auth.SignSession(key, alice, now)
	parts := strings.Split(good, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(payload), `"cams":["1"]`, `"cams":["1","2"]`, 1))) + "." + parts[2]
	otherDev := claims()
	otherDev.Device = d2.id
	revoked, err := api.CreateShare(ctx, st, key, s.URL(), alice.ID, api.ShareRequest{Device: d.id, Cameras: []string{"1"}, TTLSeconds: 3600}, now)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.RevokeShare(ctx, revoked.ID, alice.ID); err != nil {
		t.Fatal(err)
	}
	capped, err := api.CreateShare(ctx, st, key, s.URL(), alice.ID, api.ShareRequest{Device: d.id, Cameras: []string{"1"}, TTLSeconds: 3600}, now)
	if err != nil {
		t.Fatal(err)
	}
	// The one viewer the capped share allows.
	first := dial(t, s, "/ws/viewer", nil)
	send(t, first, &proto.Open{Device: d.id, Camera: "1", Token: capped.Token})
	firstSession, ok := recv(t, first).(*proto.Session)
	if !ok {
		t.Fatal("first viewer of the capped share refused")
	}

	tests := []struct {
		name, token, device, camera string
		code                        proto.Code
	}{
		{"valid token opens", good, d.id, "1", ""},
		{"alg none", algNone, d.id, "1", proto.CodeUnauthorized},
		{"HS256 signed with the public key as secret", hs256, d.id, "1", proto.CodeUnauthorized},
		{"signed by another key", sign(otherKey, claims(), now, time.Hour), d.id, "1", proto.CodeUnauthorized},
		{"expired", sign(key, claims(), now.Add(-2*time.Hour), time.Hour), d.id, "1", proto.CodeUnauthorized},
		{"not yet valid", sign(key, claims(), now.Add(time.Hour), time.Hour), d.id, "1", proto.CodeUnauthorized},
		{"wrong audience (owner session token)", ownerSession, d.id, "1", proto.CodeUnauthorized},
		{"tampered claims", tampered, d.id, "1", proto.CodeUnauthorized},
		{"revoked token id", revoked.Token, d.id, "1", proto.CodeRevoked},
		{"token for another device", sign(key, otherDev, now, time.Hour), d.id, "1", proto.CodeForbidden},
		{"token for another camera of the same device", good, d.id, "2", proto.CodeForbidden},
		{"viewer cap exceeded (API shares default to 1 viewer)", capped.Token, d.id, "1", proto.CodeViewerCap},
		{"well signed but not on record", unrecorded, d.id, "1", proto.CodeUnauthorized},
		{"share token for another device", capped.Token, d2.id, "1", proto.CodeForbidden},
		{"share token for a device ID that does not exist", capped.Token, "nosuchdevice", "1", proto.CodeForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ws := dial(t, s, "/ws/viewer", nil)
			send(t, ws, &proto.Open{Device: tt.device, Camera: tt.camera, Token: tt.token})
			m := recv(t, ws)
			if tt.code == "" {
				if _, ok := m.(*proto.Session); !ok {
					t.Fatalf("got %#v, want a session", m)
				}
				return
			}
			wantError(t, m, tt.code)
		})
	}

	// After a network change a viewer moves its session to a new socket;
	// only the same share may, and it is not a second viewer.
	t.Run("resume by another viewer", func(t *testing.T) {
		ws := dial(t, s, "/ws/viewer", nil)
		send(t, ws, &proto.Open{Device: d.id, Camera: "1", Token: good, Resume: firstSession.Session})
		wantError(t, recv(t, ws), proto.CodeNotFound)
	})
	t.Run("resume by the same share within its viewer cap", func(t *testing.T) {
		ws := dial(t, s, "/ws/viewer", nil)
		send(t, ws, &proto.Open{Device: d.id, Camera: "1", Token: capped.Token, Resume: firstSession.Session})
		m, ok := recv(t, ws).(*proto.Session)
		if !ok || m.Session != firstSession.Session {
			t.Fatalf("got %#v, want session %s", m, firstSession.Session)
		}
	})

	t.Run("guest token on the owner API", func(t *testing.T) {
		req, _ := http.NewRequest("GET", s.URL()+"/api/devices", nil)
		req.Header.Set("Authorization", "Bearer "+good)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("status %d, want 401", resp.StatusCode)
		}
	})

	t.Run("claim code guessed: rate limit", func(t *testing.T) {
		bob := s.client(t)
		bob.login("bob", "bob-password")
		var st int
		var hdr http.Header
		var body map[string]any
		for i := 0; i < 20 && st != http.StatusTooManyRequests; i++ {
			st, body, hdr = bob.do("POST", "/api/devices/claim", map[string]string{"code": "AAAA-BBBB-CCCC"}, true)
			if st != http.StatusTooManyRequests && body["error"] != "bad_claim_code" {
				t.Fatalf("guess %d: %d %v", i, st, body)
			}
		}
		if st != http.StatusTooManyRequests || hdr.Get("Retry-After") == "" {
			t.Fatalf("after 20 guesses: %d, Retry-After %q", st, hdr.Get("Retry-After"))
		}
	})
}

// Revoking a share, even from the CLI while the server runs, ends its live
// sessions: the device gets a bye, the viewer the reason, within 2 s.
func TestRevokeFromCLIEndsLiveSession(t *testing.T) {
	s := start(t)
	d := onlineDevice(t, s)
	sh, v, sess := watchShare(t, s, d)
	start := time.Now()
	if err := RevokeShare(context.Background(), s.dir, "alice", sh.ID); err != nil {
		t.Fatal(err)
	}
	bye, ok := recvSession(t, d.ws).(*proto.Bye)
	if !ok || bye.Session != sess.Session || bye.Reason != string(proto.CodeRevoked) {
		t.Fatalf("device got %#v, want a bye for the revoked session", bye)
	}
	wantError(t, recv(t, v), proto.CodeRevoked)
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("revocation took %v, want under 2 s", el)
	}
}

// An expired share ends live sessions at its expiry.
func TestShareExpiryEndsLiveSession(t *testing.T) {
	s := start(t)
	d := onlineDevice(t, s)
	sh, err := CreateShare(context.Background(), s.dir, s.URL(), "alice", api.ShareRequest{Device: d.id, Cameras: []string{"1"}, TTLSeconds: 2})
	if err != nil {
		t.Fatal(err)
	}
	v := dial(t, s, "/ws/viewer", nil)
	send(t, v, &proto.Open{Device: d.id, Camera: "1", Token: sh.Token})
	if _, ok := recv(t, v).(*proto.Session); !ok {
		t.Fatal("no session")
	}
	if bye, ok := recvSession(t, d.ws).(*proto.Bye); !ok || bye.Reason != string(proto.CodeExpired) {
		t.Fatalf("device got %#v, want a bye at expiry", bye)
	}
	wantError(t, recv(t, v), proto.CodeExpired)
	if late := time.Since(sh.Expires); late > 2*time.Second {
		t.Fatalf("session ended %v after expiry, want under 2 s", late)
	}
}

// recvSession reads the next session message on a device socket, skipping
// the claim notices an unclaimed-then-claimed device also gets.
func recvSession(t *testing.T, ws *websocket.Conn) proto.Message {
	t.Helper()
	for {
		switch m := recv(t, ws).(type) {
		case *proto.ClaimCode, *proto.Claimed, *proto.Unclaimed:
			continue
		default:
			return m
		}
	}
}

func TestTokenGuessingRateLimited(t *testing.T) {
	s := start(t)
	d := onlineDevice(t, s)
	ws := dial(t, s, "/ws/viewer", nil)
	var last proto.Message
	for i := 0; i < 15; i++ {
		send(t, ws, &proto.Open{Device: d.id, Camera: "1", Token: "guess.number." + strings.Repeat("x", i+1)})
		last = recv(t, ws)
		if e, ok := last.(*proto.Error); ok && e.Code == proto.CodeRateLimited {
			return
		}
		wantError(t, last, proto.CodeUnauthorized)
	}
	t.Fatalf("15 bad tokens from one address, last answer %#v: want rate_limited", last)
}

func TestDeviceHandshakeRateLimited(t *testing.T) {
	s := start(t)
	url := strings.Replace(s.URL(), "http", "ws", 1) + "/ws/device"
	for i := 0; i < 20; i++ {
		ws, resp, err := websocket.DefaultDialer.Dial(url, nil)
		if err != nil {
			if resp == nil || resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
				t.Fatalf("dial %d: %v", i, err)
			}
			return
		}
		ws.Close()
	}
	t.Fatal("20 device handshakes in a row from one address were all accepted")
}

func TestViewerSocketRefusesForeignOrigin(t *testing.T) {
	s := start(t)
	url := strings.Replace(s.URL(), "http", "ws", 1) + "/ws/viewer"
	_, resp, err := websocket.DefaultDialer.Dial(url, http.Header{"Origin": {"https://evil.example"}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("foreign Origin: err %v, status %v; want 403", err, resp)
	}
	ws, _, err := websocket.DefaultDialer.Dial(url, http.Header{"Origin": {s.URL()}})
	if err != nil {
		t.Fatalf("own Origin refused: %v", err)
	}
	ws.Close()
}

// watchShare opens a session on camera 1 of d with a new share of alice's.
func watchShare(t *testing.T, s *testServer, d *device) (api.NewShare, *websocket.Conn, *proto.Session) {
	t.Helper()
	sh, err := CreateShare(context.Background(), s.dir, s.URL(), "alice", api.ShareRequest{Device: d.id, Cameras: []string{"1"}, TTLSeconds: 3600})
	if err != nil {
		t.Fatal(err)
	}
	v := dial(t, s, "/ws/viewer", nil)
	send(t, v, &proto.Open{Device: d.id, Camera: "1", Token: sh.Token})
	sess, ok := recv(t, v).(*proto.Session)
	if !ok {
		t.Fatal("no session")
	}
	return sh, v, sess
}
