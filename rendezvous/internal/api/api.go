// Package api is the rendezvous's HTTP face: the JSON API the web app and
// scripts use (login, devices, claiming, viewer tokens), the two signaling
// WebSockets, and WHEP (RFC 9725) for standard WebRTC players.
package api

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/peercam/peercam/internal/viewertoken"
	"github.com/peercam/peercam/internal/wsconn"
	"github.com/peercam/peercam/proto"
	"github.com/peercam/peercam/rendezvous/internal/auth"
	"github.com/peercam/peercam/rendezvous/internal/hub"
	"github.com/peercam/peercam/rendezvous/internal/metrics"
	"github.com/peercam/peercam/rendezvous/internal/store"
)

// CookieName is the owner session cookie.
const CookieName = "peercam_session"

// CSRFHeader must accompany state-changing requests that rely on the cookie.
// A cross-site page cannot set a custom header without a CORS preflight, which
// this server never grants.
const CSRFHeader = "X-PeerCam-CSRF"

// MaxTokenTTL bounds viewer tokens minted through the API.
const MaxTokenTTL = 30 * 24 * time.Hour

// Defaults for Config's limits.
const (
	DefaultMaxConnsPerAddr = 32
	DefaultMaxHashes       = 2
	DefaultHashWait        = 3 * time.Second
	DefaultOpenBurst       = 20
	DefaultMaxHandshakes   = 256
)

// Default signaling limits per socket. A page opening a 16-camera grid
// sends about 200 messages at once (open, offer and candidates for each);
// an agent answering 100 viewers at once, about 800.
var (
	DefaultViewerMsgs = wsconn.Limits{Rate: 50, Burst: 400}
	DefaultDeviceMsgs = wsconn.Limits{Rate: 500, Burst: 2000}
)

// Config configures the API.
type Config struct {
	Store  *store.Store
	Hub    *hub.Hub
	Key    ed25519.PrivateKey
	Static http.Handler
	// PublicURL is the base of links the API prints.
	PublicURL string
	// SecureCookies marks the cookie Secure (when served over TLS).
	SecureCookies bool
	// TrustedProxies are reverse proxies whose X-Forwarded-For names the
	// real client; from anyone else the header is ignored.
	TrustedProxies []netip.Prefix
	// MaxConnsPerAddr caps concurrent WebSocket connections per client
	// address (per /64 for IPv6), separately for viewers and devices.
	// Default DefaultMaxConnsPerAddr.
	MaxConnsPerAddr int
	// MaxHashes bounds concurrent password hashes (64 MiB each); a request
	// that cannot start one within HashWait gets 429. Defaults
	// DefaultMaxHashes and DefaultHashWait.
	MaxHashes int
	HashWait  time.Duration
	// OpenBurst is how many sessions one address (or one token) may open
	// in a burst; past it, one a second. Default DefaultOpenBurst.
	OpenBurst int
	// MaxHandshakes bounds device handshakes in progress; more get 503 with
	// Retry-After. Default DefaultMaxHandshakes.
	MaxHandshakes int
	// ViewerMsgs and DeviceMsgs bound what one viewer or device socket may
	// send (message size and rate). Zero fields take DefaultViewerMsgs' and
	// DefaultDeviceMsgs'.
	ViewerMsgs, DeviceMsgs wsconn.Limits
	// Metrics receives the counters; default, a set of the API's own.
	Metrics *metrics.Metrics
	Logger  *slog.Logger
}

// API serves HTTP.
type API struct {
	cfg Config
	log *slog.Logger
	pub ed25519.PublicKey
	// limiter is per address for login, setup, claim and device
	// handshakes; the others are per account or token.
	limiter     *limiter
	accountFail *limiter // failed sign-ins per account, across addresses
	pairFail    *limiter // failed sign-ins per (account, address)
	opens       *limiter // session opens per address and per token
	hashes      chan struct{}
	// signins lets one sign-in per address be checked at a time, so that
	// guesses sent at once cannot all pass the budgets before the first
	// failure is counted.
	signins     turns
	handshakes  chan struct{}
	viewerConns connCounter
	deviceConns connCounter
	upgrader    websocket.Upgrader
	// deviceUpgrader is the agents' (smaller buffers).
	deviceUpgrader websocket.Upgrader
	mux            *http.ServeMux
	routes         []string
}

