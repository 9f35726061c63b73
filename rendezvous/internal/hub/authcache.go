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
	mu      sync.Mutex // guards the maps
	devices map[string]cached[store.Device]
	logins  map[string]cached[int64] // loginID → its user, while active
	tokens  map[tokenKey]cached[string]
}

type cached[T any] struct {
	v  T
	at time.Time
}

type tokenKey struct {
	user          int64
	device, claim string
	camera        string
}

// cacheTTL bounds how old a cached answer may be.
const cacheTTL = 2 * time.Second

func fresh[T any](c cached[T], ok bool) bool { return ok && time.Since(c.at) < cacheTTL }

func (h *Hub) deviceRecord(ctx context.Context, id string) (store.Device, error) {
	c := &h.auth
	c.mu.Lock()
	e, ok := c.devices[id]
	c.mu.Unlock()
	if fresh(e, ok) {
		return e.v, nil
	}
	rec, err := h.cfg.Store.Device(ctx, id)
	if err != nil {
		return rec, err
	}
	c.mu.Lock()
	if c.devices == nil {
		c.devices = map[string]cached[store.Device]{}
	}
	if len(c.devices) > 100000 {
		clear(c.devices)
	}
	c.devices[id] = cached[store.Device]{v: rec, at: time.Now()}
	c.mu.Unlock()
	return rec, nil
}

func (h *Hub) loginActive(ctx context.Context, loginID string, user int64) (bool, error) {
	c := &h.auth
	c.mu.Lock()
	e, ok := c.logins[loginID]
	c.mu.Unlock()
	if fresh(e, ok) && e.v == user {
		return true, nil
	}
	active, err := h.cfg.Store.LoginActive(ctx, loginID, user)
	if err != nil || !active {
		return active, err
	}
	c.mu.Lock()
	if c.logins == nil {
		c.logins = map[string]cached[int64]{}
	}
	if len(c.logins) > 100000 {
		clear(c.logins)
	}
	c.logins[loginID] = cached[int64]{v: user, at: time.Now()}
	c.mu.Unlock()
	return true, nil
}

// ownerToken is the token the agent checks for an owner's session: one per
// owner, camera and claim, re-signed when it has less than an hour left.
func (h *Hub) ownerToken(user int64, rec store.Device, camera string) (string, error) {
	k := tokenKey{user: user, device: rec.ID, claim: rec.ClaimID, camera: camera}
	c := &h.auth
	c.mu.Lock()
	e, ok := c.tokens[k]
	c.mu.Unlock()
	if ok && time.Since(e.at) < h.cfg.AgentTokenTTL-time.Hour {
		return e.v, nil
	}
	claims := viewertoken.Claims{Device: rec.ID, Cameras: []string{camera}, Perms: []string{viewertoken.PermLive},
		Owner: rec.OwnerID, Claim: rec.ClaimID}
	claims.Subject = fmt.Sprintf("user:%d", user)
	now := time.Now()
	tok, err := viewertoken.Sign(h.cfg.Key, claims, now, h.cfg.AgentTokenTTL)
	if err != nil {
		return "", err
	}
	c.mu.Lock()
	if c.tokens == nil {
		c.tokens = map[tokenKey]cached[string]{}
	}
	if len(c.tokens) > 100000 {
		clear(c.tokens)
	}
	c.tokens[k] = cached[string]{v: tok, at: now}
	c.mu.Unlock()
	return tok, nil
}

// forgetDevice drops a device's cached record (a claim or a removal).
func (h *Hub) forgetDevice(id string) {
	c := &h.auth
	c.mu.Lock()
	delete(c.devices, id)
	c.mu.Unlock()
}

// forgetLogin drops a sign-in's cached answer (a sign-out).
func (h *Hub) forgetLogin(id string) {
	c := &h.auth
	c.mu.Lock()
	delete(c.logins, id)
	c.mu.Unlock()
}

// forgetAll drops every cached answer (the store changed, maybe anything).
func (h *Hub) forgetAll() {
	c := &h.auth
	c.mu.Lock()
	clear(c.devices)
	clear(c.logins)
	c.mu.Unlock()
}
