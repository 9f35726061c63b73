package hub

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
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
// any change the store's epoch shows (every claim, removal, revocation and
// sign-out bumps it, whichever process made it, and every node reads it
// twice a second); and no answer is older than cacheTTL. The record of a
// device connected to this node is held longer, in its device entry: read
// at its handshake, it stays until one of those drops it, so that opens to
// a fleet of connected devices cost the store nothing for the device.
type authCache struct {
	// gen counts forgets: a record read while it moved may be stale.
	gen     atomic.Uint64
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
	h.mu.Lock()
	if d := h.devices[id]; d != nil && d.held {
		rec := d.rec
		h.mu.Unlock()
		return rec, nil
	}
	h.mu.Unlock()
	if rec, ok := h.auth.devices.get(id, cacheTTL); ok {
		return rec, nil
	}
	gen := h.auth.gen.Load()
	rec, err := h.cfg.Store.Device(ctx, id)
	if err != nil {
		return rec, err
	}
	h.auth.devices.put(id, rec, time.Now())
	h.mu.Lock()
	if d := h.devices[id]; d != nil && holds(rec) && h.auth.gen.Load() == gen {
		d.rec, d.held = rec, true
	}
	h.mu.Unlock()
	return rec, nil
}

// holds tells whether a record read from the store may be held: only if
// nothing was forgotten while it was read (the caller checks the
// generation) and only a claimed device's. An unclaimed device's record is
// read again at every open, so a claim made a moment ago by another
// process (the admin CLI) counts at once rather than at the next epoch
// poll; opens to an unclaimed device are refused anyway and rare.
func holds(rec store.Device) bool { return rec.OwnerID != 0 }

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

// forgetDevice drops a device's cached and held record (a claim or a
// removal).
func (h *Hub) forgetDevice(id string) {
	h.auth.gen.Add(1)
	h.auth.devices.forget(id)
	h.mu.Lock()
	if d := h.devices[id]; d != nil {
		d.held = false
	}
	h.mu.Unlock()
}

// forgetLogin drops a sign-in's cached answer (a sign-out).
func (h *Hub) forgetLogin(id string) { h.auth.logins.forget(id) }

// forgetAll drops every cached record and sign-in (the store changed,
// maybe anything). Tokens stay: one names its claim, and a new claim
// makes a new key.
func (h *Hub) forgetAll() {
	h.auth.gen.Add(1)
	h.auth.devices.forgetAll()
	h.mu.Lock()
	for _, d := range h.devices {
		d.held = false
	}
	h.mu.Unlock()
	h.auth.logins.forgetAll()
}
