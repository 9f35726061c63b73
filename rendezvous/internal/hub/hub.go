// Package hub is the rendezvous's signaling switchboard. It authenticates
// devices by their keys, hands unclaimed devices their claim codes, decides
// whether a viewer may see a camera, and relays offers, answers, candidates and
// byes between the two ends of each session. It never touches media.
package hub

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"time"

	"github.com/peercam/peercam/internal/viewertoken"
	"github.com/peercam/peercam/internal/wsconn"
	"github.com/peercam/peercam/proto"
	"github.com/peercam/peercam/rendezvous/internal/auth"
	"github.com/peercam/peercam/rendezvous/internal/store"
)

var (
	// ErrDeviceOffline means the device has no signaling connection.
	ErrDeviceOffline = errors.New("device is offline")
	// ErrNotFound means no such device, camera or session for this viewer.
	ErrNotFound = errors.New("not found")
	// ErrForbidden means the viewer's credentials do not cover the camera.
	ErrForbidden = errors.New("not allowed to view this camera")
	// ErrUnauthorized means the viewer brought no valid credentials.
	ErrUnauthorized = errors.New("sign in or use a valid viewer token")
	// ErrTimeout means the device did not answer in time.
	ErrTimeout = errors.New("the device did not answer in time")
	// ErrBadClaimCode means the code is unknown, used or expired.
	ErrBadClaimCode = errors.New("claim code is wrong, used or expired")
	// ErrRevoked means the share behind a token was revoked.
	ErrRevoked = errors.New("this share was revoked")
	// ErrRateLimited means too many failed attempts from one place.
	ErrRateLimited = errors.New("too many attempts")
	// ErrViewerCap means the share's concurrent viewer cap is reached.
	ErrViewerCap = errors.New("this share's viewer limit is reached")
)

// wireErrors gives each hub error its wire code and the sentence a person
// reads; CodeOf and Sentence both read it, so the two cannot drift apart.
var wireErrors = []struct {
	err  error
	code proto.Code
	say  string
}{
	{ErrDeviceOffline, proto.CodeDeviceOffline, "The device is offline. Check that the recorder is powered and on the internet."},
	{ErrNotFound, proto.CodeNotFound, "No such device or camera on this account."},
	{ErrForbidden, proto.CodeForbidden, "Your access does not include this camera."},
	{ErrUnauthorized, proto.CodeUnauthorized, "Sign in again, or ask the owner for a new link."},
	{ErrTimeout, proto.CodeTimeout, "The device did not answer in time. Try again."},
	{ErrRateLimited, proto.CodeRateLimited, "Too many failed attempts from your network. Wait a minute and try again."},
	{ErrRevoked, proto.CodeRevoked, "The owner revoked this share. Ask them for a new link."},
	{ErrViewerCap, proto.CodeViewerCap, "Too many people are watching this link right now. Try again later."},
}

// CodeOf maps a hub error to its wire code.
func CodeOf(err error) proto.Code {
	var pe *PeerError
	if errors.As(err, &pe) {
		return pe.Code
	}
	for _, w := range wireErrors {
		if errors.Is(err, w.err) {
			return w.code
		}
	}
	return proto.CodeInternal
}

// Sentence is the message a person sees for a hub error.
func Sentence(err error) string {
	var pe *PeerError
	if errors.As(err, &pe) {
		return pe.Message
	}
	for _, w := range wireErrors {
		if errors.Is(err, w.err) {
			return w.say
		}
	}
	return "Something went wrong on the server."
}

// PeerError is an error message the device sent about a session.
type PeerError struct {
	Code    proto.Code
	Message string
}

func (e *PeerError) Error() string { return e.Message }

// Config configures a Hub.
type Config struct {
	Store *store.Store
	Key   ed25519.PrivateKey
	// ICEServers returns the STUN/TURN servers handed to both sides of a
	// session.
	ICEServers func() []proto.ICEServer
	// PublicURL is where people reach the web app; claim links point there.
	PublicURL string
	// ClaimTTL is how long a claim code is valid. Default 10 minutes.
	ClaimTTL time.Duration
	// AgentTokenTTL is the lifetime of the token minted for an owner's session
	// and passed to the agent, which ends the session when it expires. Default
	// 12 hours, an owner login's lifetime.
	AgentTokenTTL time.Duration
	// AnswerTimeout bounds the wait for a device's answer. Default 15 s.
	AnswerTimeout time.Duration
	Logger        *slog.Logger
}

