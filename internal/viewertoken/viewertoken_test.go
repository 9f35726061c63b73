package viewertoken

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestParse(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	_, otherPriv, _ := ed25519.GenerateKey(nil)
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	base := Claims{Device: "dev1", Cameras: []string{"1"}, Perms: []string{PermLive}, Owner: 1, Claim: "c1"}
	base.Subject = "user:1"
	noClaim := base
	noClaim.Claim = ""
	noClaimTok, _ := Sign(priv, noClaim, now, time.Hour)
	good, err := Sign(priv, base, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, ".")

	hs256, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"aud": Audience, "dev": "dev1", "cams": []string{"1"}, "perms": []string{"live"},
		"exp": now.Add(time.Hour).Unix(), "jti": "x",
	}).SignedString([]byte(pub))
	noneTok, _ := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{
		"aud": Audience, "dev": "dev1", "exp": now.Add(time.Hour).Unix(), "jti": "x",
	}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	other, _ := Sign(otherPriv, base, now, time.Hour)
	wrongAud := base
	wrongAud.ID = "y"
	wrongAudTok, _ := jwt.NewWithClaims(jwt.SigningMethodEdDSA, Claims{
		RegisteredClaims: jwt.RegisteredClaims{Audience: jwt.ClaimStrings{"peercam-owner"}, ID: "z",
			ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour))},
		Device: "dev1", Cameras: []string{"1"}, Perms: []string{"live"},
	}).SignedString(priv)
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString(
		[]byte(strings.Replace(mustDecode(t, parts[1]), `"cams":["1"]`, `"cams":["1","2"]`, 1))) + "." + parts[2]

	tests := []struct {
		name  string
		token string
		at    time.Time
		ok    bool
	}{
		{"valid", good, now, true},
		{"alg none", noneTok, now, false},
		{"HS256 with the public key as secret", hs256, now, false},
		{"signed by another key", other, now, false},
		{"expired", good, now.Add(time.Hour + Leeway + time.Second), false},
		{"not yet valid", good, now.Add(-Leeway - time.Minute), false},
		{"wrong audience", wrongAudTok, now, false},
		{"tampered claims", tampered, now, false},
		{"garbage", "a.b.c", now, false},
		{"no claim ID (issued before claims were named)", noClaimTok, now, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(pub, tt.token, tt.at)
			if tt.ok {
				if err != nil {
					t.Fatal(err)
				}
				if c.Device != "dev1" || c.Subject != "user:1" {
					t.Fatalf("claims %+v", c)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("err %v, want ErrInvalid", err)
			}
		})
	}
}

func mustDecode(t *testing.T, s string) string {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestIssuedUnder(t *testing.T) {
	c := &Claims{Owner: 7, Claim: "c1"}
	for _, tt := range []struct {
		name  string
		owner int64
		claim string
		ok    bool
	}{
		{"current owner and claim", 7, "c1", true},
		{"device claimed again by the same owner", 7, "c2", false},
		{"another owner", 8, "c1", false},
		{"device unclaimed", 0, "", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := c.IssuedUnder(tt.owner, tt.claim)
			if tt.ok != (err == nil) || (err != nil && !errors.Is(err, ErrNotOwner)) {
				t.Fatalf("IssuedUnder(%d, %q) = %v", tt.owner, tt.claim, err)
			}
		})
	}
}

func TestAllows(t *testing.T) {
	c := &Claims{Device: "dev1", Cameras: []string{"1", "3"}, Perms: []string{PermLive}}
	tests := []struct {
		name, dev, cam, perm string
		ok                   bool
	}{
		{"covered", "dev1", "3", PermLive, true},
		{"another device", "dev2", "1", PermLive, false},
		{"another camera", "dev1", "2", PermLive, false},
		{"another permission", "dev1", "1", "ptz", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := c.Allows(tt.dev, tt.cam, tt.perm)
			if tt.ok != (err == nil) {
				t.Fatalf("err %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrScope) {
				t.Fatalf("err %v, want ErrScope", err)
			}
		})
	}
}
