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
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"github.com/peercam/peercam/internal/viewertoken"
	"github.com/peercam/peercam/internal/wsconn"
	"github.com/peercam/peercam/rendezvous/internal/auth"
	"github.com/peercam/peercam/rendezvous/internal/hub"
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
	Logger        *slog.Logger
}

// API serves HTTP.
type API struct {
	cfg      Config
	log      *slog.Logger
	pub      ed25519.PublicKey
	limiter  *limiter
	upgrader websocket.Upgrader
	mux      *http.ServeMux
}

// New builds the handler tree.
func New(cfg Config) *API {
	a := &API{cfg: cfg, log: cfg.Logger.With("component", "api"), pub: cfg.Key.Public().(ed25519.PublicKey),
		limiter: newLimiter(), mux: http.NewServeMux()}
	// The default CheckOrigin refuses a browser Origin other than this host,
	// so another site cannot open a viewer socket with the owner's cookie.
	a.upgrader = websocket.Upgrader{ReadBufferSize: 4096, WriteBufferSize: 4096}
	m := a.mux
	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	m.HandleFunc("GET /api/setup", a.setupNeeded)
	m.HandleFunc("POST /api/setup", a.setup)
	m.HandleFunc("POST /api/login", a.login)
	m.HandleFunc("POST /api/logout", a.logout)
	m.HandleFunc("GET /api/me", a.owner(a.me))
	m.HandleFunc("GET /api/devices", a.owner(a.devices))
	m.HandleFunc("POST /api/devices/claim", a.owner(a.claim))
	m.HandleFunc("DELETE /api/devices/{id}", a.owner(a.removeDevice))
	m.HandleFunc("POST /api/devices/{id}/tokens", a.owner(a.mintToken))
	m.HandleFunc("POST /api/shares", a.owner(a.createShare))
	m.HandleFunc("GET /api/shares", a.owner(a.listShares))
	m.HandleFunc("DELETE /api/shares/{id}", a.owner(a.revokeShare))
	m.HandleFunc("GET /api/audit", a.owner(a.auditLog))
	m.HandleFunc("GET /ws/device", a.deviceSocket)
	m.HandleFunc("GET /ws/viewer", a.viewerSocket)
	m.HandleFunc("POST /whep/{device}/{camera}", a.whepOffer)
	m.HandleFunc("DELETE /whep/{device}/{camera}/{session}", a.whepDelete)
	m.HandleFunc("OPTIONS /whep/", a.whepPreflight)
	m.HandleFunc("PATCH /whep/{device}/{camera}/{session}", a.whepPatch)
	if cfg.Static != nil {
		m.Handle("GET /", cfg.Static)
	}
	return a
}

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

// readJSON decodes a small JSON body strictly.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 16<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeErr(w, http.StatusBadRequest, "bad_request", "The request body is not valid JSON for this call: "+err.Error())
		return false
	}
	return true
}

func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// bearer returns the token of an Authorization: Bearer header.
func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// ownerFrom returns the owner a request is signed in as, and whether the
// credential was the cookie.
func (a *API) ownerFrom(r *http.Request) (*store.User, bool, error) {
	tok, fromCookie := bearer(r), false
	if tok == "" {
		c, err := r.Cookie(CookieName)
		if err != nil {
			return nil, false, auth.ErrBadToken
		}
		tok, fromCookie = c.Value, true
	}
	claims, err := auth.ParseSession(a.pub, tok, time.Now())
	if err != nil {
		return nil, fromCookie, err
	}
	u, err := a.cfg.Store.UserByID(r.Context(), claims.UserID())
	if err != nil {
		return nil, fromCookie, auth.ErrBadToken
	}
	return &u, fromCookie, nil
}

// owner wraps a handler that needs a signed-in owner.
func (a *API) owner(next func(http.ResponseWriter, *http.Request, *store.User)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u, fromCookie, err := a.ownerFrom(r)
		if err != nil {
			writeErr(w, http.StatusUnauthorized, "unauthorized", "Sign in first.")
			return
		}
		if fromCookie && r.Method != http.MethodGet && r.Header.Get(CSRFHeader) == "" {
			writeErr(w, http.StatusForbidden, "csrf", "Missing "+CSRFHeader+" header.")
			return
		}
		next(w, r, u)
	}
}