// Hub routes signaling between devices and viewers.
type Hub struct {
	cfg Config
	log *slog.Logger

	mu sync.Mutex // guards devices and sessions
	// devices holds connected, authenticated devices by ID.
	devices map[string]*device
	// sessions holds open sessions by ID.
	sessions map[string]*session
}

type device struct {
	id      string
	conn    *wsconn.Conn
	cameras []proto.Camera
	// claimed is closed, once through claimOnce, when the device gets an
	// owner while connected.
	claimed   chan struct{}
	claimOnce sync.Once
}

// endpoint is the viewer end of a session: a WebSocket viewer or a WHEP
// request waiting for its answer.
type endpoint interface {
	deliver(proto.Message)
}

type session struct {
	id       string
	deviceID string
	camera   string
	stream   string
	viewer   endpoint
	// token is what the agent receives to check the viewer's right.
	token   string
	started time.Time
	// tokenID is the jti of the viewer's token (a share's ID); empty for
	// owners.
	tokenID string
	// expiry ends the session when the viewer's token expires.
	expiry *time.Timer
	// ownerID and actor are for the audit log: whose device, who watched.
	ownerID int64
	actor   string
	// path is how media flows, as the agent reported it.
	path string
}

// New returns a Hub.
func New(cfg Config) *Hub {
	if cfg.ClaimTTL == 0 {
		cfg.ClaimTTL = 10 * time.Minute
	}
	if cfg.AgentTokenTTL == 0 {
		cfg.AgentTokenTTL = 12 * time.Hour
	}
	if cfg.AnswerTimeout == 0 {
		cfg.AnswerTimeout = 15 * time.Second
	}
	if cfg.ICEServers == nil {
		cfg.ICEServers = func() []proto.ICEServer { return nil }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Hub{cfg: cfg, log: cfg.Logger.With("component", "hub"),
		devices: map[string]*device{}, sessions: map[string]*session{}}
}

func newID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Online tells whether a device is connected.
func (h *Hub) Online(id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.devices[id] != nil
}

// Cameras returns a connected device's cameras.
func (h *Hub) Cameras(id string) ([]proto.Camera, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	d := h.devices[id]
	if d == nil {
		return nil, false
	}
	return d.cameras, true
}

// SessionCount returns the number of open sessions.
func (h *Hub) SessionCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.sessions)
}

// ServeDevice runs one device connection: handshake, then routing, until the
// connection ends.
func (h *Hub) ServeDevice(ctx context.Context, c *wsconn.Conn, remote string) {
	log := h.log.With("remote", remote)
	d, err := h.handshake(ctx, c)
	if err != nil {
		log.Info("device refused", "err", err)
		c.Close(err)
		return
	}
	log = log.With("device", d.id)
	h.mu.Lock()
	old := h.devices[d.id]
	h.devices[d.id] = d
	h.mu.Unlock()
	if old != nil {
		// Only the holder of the key gets here: the old link is stale.
		old.conn.Close(errors.New("replaced by a newer connection"))
	}
	log.Info("device online", "cameras", len(d.cameras))

	claimCtx, stopClaim := context.WithCancel(ctx)
	defer stopClaim()
	rec, err := h.cfg.Store.Device(ctx, d.id)
	if err == nil && rec.OwnerID == 0 {
		go h.claimLoop(claimCtx, d)
	}

	for {
		m, err := c.Read()
		var de *wsconn.DecodeError
		if errors.As(err, &de) {
			log.Info("bad frame from device", "err", err)
			continue
		}
		if err != nil {
			break
		}
		h.fromDevice(d, m)
	}

	h.mu.Lock()
	if h.devices[d.id] == d {
		delete(h.devices, d.id)
	}
	var orphans []*session
	for id, s := range h.sessions {
		if s.deviceID == d.id && h.devices[d.id] == nil {
			orphans = append(orphans, s)
			h.forgetLocked(id)
		}
	}
	h.mu.Unlock()
	for _, s := range orphans {
		s.viewer.deliver(proto.NewError(s.id, proto.CodeDeviceOffline, "the device went offline"))
	}
	_ = h.cfg.Store.TouchDevice(context.Background(), d.id)
	log.Info("device offline")
}