// New builds the handler tree.
func New(cfg Config) *API {
	if cfg.MaxConnsPerAddr <= 0 {
		cfg.MaxConnsPerAddr = DefaultMaxConnsPerAddr
	}
	if cfg.MaxHashes <= 0 {
		cfg.MaxHashes = DefaultMaxHashes
	}
	if cfg.HashWait <= 0 {
		cfg.HashWait = DefaultHashWait
	}
	if cfg.MaxHandshakes <= 0 {
		cfg.MaxHandshakes = DefaultMaxHandshakes
	}
	if cfg.OpenBurst <= 0 {
		cfg.OpenBurst = DefaultOpenBurst
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.New(metrics.Live{})
	}
	cfg.ViewerMsgs = withDefaults(cfg.ViewerMsgs, DefaultViewerMsgs)
	cfg.DeviceMsgs = withDefaults(cfg.DeviceMsgs, DefaultDeviceMsgs)
	a := &API{cfg: cfg, log: cfg.Logger.With("component", "api"), pub: cfg.Key.Public().(ed25519.PublicKey),
		limiter:     newLimiter(3*time.Second, 10),
		accountFail: newLimiter(10*time.Second, 20),
		pairFail:    newLimiter(30*time.Second, 5),
		opens:       newLimiter(time.Second, cfg.OpenBurst),
		hashes:      make(chan struct{}, cfg.MaxHashes),
		handshakes:  make(chan struct{}, cfg.MaxHandshakes),
		mux:         http.NewServeMux()}
	a.limiter.hit = func() { a.cfg.Metrics.RateLimited.WithLabelValues("http").Inc() }
	// In a cluster every node hears what the others spent, so an attacker
	// who spreads attempts over the nodes gets no more than on one.
	if cfg.Hub != nil {
		shared := map[string]*limiter{"addr": a.limiter, "account": a.accountFail, "pair": a.pairFail, "opens": a.opens}
		for name, l := range shared {
			l.share = func(key string, forget bool) { cfg.Hub.ShareLimit(name, key, forget) }
		}
		cfg.Hub.OnSharedLimit(func(name, key string, forget bool) {
			if l := shared[name]; l != nil {
				l.applyShared(key, forget)
			}
		})
	}
	// The default CheckOrigin refuses a browser Origin other than this host,
	// so another site cannot open a viewer socket with the owner's cookie.
	// Buffer sizes zero: the sockets keep the buffers the HTTP server
	// already made (4 KiB each way) instead of a second pair, and write
	// buffers come from a pool only while writing, so an idle agent's link
	// holds no write buffer.
	a.upgrader = websocket.Upgrader{WriteBufferPool: &sync.Pool{}}
	// An agent's link is idle nearly always, and a fleet has tens of
	// thousands: 256 bytes of read buffer instead of the 4 KiB the HTTP
	// server made. Its socket comes through wsconn.Hijacking, which reads
	// a frame at a time (a larger one goes past the buffer, straight into
	// the message) and lets the idle link wait with a small stack.
	a.deviceUpgrader = websocket.Upgrader{ReadBufferSize: 256, WriteBufferPool: &sync.Pool{}}
	handle := func(pattern string, h http.HandlerFunc) {
		a.routes = append(a.routes, pattern)
		a.mux.HandleFunc(pattern, h)
	}
	handle("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	handle("GET /api/openapi.json", serveOpenAPI)
	handle("GET /api/setup", a.setupNeeded)
	handle("POST /api/setup", a.setup)
	handle("POST /api/login", a.login)
	handle("POST /api/logout", a.logout)
	handle("POST /api/logout-all", a.owner(a.logoutAll))
	handle("GET /api/me", a.owner(a.me))
	handle("GET /api/devices", a.owner(a.devices))
	handle("POST /api/devices/claim", a.owner(a.claim))
	handle("DELETE /api/devices/{id}", a.owner(a.removeDevice))
	handle("POST /api/devices/{id}/tokens", a.owner(a.mintToken))
	handle("GET /api/tokens", a.owner(a.listTokens))
	handle("DELETE /api/tokens/{id}", a.owner(a.revokeToken))
	handle("POST /api/shares", a.owner(a.createShare))
	handle("GET /api/shares", a.owner(a.listShares))
	handle("DELETE /api/shares/{id}", a.owner(a.revokeShare))
	handle("GET /api/audit", a.owner(a.auditLog))
	handle("GET /ws/device", a.deviceSocket)
	handle("GET /ws/viewer", a.viewerSocket)
	handle("POST /whep/{device}/{camera}", a.whepOffer)
	handle("DELETE /whep/{device}/{camera}/{session}", a.whepDelete)
	handle("OPTIONS /whep/", a.whepPreflight)
	handle("PATCH /whep/{device}/{camera}/{session}", a.whepPatch)
	if cfg.Static != nil {
		a.routes = append(a.routes, "GET /")
		a.mux.Handle("GET /", cfg.Static)
	}
	return a
}

// Routes lists the patterns the API registers, for the test that holds the
// OpenAPI description to them.
func (a *API) Routes() []string { return slices.Clone(a.routes) }

// ServeHTTP implements http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Referrer-Policy", "no-referrer")
	a.mux.ServeHTTP(w, r)
}

