package agent

import (
	"crypto/ed25519"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/peercam/peercam/internal/viewertoken"
	"github.com/peercam/peercam/proto"
)

// The agent's own token check: even if the rendezvous forwarded an offer it
// should not have, the agent refuses it.
func TestAgentChecksTokensItself(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Rendezvous = "http://127.0.0.1:1"
	cfg.StateDir = t.TempDir()
	cfg.WebRTCListen = "127.0.0.1:0"
	cfg.Cameras = []CameraConfig{{URL: "rtsp://127.0.0.1:1/a"}, {URL: "rtsp://127.0.0.1:1/b"}}
	a, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer a.udp.Close()
	pub, key, _ := ed25519.GenerateKey(nil)
	_, rogue, _ := ed25519.GenerateKey(nil)

	claim := "claim-1"
	tokUnder := func(k ed25519.PrivateKey, dev string, cams []string, at time.Time, owner int64, claim string) string {
		c := viewertoken.Claims{Device: dev, Cameras: cams, Perms: []string{viewertoken.PermLive}, Owner: owner, Claim: claim}
		s, err := viewertoken.Sign(k, c, at, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	tok := func(k ed25519.PrivateKey, dev string, cams []string, at time.Time) string {
		return tokUnder(k, dev, cams, at, 7, claim)
	}
	offer := func(token, camera string) *proto.Offer {
		return &proto.Offer{Session: "s", SDP: "v=0", Camera: camera, Token: token}
	}
	if _, err := a.checkToken(offer(tok(key, a.ID(), []string{"1"}, time.Now()), "1")); !errors.Is(err, viewertoken.ErrInvalid) {
		t.Fatalf("before a key is pinned: %v, want refusal", err)
	}
	a.onWelcome(&proto.Welcome{ServerKey: pub, Claimed: true, Owner: "alice", OwnerID: 7, Claim: claim})

	tests := []struct {
		name  string
		offer *proto.Offer
		want  error
	}{
		{"valid", offer(tok(key, a.ID(), []string{"1"}, time.Now()), "1"), nil},
		{"no token", offer("", "1"), viewertoken.ErrInvalid},
		{"signed by a rogue rendezvous", offer(tok(rogue, a.ID(), []string{"1"}, time.Now()), "1"), viewertoken.ErrInvalid},
		{"expired", offer(tok(key, a.ID(), []string{"1"}, time.Now().Add(-2*time.Hour)), "1"), viewertoken.ErrInvalid},
		{"another device", offer(tok(key, "someoneelse", []string{"1"}, time.Now()), "1"), viewertoken.ErrScope},
		{"another camera", offer(tok(key, a.ID(), []string{"1"}, time.Now()), "2"), viewertoken.ErrScope},
		{"issued under a former claim", offer(tokUnder(key, a.ID(), []string{"1"}, time.Now(), 7, "claim-0"), "1"), viewertoken.ErrNotOwner},
		{"issued by another owner", offer(tokUnder(key, a.ID(), []string{"1"}, time.Now(), 8, claim), "1"), viewertoken.ErrNotOwner},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := a.checkToken(tt.offer)
			if tt.want == nil && err != nil {
				t.Fatal(err)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("err %v, want %v", err, tt.want)
			}
		})
	}

	// Removed by its owner: no token opens anything until the next claim.
	a.handle(&proto.Unclaimed{})
	if _, err := a.checkToken(offer(tok(key, a.ID(), []string{"1"}, time.Now()), "1")); !errors.Is(err, viewertoken.ErrNotOwner) {
		t.Fatalf("valid token on an unclaimed device: %v, want ErrNotOwner", err)
	}
	a.handle(&proto.Claimed{Owner: "bob", OwnerID: 8, Claim: "claim-2"})
	if _, err := a.checkToken(offer(tok(key, a.ID(), []string{"1"}, time.Now()), "1")); !errors.Is(err, viewertoken.ErrNotOwner) {
		t.Fatalf("former owner's token after a new claim: %v, want ErrNotOwner", err)
	}
	if _, err := a.checkToken(offer(tokUnder(key, a.ID(), []string{"1"}, time.Now(), 8, "claim-2"), "1")); err != nil {
		t.Fatalf("new owner's token: %v", err)
	}

	// A rendezvous that comes back with another key is not trusted.
	_, other, _ := ed25519.GenerateKey(nil)
	a.onWelcome(&proto.Welcome{ServerKey: other.Public().(ed25519.PublicKey)})
	if _, err := a.checkToken(offer(tok(other, a.ID(), []string{"1"}, time.Now()), "1")); err == nil {
		t.Fatal("token from a different rendezvous key accepted after the pin")
	}
}

// The rendezvous's time is believed only within what can be true: never
// before the agent's build (a replayed or forged welcome cannot wind the
// clock back to make expired tokens valid again).
func TestAgentBoundsRendezvousTime(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Rendezvous = "http://127.0.0.1:1"
	cfg.StateDir = t.TempDir()
	cfg.WebRTCListen = "127.0.0.1:0"
	cfg.Cameras = []CameraConfig{{URL: "rtsp://127.0.0.1:1/a"}}
	a, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer a.udp.Close()
	pub, _, _ := ed25519.GenerateKey(nil)
	before := a.clock.Now()
	a.onWelcome(&proto.Welcome{ServerKey: pub, Time: a.clock.Floor().Add(-365 * 24 * time.Hour)})
	if got := a.clock.Now(); got.Sub(before).Abs() > time.Minute {
		t.Fatalf("a welcome a year before the build moved the clock to %s", got)
	}
	ahead := time.Now().Add(2 * time.Hour)
	a.onWelcome(&proto.Welcome{ServerKey: pub, Time: ahead})
	if got := a.clock.Now(); got.Sub(ahead).Abs() > time.Minute {
		t.Fatalf("a plausible rendezvous time was not taken: clock %s, want about %s", got, ahead)
	}
}

func TestPlausibleTime(t *testing.T) {
	floor := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	nb, na := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC), time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name   string
		t      time.Time
		nb, na time.Time
		ok     bool
	}{
		{"within the certificate, after the build", time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), nb, na, true},
		{"before the build, though within the certificate", time.Date(2026, 10, 15, 0, 0, 0, 0, time.UTC), nb, na, false},
		{"after the certificate expired", time.Date(2027, 2, 1, 0, 0, 0, 0, time.UTC), nb, na, false},
		{"before a certificate issued after the build", time.Date(2026, 11, 10, 0, 0, 0, 0, time.UTC), time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC), na, false},
		{"plain http: only the build bounds it", time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC), time.Time{}, time.Time{}, true},
		{"plain http, before the build", time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), time.Time{}, time.Time{}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if ok, window := plausibleTime(tt.t, floor, tt.nb, tt.na); ok != tt.ok {
				t.Fatalf("plausibleTime(%s) = %v (plausible %s), want %v", tt.t, ok, window, tt.ok)
			}
		})
	}
}
