// Package viewertoken is the viewer token both the rendezvous and the agent
// check: a JWT (EdDSA, RFC 8037) signed by the rendezvous that names one device,
// the cameras on it and what the holder may do. It lives here, outside both
// binaries, so the two checks are one piece of code and cannot drift apart.
package viewertoken

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Audience is the "aud" of every viewer token; owner session tokens carry a
// different one, so neither can stand in for the other.
const Audience = "peercam-viewer"

// PermLive allows live view. The model leaves room for playback, talk and ptz.
const PermLive = "live"

// Leeway absorbs clock skew between the rendezvous and an agent.
const Leeway = 30 * time.Second

var (
	// ErrInvalid means the token is malformed, badly signed, expired or for
	// another audience.
	ErrInvalid = errors.New("viewer token invalid")
	// ErrScope means the token is valid but not for this device, camera or
	// permission.
	ErrScope = errors.New("viewer token does not cover this camera")
)

// Claims are a viewer token's contents.
type Claims struct {
	jwt.RegisteredClaims
	// Device is the device ID the token is for.
	Device string `json:"dev"`
	// Cameras lists camera IDs; empty means none.
	Cameras []string `json:"cams"`
	// Perms lists permissions, such as PermLive.
	Perms []string `json:"perms"`
	// MaxViewers caps concurrent sessions with this token; 0 means no cap.
	MaxViewers int `json:"max,omitempty"`
	// Owner is the user ID of the device's owner who issued the token, and
	// Claim the device's claim ID at the time. Ownership is the boundary: a
	// token is void once the device is removed or claimed again, because
	// its claim ID no longer matches the device's.
	Owner int64  `json:"own"`
	Claim string `json:"clm"`
}

// ErrNotOwner means the token was issued under another claim of the device:
// by a former owner, or before the device was removed.
var ErrNotOwner = errors.New("viewer token was issued by someone who no longer owns this device")

// IssuedUnder checks the token was issued under the device's current claim.
// An unclaimed device (claim "") accepts nothing.
func (c *Claims) IssuedUnder(owner int64, claim string) error {
	if claim == "" || owner == 0 {
		return fmt.Errorf("%w: the device has no owner now", ErrNotOwner)
	}
	if c.Claim != claim || c.Owner != owner {
		return ErrNotOwner
	}
	return nil
}

// NewID returns a random token ID.
func NewID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Sign makes a token for subject on device, valid for ttl from now.
func Sign(key ed25519.PrivateKey, c Claims, now time.Time, ttl time.Duration) (string, error) {
	c.Audience = jwt.ClaimStrings{Audience}
	c.IssuedAt = jwt.NewNumericDate(now)
	c.NotBefore = jwt.NewNumericDate(now)
	c.ExpiresAt = jwt.NewNumericDate(now.Add(ttl))
	if c.ID == "" {
		c.ID = NewID()
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c).SignedString(key)
	if err != nil {
		return "", fmt.Errorf("viewertoken: sign: %w", err)
	}
	return s, nil
}

// Parse checks a token's signature, algorithm, audience and time window.
func Parse(pub ed25519.PublicKey, token string, now time.Time) (*Claims, error) {
	var c Claims
	_, err := jwt.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return pub, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
		jwt.WithAudience(Audience),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(Leeway),
		jwt.WithTimeFunc(func() time.Time { return now }),
	)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if c.Device == "" || c.ID == "" || c.Claim == "" || c.Owner == 0 {
		return nil, fmt.Errorf("%w: dev, jti, own and clm are required", ErrInvalid)
	}
	return &c, nil
}

// Allows tells whether the claims cover perm on camera of device.
func (c *Claims) Allows(device, camera, perm string) error {
	if c.Device != device {
		return fmt.Errorf("%w: token is for another device", ErrScope)
	}
	if !slices.Contains(c.Cameras, camera) {
		return fmt.Errorf("%w: token does not include camera %s", ErrScope, camera)
	}
	if !slices.Contains(c.Perms, perm) {
		return fmt.Errorf("%w: token lacks the %s permission", ErrScope, perm)
	}
	return nil
}