type apiError struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, apiError{Error: code, Message: msg})
}

// isJSON tells whether a request declares a JSON body. A cross-site HTML
// form can only send text/plain, urlencoded or multipart bodies without a
// CORS preflight, so insisting on application/json shuts out forged forms
// even where the body happens to parse as JSON.
func isJSON(r *http.Request) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && mt == "application/json"
}

// readJSON decodes a small JSON body strictly.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	if !isJSON(r) {
		writeErr(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "Send the body as JSON with Content-Type: application/json.")
		return false
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 16<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeErr(w, http.StatusBadRequest, "bad_request", "The request body is not valid JSON for this call: "+err.Error())
		return false
	}
	return true
}

// clientIP is the address a request comes from: the peer, or, when the peer
// is a trusted proxy, the right-most X-Forwarded-For entry that is not one
// (entries further left are whatever the client chose to send).
func (a *API) clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if len(a.cfg.TrustedProxies) == 0 || !a.trusted(host) {
		return host
	}
	var hops []string
	for _, v := range r.Header.Values("X-Forwarded-For") {
		for _, h := range strings.Split(v, ",") {
			hops = append(hops, strings.TrimSpace(h))
		}
	}
	for i := len(hops) - 1; i >= 0; i-- {
		ip, err := netip.ParseAddr(hops[i])
		if err != nil {
			return host // garbage: rate-limit the proxy itself, fail closed
		}
		if !a.trusted(ip.String()) {
			return ip.Unmap().String()
		}
	}
	return host
}

func (a *API) trusted(ip string) bool {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	addr = addr.Unmap()
	for _, p := range a.cfg.TrustedProxies {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// bearer returns the token of an Authorization: Bearer header.
func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// signedIn is an owner request's identity.
type signedIn struct {
	user    store.User
	loginID string
	cookie  bool
}

// ownerFrom returns the owner a request is signed in as. A bearer token wins
// over the cookie. The session must be on record and not signed out.
func (a *API) ownerFrom(r *http.Request) (*signedIn, error) {
	tok, fromCookie := bearer(r), false
	if tok == "" {
		c, err := r.Cookie(CookieName)
		if err != nil {
			return nil, auth.ErrBadToken
		}
		tok, fromCookie = c.Value, true
	}
	claims, err := auth.ParseSession(a.pub, tok, time.Now())
	if err != nil {
		return nil, err
	}
	if ok, err := a.cfg.Store.LoginActive(r.Context(), claims.ID, claims.UserID()); err != nil || !ok {
		return nil, auth.ErrBadToken
	}
	u, err := a.cfg.Store.UserByID(r.Context(), claims.UserID())
	if err != nil {
		return nil, auth.ErrBadToken
	}
	return &signedIn{user: u, loginID: claims.ID, cookie: fromCookie}, nil
}

// sameOrigin tells whether a browser request comes from this site's own
// pages: the CSRF header (which a cross-site page cannot set without a
// preflight this server never grants), or an Origin naming this host.
func (a *API) sameOrigin(r *http.Request) bool {
	if r.Header.Get(CSRFHeader) != "" {
		return true
	}
	o := r.Header.Get("Origin")
	if o == "" {
		return false
	}
	u, err := url.Parse(o)
	if err != nil {
		return false
	}
	if pu, err := url.Parse(a.cfg.PublicURL); err == nil && strings.EqualFold(u.Host, pu.Host) && u.Scheme == pu.Scheme {
		return true
	}
	return strings.EqualFold(u.Host, r.Host)
}

// owner wraps a handler that needs a signed-in owner.
func (a *API) owner(next func(http.ResponseWriter, *http.Request, *signedIn)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		si, err := a.ownerFrom(r)
		if err != nil {
			writeErr(w, http.StatusUnauthorized, "unauthorized", "Sign in first.")
			return
		}
		if si.cookie && r.Method != http.MethodGet && r.Header.Get(CSRFHeader) == "" {
			writeErr(w, http.StatusForbidden, "csrf", "Missing "+CSRFHeader+" header.")
			return
		}
		next(w, r, si)
	}
}

func (a *API) setCookie(w http.ResponseWriter, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: a.cfg.SecureCookies, SameSite: http.SameSiteLaxMode})
}