func (a *API) setCookie(w http.ResponseWriter, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: a.cfg.SecureCookies, SameSite: http.SameSiteLaxMode})
}

type credentials struct {
	Name     string `json:"name"`
	Password string `json:"password"`
	Token    string `json:"token,omitempty"`
}

type userJSON struct {
	Name string `json:"name"`
}

func (a *API) startSession(w http.ResponseWriter, u store.User) {
	tok, err := auth.SignSession(a.cfg.Key, u, time.Now())
	if err != nil {
		writeErr(w, http.StatusInternalServerError, "internal", "Could not start a session.")
		return
	}
	a.setCookie(w, tok, int(auth.SessionTTL/time.Second))
	writeJSON(w, http.StatusOK, map[string]any{"user": userJSON{u.Name}, "token": tok})
}

func (a *API) login(w http.ResponseWriter, r *http.Request) {
	if !a.limiter.allow(w, "login:"+remoteIP(r)) {
		return
	}
	var c credentials
	if !readJSON(w, r, &c) {
		return
	}
	// Per account as well as per address: a botnet spreading guesses over
	// many addresses still meets the account's budget.
	if !a.limiter.allow(w, "login-user:"+strings.ToLower(c.Name)) {
		return
	}
	u, err := a.cfg.Store.UserByName(r.Context(), c.Name)
	if err == nil {
		err = auth.CheckPassword(u.PWHash, c.Password)
	} else {
		// Spend the same time as a real check so names cannot be probed.
		_ = auth.CheckPassword(dummyHash, c.Password)
	}
	if err != nil {
		a.log.Info("login failed", "user", c.Name, "remote", remoteIP(r))
		if u.ID != 0 {
			a.audit(r.Context(), store.AuditEvent{OwnerID: u.ID, Kind: store.AuditLoginFailed, Actor: remoteIP(r), Detail: "wrong password"})
		}
		writeErr(w, http.StatusUnauthorized, "bad_credentials", "Wrong user name or password.")
		return
	}
	a.log.Info("login", "user", u.Name, "remote", remoteIP(r))
	a.audit(r.Context(), store.AuditEvent{OwnerID: u.ID, Kind: store.AuditLoginOK, Actor: u.Name, Detail: "from " + remoteIP(r)})
	a.startSession(w, u)
}

var dummyHash, _ = auth.HashPassword("not-a-real-password")

func (a *API) logout(w http.ResponseWriter, _ *http.Request) {
	a.setCookie(w, "", -1)
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

func (a *API) setupNeeded(w http.ResponseWriter, r *http.Request) {
	n, err := a.cfg.Store.UserCount(r.Context())
	if err != nil {
		writeErr(w, http.StatusInternalServerError, "internal", "Store unavailable.")
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"needed": n == 0})
}

// setup creates an owner with the one-time link the server printed on its
// first start; whoever visits first without that link gets nothing.
func (a *API) setup(w http.ResponseWriter, r *http.Request) {
	if !a.limiter.allow(w, "setup:"+remoteIP(r)) {
		return
	}
	var c credentials
	if !readJSON(w, r, &c) {
		return
	}
	if strings.TrimSpace(c.Name) == "" {
		writeErr(w, http.StatusBadRequest, "bad_request", "Choose a user name.")
		return
	}
	hash, err := auth.HashPassword(c.Password)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "weak_password", "The password must be at least 8 characters.")
		return
	}
	if err := a.cfg.Store.TakeSetupToken(r.Context(), c.Token); err != nil {
		writeErr(w, http.StatusForbidden, "bad_setup_token", "This setup link is wrong, used or expired. Run 'rendezvous user add' on the server instead.")
		return
	}
	u, err := a.cfg.Store.AddUser(r.Context(), strings.TrimSpace(c.Name), hash)
	if err != nil {
		writeErr(w, http.StatusConflict, "exists", "That user name is taken.")
		return
	}
	a.log.Info("owner created through the setup link", "user", u.Name)
	a.startSession(w, u)
}

