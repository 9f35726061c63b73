package hub

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/peercam/peercam/internal/viewertoken"
	"github.com/peercam/peercam/rendezvous/internal/store"
)

// authCache keeps what authorize reads for an owner's open — the device's
// record, whether the sign-in is active, the token minted for the agent —
// for a moment, so that a page opening a wall of cameras, or thousands of
// owners a second on a busy node, do not each cost the store two queries
// and a signature. Everything that changes an answer drops it: a claim or
// removal (Sync, on every node), a sign-out (EndLogin, on every node), and
// any change the store's epoch shows (the admin CLI); and no answer is
// older than cacheTTL.
type authCache struct {
	devices memo[string, store.Device]
	logins  memo[string, int64] // loginID → its user, while active
	tokens  memo[tokenKey, string]
}

type tokenKey struct {
	user          int64
	device, claim string
	camera        string
}

// cacheTTL bounds how old a cached answer may be.
const cacheTTL = 2 * time.Second

// memo is a map of answers with the time each was got, bounded in size.
type memo[K comparable, V any] struct {
	mu sync.Mutex // guards m
	m  map[K]memoEntry[V]
}

type memoEntry[V any] struct {
	v  V
	at time.Time
}

// get is k's answer if it is younger than ttl.
func (m *memo[K, V]) get(k K, ttl time.Duration) (V, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.m[k]
	if !ok || time.Since(e.at) >= ttl {
		var zero V
		return zero, false
	}
	return e.v, true
}

func (m *memo[K, V]) put(k K, v V, at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m == nil || len(m.m) > 100000 {
		m.m = map[K]memoEntry[V]{}
	}
	m.m[k] = memoEntry[V]{v: v, at: at}
}

func (m *memo[K, V]) forget(k K) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.m, k)
}

func (m *memo[K, V]) forgetAll() {
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(m.m)
}

func (h *Hub) deviceRecord(ctx context.Context, id string) (store.Device, error) {
	if rec, ok := h.auth.devices.get(id, cacheTTL); ok {
		return rec, nil
	}
	rec, err := h.cfg.Store.Device(ctx, id)
	if err == nil {
		h.auth.devices.put(id, rec, time.Now())
	}
	return rec, err
}

func (h *Hub) loginActive(ctx context.Context, loginID string, user int64) (bool, error) {
	if u, ok := h.auth.logins.get(loginID, cacheTTL); ok && u == user {
		return true, nil
	}
	active, err := h.cfg.Store.LoginActive(ctx, loginID, user)
	if err == nil && active {
		h.auth.logins.put(loginID, user, time.Now())
	}
	return active, err
}

// ownerToken is the token the agent checks for an owner's session: one per
// owner, camera and claim, re-signed when it has less than an hour left.
func (h *Hub) ownerToken(user int64, rec store.Device, camera string) (string, error) {
	k := tokenKey{user: user, device: rec.ID, claim: rec.ClaimID, camera: camera}
	if tok, ok := h.auth.tokens.get(k, h.cfg.AgentTokenTTL-time.Hour); ok {
		return tok, nil
	}
	claims := viewertoken.Claims{Device: rec.ID, Cameras: []string{camera}, Perms: []string{viewertoken.PermLive},
		Owner: rec.OwnerID, Claim: rec.ClaimID}
	claims.Subject = fmt.Sprintf("user:%d", user)
	now := time.Now()
	tok, err := viewertoken.Sign(h.cfg.Key, claims, now, h.cfg.AgentTokenTTL)
	if err == nil {
		h.auth.tokens.put(k, tok, now)
	}
	return tok, err
}

// forgetDevice drops a device's cached record (a claim or a removal).
func (h *Hub) forgetDevice(id string) { h.auth.devices.forget(id) }

// forgetLogin drops a sign-in's cached answer (a sign-out).
func (h *Hub) forgetLogin(id string) { h.auth.logins.forget(id) }

// forgetAll drops every cached record and sign-in (the store changed,
// maybe anything). Tokens stay: one names its claim, and a new claim
// makes a new key.
func (h *Hub) forgetAll() {
	h.auth.devices.forgetAll()
	h.auth.logins.forgetAll()
}