type userJSON struct {
	Name string `json:"name"`
}

func (a *API) me(w http.ResponseWriter, _ *http.Request, si *signedIn) {
	writeJSON(w, http.StatusOK, userJSON{si.user.Name})
}

type cameraJSON struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	HasSub bool   `json:"has_sub"`
}

type deviceJSON struct {
	ID       string       `json:"id"`
	Name     string       `json:"name"`
	Online   bool         `json:"online"`
	LastSeen time.Time    `json:"last_seen"`
	Cameras  []cameraJSON `json:"cameras"`
}

func (a *API) deviceView(d store.Device) deviceJSON {
	cams := d.Cameras
	if live, ok := a.cfg.Hub.Cameras(d.ID); ok {
		cams = live
	}
	out := deviceJSON{ID: d.ID, Name: d.Name, Online: a.cfg.Hub.Online(d.ID), LastSeen: d.LastSeen.UTC(), Cameras: []cameraJSON{}}
	for _, c := range cams {
		out.Cameras = append(out.Cameras, cameraJSON(c))
	}
	if out.Name == "" {
		out.Name = "Device " + d.ID[:6]
	}
	return out
}

func (a *API) devices(w http.ResponseWriter, r *http.Request, si *signedIn) {
	devs, err := a.cfg.Store.Devices(r.Context(), si.user.ID)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, "internal", "Store unavailable.")
		return
	}
	out := []deviceJSON{}
	for _, d := range devs {
		out = append(out, a.deviceView(d))
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *API) claim(w http.ResponseWriter, r *http.Request, si *signedIn) {
	a.cfg.Hub.HearShared() // what another node just counted, before the budgets are read
	if !a.limiter.allow(w, "claim:"+addrKey(a.clientIP(r))) || !a.limiter.allow(w, "claim-user:"+si.user.Name) {
		return
	}
	a.cfg.Hub.FlushShared() // the other nodes count this attempt before the next
	var body struct {
		Code string `json:"code"`
		Name string `json:"name"`
	}
	if !readJSON(w, r, &body) {
		return
	}
	d, err := a.cfg.Hub.Claim(r.Context(), si.user, body.Code, strings.TrimSpace(body.Name))
	switch {
	case errors.Is(err, hub.ErrBadClaimCode):
		writeErr(w, http.StatusNotFound, "bad_claim_code", "That claim code is wrong, already used or expired. The device prints a fresh one in its log.")
	case errors.Is(err, store.ErrClaimed):
		writeErr(w, http.StatusConflict, "already_claimed", "This device already has an owner. They must remove it first.")
	case err != nil:
		writeErr(w, http.StatusInternalServerError, "internal", "Could not claim the device.")
	default:
		writeJSON(w, http.StatusOK, a.deviceView(d))
	}
}

// removeDevice unbinds a device: every share and token issued for it is
// revoked and its live sessions end.
func (a *API) removeDevice(w http.ResponseWriter, r *http.Request, si *signedIn) {
	n, err := a.cfg.Hub.Remove(r.Context(), si.user, r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) {
		writeErr(w, http.StatusNotFound, "not_found", "No such device on this account.")
		return
	}
	if err != nil {
		writeErr(w, http.StatusInternalServerError, "internal", "Could not remove the device.")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "revoked": n})
}