func (a *API) me(w http.ResponseWriter, _ *http.Request, u *store.User) {
	writeJSON(w, http.StatusOK, userJSON{u.Name})
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

func (a *API) devices(w http.ResponseWriter, r *http.Request, u *store.User) {
	devs, err := a.cfg.Store.Devices(r.Context(), u.ID)
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

func (a *API) claim(w http.ResponseWriter, r *http.Request, u *store.User) {
	if !a.limiter.allow(w, "claim:"+remoteIP(r)) || !a.limiter.allow(w, "claim-user:"+u.Name) {
		return
	}
	var body struct {
		Code string `json:"code"`
		Name string `json:"name"`
	}
	if !readJSON(w, r, &body) {
		return
	}
	d, err := a.cfg.Hub.Claim(r.Context(), *u, body.Code, strings.TrimSpace(body.Name))
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

func (a *API) removeDevice(w http.ResponseWriter, r *http.Request, u *store.User) {
	if err := a.cfg.Store.RemoveDevice(r.Context(), r.PathValue("id"), u.ID); err != nil {
		writeErr(w, http.StatusNotFound, "not_found", "No such device on this account.")
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

// mintToken gives an owner a viewer token for a standard WHEP player or a
// script.
func (a *API) mintToken(w http.ResponseWriter, r *http.Request, u *store.User) {
	var body struct {
		Cameras    []string `json:"cameras"`
		TTLSeconds int      `json:"ttl_seconds"`
	}
	if !readJSON(w, r, &body) {
		return
	}
	devID := r.PathValue("id")
	d, err := a.cfg.Store.Device(r.Context(), devID)
	if err != nil || d.OwnerID != u.ID {
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
	tok, err := MintViewerToken(a.cfg.Key, u.ID, devID, body.Cameras, ttl)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, "internal", "Could not sign the token.")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"token":    tok,
		"whep_url": a.cfg.PublicURL + "/whep/" + devID + "/" + body.Cameras[0],
	})
}

// MintViewerToken signs a live-view token for an owner's cameras.
func MintViewerToken(key ed25519.PrivateKey, ownerID int64, devID string, cameras []string, ttl time.Duration) (string, error) {
	c := viewertoken.Claims{Device: devID, Cameras: cameras, Perms: []string{viewertoken.PermLive}}
	c.Subject = "user:" + strconv.FormatInt(ownerID, 10)
	return viewertoken.Sign(key, c, time.Now(), ttl)
}

func (a *API) deviceSocket(w http.ResponseWriter, r *http.Request) {
	// Agents redial with backoff; a source hammering the handshake is not one.
	if !a.limiter.allow(w, "device:"+remoteIP(r)) {
		return
	}
	ws, err := a.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader has answered
	}
	a.cfg.Hub.ServeDevice(context.WithoutCancel(r.Context()), wsconn.New(ws), r.RemoteAddr)
}

func (a *API) viewerSocket(w http.ResponseWriter, r *http.Request) {
	var v hub.Viewer
	if u, _, err := a.ownerFrom(r); err == nil {
		v.Owner = u
	}
	ws, err := a.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	ip := remoteIP(r)
	a.cfg.Hub.ServeViewer(context.WithoutCancel(r.Context()), wsconn.New(ws), v,
		func(tok string) (*viewertoken.Claims, error) { return a.checkToken(ip, tok) }, r.RemoteAddr)
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
	}
	return c, err
}

func (a *API) audit(ctx context.Context, e store.AuditEvent) {
	if err := a.cfg.Store.AddAudit(ctx, e); err != nil {
		a.log.Warn("audit log", "err", err)
	}
}

type auditJSON struct {
	At         time.Time `json:"at"`
	Kind       string    `json:"kind"`
	Actor      string    `json:"actor"`
	Device     string    `json:"device,omitempty"`
	Camera     string    `json:"camera,omitempty"`
	Detail     string    `json:"detail,omitempty"`
	DurationMS int64     `json:"duration_ms,omitempty"`
}

// auditLog returns the owner's own audit log, newest first.
func (a *API) auditLog(w http.ResponseWriter, r *http.Request, u *store.User) {
	events, err := a.cfg.Store.Audit(r.Context(), u.ID, 200)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, "internal", "Store unavailable.")
		return
	}
	out := []auditJSON{}
	for _, e := range events {
		out = append(out, auditJSON{At: e.At.UTC(), Kind: e.Kind, Actor: e.Actor, Device: e.Device, Camera: e.Camera,
			Detail: e.Detail, DurationMS: e.Duration.Milliseconds()})
	}
	writeJSON(w, http.StatusOK, out)
}