func (h *Hub) handshake(ctx context.Context, c *wsconn.Conn) (*device, error) {
	m, err := c.Read()
	if err != nil {
		return nil, err
	}
	hello, ok := m.(*proto.Hello)
	if !ok {
		c.SendError("", proto.CodeBadMessage, "expected hello")
		return nil, errors.New("first message was not hello")
	}
	pub := ed25519.PublicKey(hello.PublicKey)
	if proto.DeviceID(pub) != hello.DeviceID {
		c.SendError("", proto.CodeAuthFailed, "device_id is not derived from public_key")
		return nil, errors.New("device_id does not match key")
	}
	nonce := make([]byte, 32)
	_, _ = rand.Read(nonce)
	if err := c.Send(&proto.Challenge{Nonce: nonce}); err != nil {
		return nil, err
	}
	m, err = c.Read()
	if err != nil {
		return nil, err
	}
	a, ok := m.(*proto.Auth)
	if !ok {
		c.SendError("", proto.CodeBadMessage, "expected auth")
		return nil, errors.New("second message was not auth")
	}
	if !ed25519.Verify(pub, proto.AuthPayload(nonce, hello.DeviceID), a.Signature) {
		c.SendError("", proto.CodeAuthFailed, "signature does not verify")
		return nil, errors.New("bad signature")
	}
	rec, err := h.cfg.Store.RegisterDevice(ctx, hello.DeviceID, pub, hello.Cameras)
	if errors.Is(err, store.ErrKeyMismatch) {
		c.SendError("", proto.CodeKeyMismatch, "this device ID is registered with another key")
		return nil, err
	}
	if err != nil {
		c.SendError("", proto.CodeInternal, "could not register the device")
		return nil, err
	}
	if err := c.Send(&proto.Welcome{
		Time:       time.Now().UTC(),
		Claimed:    rec.OwnerID != 0,
		Owner:      rec.OwnerName,
		ServerKey:  h.cfg.Key.Public().(ed25519.PublicKey),
		ICEServers: h.cfg.ICEServers(),
	}); err != nil {
		return nil, err
	}
	return &device{id: hello.DeviceID, conn: c, cameras: hello.Cameras, claimed: make(chan struct{})}, nil
}

// claimLoop keeps a fresh claim code on an unclaimed device's screen, and
// notices a claim made outside this process (the admin CLI) by looking at the
// store now and then.
func (h *Hub) claimLoop(ctx context.Context, d *device) {
	poll := time.NewTicker(2 * time.Second)
	defer poll.Stop()
	var renew <-chan time.Time
	for {
		if renew == nil {
			code := auth.NewClaimCode()
			expires := time.Now().Add(h.cfg.ClaimTTL)
			if err := h.cfg.Store.PutClaimCode(ctx, d.id, code, expires); err != nil {
				h.log.Error("claim code", "device", d.id, "err", err)
				return
			}
			link := h.cfg.PublicURL + "/#claim=" + url.QueryEscape(code)
			if err := d.conn.Send(&proto.ClaimCode{Code: code, Expires: expires.UTC().Truncate(time.Second), URL: link}); err != nil {
				return
			}
			renew = time.After(h.cfg.ClaimTTL - h.cfg.ClaimTTL/10)
		}
		select {
		case <-ctx.Done():
			return
		case <-d.claimed:
			return
		case <-poll.C:
			if rec, err := h.cfg.Store.Device(ctx, d.id); err == nil && rec.OwnerID != 0 {
				h.NotifyClaimed(d.id, rec.OwnerName)
			}
		case <-renew:
			renew = nil
		}
	}
}

// Claim binds the device whose code this is to the owner.
func (h *Hub) Claim(ctx context.Context, owner store.User, code, name string) (store.Device, error) {
	devID, err := h.cfg.Store.TakeClaimCode(ctx, auth.NormalizeClaimCode(code))
	if errors.Is(err, store.ErrNotFound) {
		return store.Device{}, ErrBadClaimCode
	}
	if err != nil {
		return store.Device{}, err
	}
	if err := h.cfg.Store.ClaimDevice(ctx, devID, owner.ID, name); err != nil {
		return store.Device{}, err
	}
	h.NotifyClaimed(devID, owner.Name)
	h.log.Info("device claimed", "device", devID, "owner", owner.Name)
	h.audit(store.AuditEvent{OwnerID: owner.ID, Kind: store.AuditClaim, Actor: owner.Name, Device: devID, Detail: name})
	return h.cfg.Store.Device(ctx, devID)
}

// NotifyClaimed tells a connected device that it has an owner now.
func (h *Hub) NotifyClaimed(devID, owner string) {
	h.mu.Lock()
	d := h.devices[devID]
	h.mu.Unlock()
	if d != nil {
		d.claimOnce.Do(func() {
			close(d.claimed)
			_ = d.conn.Send(&proto.Claimed{Owner: owner})
		})
	}
}