// mintToken gives an owner a viewer token for a standard WHEP player or a
// script. It is recorded, listed under /api/tokens and revocable.
func (a *API) mintToken(w http.ResponseWriter, r *http.Request, si *signedIn) {
	var body struct {
		Cameras    []string `json:"cameras"`
		TTLSeconds int      `json:"ttl_seconds"`
	}
	if !readJSON(w, r, &body) {
		return
	}
	devID := r.PathValue("id")
	d, err := a.cfg.Store.Device(r.Context(), devID)
	if err != nil || d.OwnerID != si.user.ID {
		writeErr(w, http.StatusNotFound, "not_found", "No such device on this account.")
		return
	}
	ttl := time.Duration(body.TTLSeconds) * time.Second
	if ttl <= 0 || ttl > MaxTokenTTL {
		writeErr(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("ttl_seconds must be between 1 and %d.", int(MaxTokenTTL/time.Second)))
		return
	}
	if len(body.Cameras) == 0 {
		writeErr(w, http.StatusBadRequest, "bad_request", "Name at least one camera.")
		return
	}
	t, err := MintViewerToken(r.Context(), a.cfg.Store, a.cfg.Key, d, body.Cameras, ttl, "API")
	if errors.Is(err, ErrShare) {
		writeErr(w, http.StatusBadRequest, "bad_request", strings.TrimPrefix(err.Error(), "share: "))
		return
	}
	if err != nil {
		writeErr(w, http.StatusInternalServerError, "internal", "Could not sign the token.")
		return
	}
	a.audit(r.Context(), store.AuditEvent{OwnerID: si.user.ID, Kind: store.AuditTokenMinted, Actor: si.user.Name, Device: devID,
		Camera: strings.Join(body.Cameras, ","), Detail: "token " + short(t.ID) + " until " + t.Expires.UTC().Format(time.RFC3339)})
	writeJSON(w, http.StatusOK, map[string]any{
		"id":       t.ID,
		"token":    t.Token,
		"expires":  t.Expires.UTC(),
		"whep_url": a.cfg.PublicURL + "/whep/" + devID + "/" + body.Cameras[0],
	})
}

// MintedToken is a minted viewer token and its record's ID.
type MintedToken struct {
	ID      string
	Token   string
	Expires time.Time
}

// MintViewerToken records and signs a live-view token for cameras of an
// owner's claimed device, under its current claim. The API and the admin CLI
// both use it; mintedBy says which.
func MintViewerToken(ctx context.Context, st *store.Store, key ed25519.PrivateKey, d store.Device, cameras []string, ttl time.Duration, mintedBy string) (MintedToken, error) {
	if d.OwnerID == 0 || d.ClaimID == "" {
		return MintedToken{}, fmt.Errorf("%w: device %s is not claimed", ErrShare, d.ID)
	}
	for _, c := range cameras {
		if !slices.ContainsFunc(d.Cameras, func(dc proto.Camera) bool { return dc.ID == c }) {
			return MintedToken{}, fmt.Errorf("%w: device has no camera %q", ErrShare, c)
		}
	}
	now := time.Now()
	c := viewertoken.Claims{Device: d.ID, Cameras: cameras, Perms: []string{viewertoken.PermLive}, Owner: d.OwnerID, Claim: d.ClaimID}
	c.ID = viewertoken.NewID()
	c.Subject = "token:" + c.ID
	tok, err := viewertoken.Sign(key, c, now, ttl)
	if err != nil {
		return MintedToken{}, err
	}
	rec := store.Token{ID: c.ID, OwnerID: d.OwnerID, DeviceID: d.ID, Cameras: cameras, MintedBy: mintedBy, Created: now, Expires: now.Add(ttl)}
	if err := st.AddToken(ctx, rec); err != nil {
		return MintedToken{}, err
	}
	return MintedToken{ID: c.ID, Token: tok, Expires: rec.Expires}, nil
}

