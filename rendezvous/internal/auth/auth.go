// Package auth holds the rendezvous's secrets and credentials: argon2id password
// hashes, the Ed25519 key that signs every token, owner session tokens and the
// one-time codes people type (claim codes) or follow (setup links).
package auth

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/argon2"

	"github.com/peercam/peercam/internal/viewertoken"
	"github.com/peercam/peercam/rendezvous/internal/store"
)

var (
	// ErrBadPassword means the password does not match.
	ErrBadPassword = errors.New("wrong user name or password")
	// ErrBadToken means a session token is malformed, expired or not ours.
	ErrBadToken = errors.New("invalid or expired session")
	// ErrWeakPassword means a new password is too short.
	ErrWeakPassword = errors.New("password must be at least 8 characters")
)

// OwnerAudience is the "aud" of owner session tokens.
const OwnerAudience = "peercam-owner"

// SessionTTL is how long an owner session lasts.
const SessionTTL = 12 * time.Hour

// argon2id parameters: RFC 9106 section 4's second recommended option, with
// memory lowered to 64 MiB so a small rendezvous host can take a login burst.
const (
	argonTime    = 3
	argonMemory  = 64 * 1024
	argonThreads = 2
	argonKeyLen  = 32
)

// HashPassword returns an argon2id hash in the PHC string format.
func HashPassword(pw string) (string, error) {
	if len(pw) < 8 {
		return "", ErrWeakPassword
	}
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(pw), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

// CheckPassword compares pw with a hash made by HashPassword.
func CheckPassword(hash, pw string) error {
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return fmt.Errorf("auth: unknown password hash format")
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil {
		return fmt.Errorf("auth: password hash parameters: %w", err)
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(parts[4])
	want, err2 := base64.RawStdEncoding.DecodeString(parts[5])
	if err1 != nil || err2 != nil {
		return fmt.Errorf("auth: password hash encoding")
	}
	got := argon2.IDKey([]byte(pw), salt, t, m, p, uint32(len(want)))
	if subtle.ConstantTimeCompare(got, want) != 1 {
		return ErrBadPassword
	}
	return nil
}

// LoadKey returns the token-signing key, creating it on first use.
func LoadKey(ctx context.Context, st *store.Store) (ed25519.PrivateKey, error) {
	_, fresh, err := ed25519.GenerateKey(nil)
	if err != nil {
		return nil, err
	}
	seed, err := st.PutIfAbsent(ctx, "signing_key_seed", fresh.Seed())
	if err != nil {
		return nil, err
	}
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("auth: stored signing key is corrupt")
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// OwnerClaims identify a logged-in owner.
type OwnerClaims struct {
	jwt.RegisteredClaims
	Name string `json:"name"`
}

// UserID returns the owner's user ID from the subject.
func (c *OwnerClaims) UserID() int64 {
	id, _ := strconv.ParseInt(strings.TrimPrefix(c.Subject, "user:"), 10, 64)
	return id
}

// SignSession makes an owner session token.
func SignSession(key ed25519.PrivateKey, u store.User, now time.Time) (string, error) {
	tok, _, err := NewSession(key, u, now)
	return tok, err
}

// NewSession makes an owner session token and returns its ID (jti), which
// the server records so that signing out ends the session.
func NewSession(key ed25519.PrivateKey, u store.User, now time.Time) (token, id string, err error) {
	c := OwnerClaims{Name: u.Name}
	c.Subject = "user:" + strconv.FormatInt(u.ID, 10)
	c.Audience = jwt.ClaimStrings{OwnerAudience}
	c.IssuedAt = jwt.NewNumericDate(now)
	c.ExpiresAt = jwt.NewNumericDate(now.Add(SessionTTL))
	c.ID = viewertoken.NewID()
	token, err = jwt.NewWithClaims(jwt.SigningMethodEdDSA, c).SignedString(key)
	return token, c.ID, err
}

// ParseSession checks an owner session token.
func ParseSession(pub ed25519.PublicKey, token string, now time.Time) (*OwnerClaims, error) {
	var c OwnerClaims
	_, err := jwt.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return pub, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
		jwt.WithAudience(OwnerAudience),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(func() time.Time { return now }),
	)
	if err != nil || c.UserID() == 0 {
		return nil, fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	return &c, nil
}

// claimAlphabet leaves out 0/O, 1/I/L and U so a code read aloud or off a
// small screen is typed right.
const claimAlphabet = "ABCDEFGHJKMNPQRSTVWXYZ23456789"

// NewClaimCode returns a code like "K7QF-M3XP-R9TA": 12 symbols of 30,
// about 59 bits, far beyond guessing under the claim rate limit.
func NewClaimCode() string {
	var sb strings.Builder
	var b [1]byte
	for n := 0; n < 12; {
		_, _ = rand.Read(b[:])
		// Rejection sampling: 240 is the largest multiple of 30 below 256,
		// so every symbol is equally likely.
		if b[0] >= 240 {
			continue
		}
		if n > 0 && n%4 == 0 {
			sb.WriteByte('-')
		}
		sb.WriteByte(claimAlphabet[int(b[0])%len(claimAlphabet)])
		n++
	}
	return sb.String()
}

// NormalizeClaimCode upper-cases a typed code and drops spaces and dashes,
// then puts the dashes back where NewClaimCode does.
func NormalizeClaimCode(s string) string {
	var raw []byte
	for _, r := range strings.ToUpper(s) {
		if r == '-' || r == ' ' {
			continue
		}
		raw = append(raw, byte(r))
	}
	var sb strings.Builder
	for i, c := range raw {
		if i > 0 && i%4 == 0 {
			sb.WriteByte('-')
		}
		sb.WriteByte(c)
	}
	return sb.String()
}

// NewSecret returns a random URL-safe secret.
func NewSecret() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
