package server

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/peercam/peercam/proto"
)

// With a TURN relay configured, each session gets its own short-lived
// credentials that the relay can check with the shared secret alone, and the
// agent gets the same relay in the offer.
func TestTURNCredentialsPerSession(t *testing.T) {
	const secret = "lab-secret"
	s := startWith(t, func(c *Config) {
		c.TURNURLs = []string{"turn:203.0.113.3:3478?transport=udp"}
		c.TURNSecret = secret
		c.TURNTTL = time.Hour
	})
	d, ch := connectDevice(t, s, nil)
	send(t, d.ws, &proto.Auth{Signature: ed25519.Sign(d.key, proto.AuthPayload(ch.Nonce, d.id))})
	recv(t, d.ws) // welcome
	recv(t, d.ws) // claim code
	alice := s.client(t)
	alice.login("alice", "alice-password")
	if err := ClaimDevice(t.Context(), s.dir, "alice", d.id, ""); err != nil {
		t.Fatal(err)
	}
	turnOf := func(servers []proto.ICEServer) proto.ICEServer {
		t.Helper()
		for _, ice := range servers {
			if strings.HasPrefix(ice.URLs[0], "turn:") {
				return ice
			}
		}
		t.Fatalf("no TURN server in %#v", servers)
		return proto.ICEServer{}
	}
	check := func(ice proto.ICEServer) {
		t.Helper()
		exp, err := strconv.ParseInt(strings.SplitN(ice.Username, ":", 2)[0], 10, 64)
		if err != nil || time.Until(time.Unix(exp, 0)) > time.Hour || time.Until(time.Unix(exp, 0)) < 59*time.Minute {
			t.Fatalf("username %q: want <expiry in an hour>:label", ice.Username)
		}
		mac := hmac.New(sha1.New, []byte(secret))
		mac.Write([]byte(ice.Username))
		if ice.Credential != base64.StdEncoding.EncodeToString(mac.Sum(nil)) {
			t.Fatalf("credential %q is not the HMAC of the username", ice.Credential)
		}
	}
	v := dial(t, s, "/ws/viewer", http.Header{"Cookie": {cookieOf(t, alice)}})
	send(t, v, &proto.Open{Device: d.id, Camera: "1"})
	sess, ok := recv(t, v).(*proto.Session)
	if !ok {
		t.Fatal("no session")
	}
	check(turnOf(sess.ICEServers))
	send(t, v, &proto.Offer{Session: sess.Session, SDP: "v=0"})
	off, ok := recvSession(t, d.ws).(*proto.Offer)
	if !ok {
		t.Fatal("no offer at the device")
	}
	check(turnOf(off.ICEServers))
}

func TestTURNConfigValidation(t *testing.T) {
	c := DefaultConfig()
	c.TURNURLs = []string{"turn:relay:3478"}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "turn-secret") {
		t.Fatalf("TURN without secret: %v", err)
	}
	c.TURNSecret = "s"
	c.TURNURLs = []string{"relay:3478"}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "must start with turn:") {
		t.Fatalf("bad TURN URL: %v", err)
	}
}