type tokenJSON struct {
	ID         string     `json:"id"`
	Device     string     `json:"device"`
	Cameras    []string   `json:"cameras"`
	MintedBy   string     `json:"minted_by"`
	Created    time.Time  `json:"created"`
	Expires    time.Time  `json:"expires"`
	Revoked    *time.Time `json:"revoked,omitempty"`
	LastUsed   *time.Time `json:"last_used,omitempty"`
	ViewersNow int        `json:"viewers_now"`
	Active     bool       `json:"active"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func (a *API) listTokens(w http.ResponseWriter, r *http.Request, si *signedIn) {
	toks, err := a.cfg.Store.Tokens(r.Context(), si.user.ID)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, "internal", "Store unavailable.")
		return
	}
	now := time.Now()
	out := []tokenJSON{}
	for _, t := range toks {
		out = append(out, tokenJSON{ID: t.ID, Device: t.DeviceID, Cameras: t.Cameras, MintedBy: t.MintedBy,
			Created: t.Created.UTC(), Expires: t.Expires.UTC(), Revoked: timePtr(t.Revoked), LastUsed: timePtr(t.LastUsed),
			ViewersNow: a.cfg.Hub.ViewersOf(t.ID), Active: t.Revoked.IsZero() && t.Expires.After(now)})
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *API) revokeToken(w http.ResponseWriter, r *http.Request, si *signedIn) {
	id := r.PathValue("id")
	if err := a.cfg.Store.RevokeToken(r.Context(), id, si.user.ID); err != nil {
		writeErr(w, http.StatusNotFound, "not_found", "No such token on this account.")
		return
	}
	ended := a.cfg.Hub.RevokeToken(id)
	a.audit(r.Context(), store.AuditEvent{OwnerID: si.user.ID, Kind: store.AuditTokenRevoked, Actor: si.user.Name,
		Detail: fmt.Sprintf("token %s, %d live session(s) ended", short(id), ended)})
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "sessions_ended": ended})
}

// deviceSocket is an agent's signaling link. Agents redial with backoff;
// a source hammering the handshake, or holding many links, is not one.
func (a *API) deviceSocket(w http.ResponseWriter, r *http.Request) {
	ip := addrKey(a.clientIP(r))
	if !a.limiter.allow(w, "device:"+ip) {
		return
	}
	if !a.deviceConns.acquire(ip, a.cfg.MaxConnsPerAddr) {
		a.tooMany(w, 10*time.Second, fmt.Sprintf("Your address already has %d device connections open, the limit.", a.cfg.MaxConnsPerAddr))
		return
	}
	// Admission control: a reconnect storm (every agent of a node that
	// restarted) is taken a bounded number of handshakes at a time; the
	// rest are told to come back in a jittered second or three, which the
	// agent's backoff honours.
	select {
	case a.handshakes <- struct{}{}:
	default:
		a.deviceConns.release(ip)
		a.cfg.Metrics.RateLimited.WithLabelValues("handshake").Inc()
		w.Header().Set("Retry-After", strconv.Itoa(1+rand.IntN(3)))
		writeErr(w, http.StatusServiceUnavailable, "busy", "The server is taking many devices at once; try again in a moment.")
		return
	}
	var once sync.Once
	release := func() { once.Do(func() { <-a.handshakes }) }
	ws, err := a.deviceUpgrader.Upgrade(wsconn.Hijacking(w), r, nil)
	if err != nil {
		release()
		a.deviceConns.release(ip)
		return // the upgrader has answered
	}
	// The link lives on its own goroutine, not the HTTP handler's: the
	// handler's request, response and their buffers go now, which is most
	// of what an idle agent would otherwise hold on a busy server.
	remote := r.RemoteAddr
	go func() {
		defer a.deviceConns.release(ip)
		defer release()
		a.cfg.Hub.ServeDevice(context.Background(), wsconn.NewLimited(ws, a.cfg.DeviceMsgs), remote, release)
	}()
}

// viewerSocket is a browser's signaling link.
func (a *API) viewerSocket(w http.ResponseWriter, r *http.Request) {
	ip := addrKey(a.clientIP(r))
	if !a.viewerConns.acquire(ip, a.cfg.MaxConnsPerAddr) {
		a.tooMany(w, 10*time.Second, fmt.Sprintf("Your address already has %d viewer connections open, the limit. Close some tabs.", a.cfg.MaxConnsPerAddr))
		return
	}
	var v hub.Viewer
	if si, err := a.ownerFrom(r); err == nil {
		v.Owner, v.LoginID = &si.user, si.loginID
	}
	ws, err := a.upgrader.Upgrade(w, r, nil)
	if err != nil {
		a.viewerConns.release(ip)
		return
	}
	remote := r.RemoteAddr
	go func() {
		defer a.viewerConns.release(ip)
		a.cfg.Hub.ServeViewer(context.Background(), wsconn.NewLimited(ws, a.cfg.ViewerMsgs), hub.ViewerConn{
			Viewer:    v,
			Parse:     func(tok string) (*viewertoken.Claims, error) { return a.checkToken(ip, tok) },
			AllowOpen: func(tokenID string) error { return a.allowOpen(ip, tokenID) },
			Remote:    remote,
		})
	}()
}

// withDefaults fills l's zero fields from d.
func withDefaults(l, d wsconn.Limits) wsconn.Limits {
	if l.MaxMessage <= 0 {
		l.MaxMessage = d.MaxMessage
	}
	if l.Rate <= 0 {
		l.Rate = d.Rate
	}
	if l.Burst <= 0 {
		l.Burst = d.Burst
	}
	return l
}

// allowOpen spends one session open from ip and, for a token, from the
// token: a guest cannot churn sessions to flood the owner's log or the
// agent, from one address or from many.
func (a *API) allowOpen(ip, tokenID string) error {
	if a.opens.take("open:"+ip) > 0 || (tokenID != "" && a.opens.take("open-token:"+tokenID) > 0) {
		a.cfg.Metrics.RateLimited.WithLabelValues("open").Inc()
		return hub.ErrRateLimited
	}
	return nil
}

func (a *API) parseViewerToken(tok string) (*viewertoken.Claims, error) {
	return viewertoken.Parse(a.pub, tok, time.Now())
}

// checkToken parses a viewer token presented by ip. Bad tokens spend the
// address's budget; once it is gone, even good ones wait, so guessing or
// replaying tokens from one place is slow.
func (a *API) checkToken(ip, tok string) (*viewertoken.Claims, error) {
	key := "token:" + ip
	if a.limiter.exhausted(key) {
		return nil, hub.ErrRateLimited
	}
	c, err := a.parseViewerToken(tok)
	if err != nil {
		a.limiter.take(key)
		a.cfg.Hub.FlushShared()
	}
	return c, err
}

func (a *API) audit(ctx context.Context, e store.AuditEvent) {
	if err := a.cfg.Store.AddAudit(ctx, e); err != nil {
		a.log.Warn("audit log", "err", err)
	}
}

type auditJSON struct {
	ID         string    `json:"id"`
	At         time.Time `json:"at"`
	Kind       string    `json:"kind"`
	Category   string    `json:"category"`
	Actor      string    `json:"actor"`
	Device     string    `json:"device,omitempty"`
	Camera     string    `json:"camera,omitempty"`
	Detail     string    `json:"detail,omitempty"`
	DurationMS int64     `json:"duration_ms,omitempty"`
}

// auditLog returns a page of the owner's own audit log, newest first:
// ?category=security|sessions (default both), ?limit=1..500 (default 100),
// ?before=<next of the previous page>.
func (a *API) auditLog(w http.ResponseWriter, r *http.Request, si *signedIn) {
	a.cfg.Hub.AuditWritten()
	q := r.URL.Query()
	cat := q.Get("category")
	if cat != "" && cat != store.CategorySecurity && cat != store.CategorySessions {
		writeErr(w, http.StatusBadRequest, "bad_request", "category must be security or sessions.")
		return
	}
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 500 {
			writeErr(w, http.StatusBadRequest, "bad_request", "limit must be between 1 and 500.")
			return
		}
		limit = n
	}
	var before int64
	if v := q.Get("before"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			writeErr(w, http.StatusBadRequest, "bad_request", "before must be the next value of a previous page.")
			return
		}
		before = n
	}
	events, err := a.cfg.Store.Audit(r.Context(), si.user.ID, cat, before, limit)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, "internal", "Store unavailable.")
		return
	}
	out := struct {
		Events []auditJSON `json:"events"`
		Next   string      `json:"next,omitempty"`
	}{Events: []auditJSON{}}
	for _, e := range events {
		out.Events = append(out.Events, auditJSON{ID: strconv.FormatInt(e.ID, 10), At: e.At.UTC(), Kind: e.Kind,
			Category: store.CategoryOf(e.Kind), Actor: e.Actor, Device: e.Device, Camera: e.Camera,
			Detail: e.Detail, DurationMS: e.Duration.Milliseconds()})
	}
	if len(events) == limit {
		out.Next = strconv.FormatInt(events[len(events)-1].ID, 10)
	}
	writeJSON(w, http.StatusOK, out)
}