func (h *Hub) fromDevice(d *device, m proto.Message) {
	var sid string
	switch m := m.(type) {
	case *proto.Answer:
		sid = m.Session
	case *proto.Candidate:
		sid = m.Session
	case *proto.Bye:
		sid = m.Session
	case *proto.Path:
		h.mu.Lock()
		if s := h.sessions[m.Session]; s != nil && s.deviceID == d.id {
			kind := "direct"
			if m.Relayed {
				kind = "relayed"
			}
			s.path = fmt.Sprintf("%s (%s ↔ %s)", kind, m.Local, m.Remote)
		}
		h.mu.Unlock()
		return
	case *proto.Error:
		sid = m.Session
		if sid == "" {
			h.log.Info("device reported an error", "device", d.id, "code", m.Code, "message", m.Message)
			return
		}
	default:
		d.conn.SendError("", proto.CodeBadMessage, fmt.Sprintf("a device may not send %s now", m.MessageType()))
		return
	}
	h.mu.Lock()
	s := h.sessions[sid]
	if s != nil && s.deviceID != d.id {
		s = nil // a device may only speak for its own sessions
	}
	if s != nil {
		switch m.(type) {
		case *proto.Bye, *proto.Error:
			h.forgetLocked(sid)
		}
	}
	h.mu.Unlock()
	if s == nil {
		return // the viewer already left; nothing to tell
	}
	s.viewer.deliver(m)
}

// Viewer is who is asking to watch: an owner with a session, or the holder of
// a viewer token.
type Viewer struct {
	Owner    *store.User
	Token    *viewertoken.Claims
	RawToken string
}

// authorize checks v may watch camera on devID and returns the token the agent
// will check.
func (h *Hub) authorize(ctx context.Context, v Viewer, devID, camera string) (string, error) {
	rec, err := h.cfg.Store.Device(ctx, devID)
	if errors.Is(err, store.ErrNotFound) {
		return "", fmt.Errorf("device %s: %w", devID, ErrNotFound)
	}
	if err != nil {
		return "", err
	}
	switch {
	case v.Token != nil:
		if err := v.Token.Allows(devID, camera, viewertoken.PermLive); err != nil {
			return "", fmt.Errorf("%w: %w", ErrForbidden, err)
		}
		return v.RawToken, nil
	case v.Owner != nil:
		if rec.OwnerID != v.Owner.ID {
			// Same answer as a missing device: IDs are not to be probed.
			return "", fmt.Errorf("device %s: %w", devID, ErrNotFound)
		}
		c := viewertoken.Claims{Device: devID, Cameras: []string{camera}, Perms: []string{viewertoken.PermLive}}
		c.Subject = fmt.Sprintf("user:%d", v.Owner.ID)
		return viewertoken.Sign(h.cfg.Key, c, time.Now(), h.cfg.AgentTokenTTL)
	}
	return "", ErrUnauthorized
}

// open checks access and registers a session for viewer.
func (h *Hub) open(ctx context.Context, v Viewer, devID, camera, stream string, ep endpoint) (*session, error) {
	token, err := h.authorize(ctx, v, devID, camera)
	if err != nil {
		return nil, err
	}
	var tokenID, actor string
	var expires time.Time
	maxViewers := 0
	if v.Owner != nil {
		actor = v.Owner.Name
	}
	if v.Token != nil {
		tokenID, maxViewers = v.Token.ID, v.Token.MaxViewers
		expires = v.Token.ExpiresAt.Time
		actor = "token " + short(tokenID)
		sh, err := h.cfg.Store.Share(ctx, tokenID)
		switch {
		case err == nil && !sh.Revoked.IsZero():
			return nil, ErrRevoked
		case err == nil:
			// The record, not the token, is the authority on the cap.
			maxViewers = sh.MaxViewers
			actor = "guest share " + short(tokenID)
			if sh.Label != "" {
				actor = "guest share “" + sh.Label + "”"
			}
			_ = h.cfg.Store.TouchShare(ctx, tokenID)
		}
	}
	rec, _ := h.cfg.Store.Device(ctx, devID)
	h.mu.Lock()
	defer h.mu.Unlock()
	d := h.devices[devID]
	if d == nil {
		return nil, fmt.Errorf("device %s: %w", devID, ErrDeviceOffline)
	}
	found := false
	for _, c := range d.cameras {
		found = found || c.ID == camera
	}
	if !found {
		return nil, fmt.Errorf("camera %s: %w", camera, ErrNotFound)
	}
	if maxViewers > 0 && h.countLocked(tokenID) >= maxViewers {
		return nil, fmt.Errorf("%w (%d)", ErrViewerCap, maxViewers)
	}
	if stream == "" {
		stream = proto.StreamMain
	}
	s := &session{id: newID(), deviceID: devID, camera: camera, stream: stream, viewer: ep, token: token,
		started: time.Now(), tokenID: tokenID, ownerID: rec.OwnerID, actor: actor}
	go h.audit(store.AuditEvent{OwnerID: s.ownerID, At: s.started, Kind: store.AuditSessionOpen, Actor: actor,
		Device: devID, Camera: camera, Detail: stream + " stream"})
	if !expires.IsZero() {
		sid := s.id
		s.expiry = time.AfterFunc(time.Until(expires), func() {
			h.end(sid, proto.CodeExpired, "This share has expired. Ask the owner for a new link.")
		})
	}
	h.sessions[s.id] = s
	return s, nil
}

// forgetLocked removes a session, stops its expiry timer and logs its end.
func (h *Hub) forgetLocked(sid string) {
	s := h.sessions[sid]
	if s == nil {
		return
	}
	if s.expiry != nil {
		s.expiry.Stop()
	}
	delete(h.sessions, sid)
	path := s.path
	if path == "" {
		path = "never connected"
	}
	go h.audit(store.AuditEvent{OwnerID: s.ownerID, Kind: store.AuditSessionClose, Actor: s.actor,
		Device: s.deviceID, Camera: s.camera, Detail: path, Duration: time.Since(s.started)})
}

func (h *Hub) audit(e store.AuditEvent) {
	if e.OwnerID == 0 {
		return
	}
	if err := h.cfg.Store.AddAudit(context.Background(), e); err != nil {
		h.log.Warn("audit log", "err", err)
	}
}

func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

func (h *Hub) countLocked(tokenID string) int {
	n := 0
	for _, s := range h.sessions {
		if s.tokenID == tokenID {
			n++
		}
	}
	return n
}

// ViewersOf returns how many sessions use a token ID now.
func (h *Hub) ViewersOf(tokenID string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.countLocked(tokenID)
}

// end stops a session from the hub's side: the agent gets a bye and closes
// the peer connection, the viewer gets the reason.
func (h *Hub) end(sid string, code proto.Code, msg string) {
	h.mu.Lock()
	s := h.sessions[sid]
	var d *device
	if s != nil {
		h.forgetLocked(sid)
		d = h.devices[s.deviceID]
	}
	h.mu.Unlock()
	if s == nil {
		return
	}
	if d != nil {
		_ = d.conn.Send(&proto.Bye{Session: sid, Reason: string(code)})
	}
	s.viewer.deliver(proto.NewError(sid, code, msg))
}

// WatchRevocations ends live sessions whose share was revoked outside this
// process (the admin CLI), checking the store every interval until ctx ends.
func (h *Hub) WatchRevocations(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		h.mu.Lock()
		ids := map[string]bool{}
		for _, s := range h.sessions {
			if s.tokenID != "" {
				ids[s.tokenID] = true
			}
		}
		h.mu.Unlock()
		for id := range ids {
			if sh, err := h.cfg.Store.Share(ctx, id); err == nil && !sh.Revoked.IsZero() {
				h.RevokeToken(id)
			}
		}
	}
}

// RevokeToken ends every live session that uses tokenID, at once.
func (h *Hub) RevokeToken(tokenID string) int {
	h.mu.Lock()
	var ids []string
	for id, s := range h.sessions {
		if s.tokenID == tokenID {
			ids = append(ids, id)
		}
	}
	h.mu.Unlock()
	for _, id := range ids {
		h.end(id, proto.CodeRevoked, "The owner revoked this share.")
	}
	return len(ids)
}

// toDevice sends m to the device of session sid, if the session belongs to ep.
func (h *Hub) toDevice(ep endpoint, sid string, m proto.Message) error {
	h.mu.Lock()
	s := h.sessions[sid]
	var d *device
	if s != nil && s.viewer == ep {
		d = h.devices[s.deviceID]
	}
	if _, bye := m.(*proto.Bye); bye && s != nil && s.viewer == ep {
		h.forgetLocked(sid)
	}
	h.mu.Unlock()
	if s == nil || s.viewer != ep {
		return fmt.Errorf("session %s: %w", sid, ErrNotFound)
	}
	if d == nil {
		return ErrDeviceOffline
	}
	return d.conn.Send(m)
}

// close ends a session from the viewer side.
func (h *Hub) close(ep endpoint, sid, reason string) {
	_ = h.toDevice(ep, sid, &proto.Bye{Session: sid, Reason: reason})
}

// ICEServers are the STUN and TURN servers for a new session, with fresh
// TURN credentials.
func (h *Hub) ICEServers() []proto.ICEServer { return h.cfg.ICEServers() }
