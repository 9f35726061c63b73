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
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/peercam/peercam/internal/viewertoken"
	"github.com/peercam/peercam/internal/wsconn"
	"github.com/peercam/peercam/proto"
	"github.com/peercam/peercam/rendezvous/internal/auth"
	"github.com/peercam/peercam/rendezvous/internal/metrics"
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
	// ErrNotOwner means a share or token was issued under an earlier claim
	// of the device: it was removed, or has a new owner.
	ErrNotOwner = errors.New("issued by someone who no longer owns this device")
	// ErrUnknownToken means a well-signed token whose ID this server has no
	// record of (deleted, or minted before tokens were recorded).
	ErrUnknownToken = errors.New("token not on record")
	// ErrSignedOut means the owner's sign-in session was ended.
	ErrSignedOut = errors.New("signed out")
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
	{ErrRateLimited, proto.CodeRateLimited, "Too many attempts from your network or with this link. Wait a minute and try again."},
	{ErrRevoked, proto.CodeRevoked, "The owner revoked this share. Ask them for a new link."},
	{ErrViewerCap, proto.CodeViewerCap, "Too many people are watching this link right now. Try again later."},
	{ErrNotOwner, proto.CodeRevoked, "This link no longer works: the device was removed or has a new owner. Ask its owner for a new link."},
	{ErrUnknownToken, proto.CodeUnauthorized, "This token is not on record at this server (deleted, or minted by an older version). Ask the owner for a new one."},
	{ErrSignedOut, proto.CodeUnauthorized, "You were signed out. Sign in again."},
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
	// OfferTimeout ends a session that got no offer this long after it
	// opened, so opens cannot hold viewer slots. Default 10 s.
	OfferTimeout time.Duration
	// ResumeGrace is how long a viewer's sessions outlive its socket when
	// the socket drops without a close frame (a network change, a phone
	// asleep, a proxy restart): the page takes them to a new socket
	// meanwhile. A socket closed on purpose ends its sessions at once.
	// Default 10 s.
	ResumeGrace time.Duration
	// Metrics receives the counters; default, a set of the hub's own.
	Metrics *metrics.Metrics
	// UnclaimedTTL is how long a device that never got an owner is kept
	// after it registered. Default 24 h.
	UnclaimedTTL time.Duration
	Logger       *slog.Logger
}

// Hub routes signaling between devices and viewers.
type Hub struct {
	cfg Config
	log *slog.Logger

	mu sync.Mutex // guards devices, sessions, unused and the device fields marked so
	// devices holds connected, authenticated devices by ID.
	devices map[string]*device
	// sessions holds open sessions by ID.
	sessions map[string]*session
	// unused counts sessions that closed without an offer, per audit line,
	// until the next flush writes one line for each.
	unused map[unusedKey]int
	// conns are the open signaling sockets, closed by Close: an HTTP
	// server's shutdown leaves hijacked WebSockets open.
	conns map[*wsconn.Conn]struct{}
	// serving counts the links being served (track) and the goroutines
	// that use the store (goLocked); once Close has begun, the last to end
	// closes drained.
	serving int
	drained chan struct{}
	// closing is set by Close: devices leaving then are not offline, the
	// server is, and their sessions' viewers are not told otherwise.
	closing bool
	// cl links this hub to the other rendezvous nodes; nil for one node.
	cl *cluster
	// auditQ carries session lines to the writer that stores them in
	// batches; auditPending counts those not yet written.
	auditQ       chan store.AuditEvent
	auditPending atomic.Int64
	// auth caches authorize's reads for owners (authcache.go).
	auth authCache
}

type unusedKey struct {
	owner         int64
	actor, device string
}

type device struct {
	id      string
	conn    *wsconn.Conn
	remote  string // the link's address, for its log lines
	cameras []proto.Camera
	// owner and claim are what the device was last told (guarded by
	// Hub.mu); stopClaim ends its claim-code loop while it has an owner.
	owner     int64
	claim     string
	stopClaim context.CancelFunc
	// gen names this connection among the cluster's (empty on one node);
	// since is when it was made, unix ns: of two connections of one device
	// on different nodes, the later one stays. movedAway is set (Hub.mu)
	// when that was another node's.
	gen       string
	since     int64
	movedAway bool
	// rec is the device's store record as its handshake read it, held
	// (while held is set; both guarded by Hub.mu) for authorize until
	// anything says it changed: a Sync, an epoch change (forgetAll).
	rec  store.Device
	held bool
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
	// claim is the device's claim ID when the session opened; the session
	// ends if the device is removed or claimed again.
	claim string
	// who is the identity that opened the session ("token:<jti>" or
	// "user:<id>"); only it may end the session over WHEP.
	who string
	// loginID is the owner's sign-in session; signing out ends this too.
	loginID string
	// offered tells whether the viewer sent an offer; noOffer ends the
	// session if it does not within OfferTimeout.
	offered bool
	noOffer *time.Timer
	// path is how media flows, as the agent reported it.
	path string
	// pin is the device connection the session talks to (clusters only);
	// slot is set when a share's viewer slot is held in the store for it.
	pin  pin
	slot bool
}

// New returns a Hub.
// A rendezvous relays every session's offer and answer: it reads them in
// one pass.
func init() { proto.DecodeOnePass(); proto.EncodeDirect() }

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
	if cfg.ResumeGrace == 0 {
		cfg.ResumeGrace = 10 * time.Second
	}
	if cfg.OfferTimeout == 0 {
		cfg.OfferTimeout = 10 * time.Second
	}
	if cfg.UnclaimedTTL == 0 {
		cfg.UnclaimedTTL = 24 * time.Hour
	}
	if cfg.ICEServers == nil {
		cfg.ICEServers = func() []proto.ICEServer { return nil }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.New(metrics.Live{})
	}
	h := &Hub{cfg: cfg, log: cfg.Logger.With("component", "hub"),
		devices: map[string]*device{}, sessions: map[string]*session{}, unused: map[unusedKey]int{}, conns: map[*wsconn.Conn]struct{}{},
		auditQ: make(chan store.AuditEvent, 8192)}
	go h.auditWriter()
	return h
}

// auditLater queues a session line for the batch writer: two lines per
// viewing session, at thousands of sessions a second, are one INSERT per
// batch rather than one each.
func (h *Hub) auditLater(e store.AuditEvent) {
	if e.OwnerID == 0 {
		return
	}
	h.auditPending.Add(1)
	select {
	case h.auditQ <- e:
	default: // the store is behind: this one on its own
		go func() { defer h.auditPending.Add(-1); h.audit(e) }()
	}
}

// auditWriter writes what is queued, as one batch, as soon as the last
// batch is written: no timer, so an idle server's lines go at once.
func (h *Hub) auditWriter() {
	for e := range h.auditQ {
		batch := []store.AuditEvent{e}
	gather:
		for len(batch) < 500 {
			select {
			case e := <-h.auditQ:
				batch = append(batch, e)
			default:
				break gather
			}
		}
		if err := h.cfg.Store.AddAudits(context.Background(), batch); err != nil {
			h.log.Warn("audit log", "err", err, "lines", len(batch))
		}
		h.auditPending.Add(-int64(len(batch)))
	}
}

func newID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// JoinCluster links the hub to the other rendezvous nodes through nc; node
// names this one among them. Call it before serving.
func (h *Hub) JoinCluster(nc *nats.Conn, node string) error {
	c, err := newCluster(h, nc, node)
	if err != nil {
		return err
	}
	h.cl = c
	return nil
}

// Online tells whether a device is connected, here or, in a cluster, to
// any node.
func (h *Hub) Online(id string) bool {
	_, ok := h.Cameras(id)
	return ok
}

// OnlineHere tells whether a device is connected to this node.
func (h *Hub) OnlineHere(id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.devices[id] != nil
}

// Cameras returns a connected device's cameras.
func (h *Hub) Cameras(id string) ([]proto.Camera, bool) {
	cams, _, ok := h.find(context.Background(), id)
	return cams, ok
}

// find looks a connected device up: here, or in a cluster on its node.
func (h *Hub) find(ctx context.Context, id string) ([]proto.Camera, pin, bool) {
	h.mu.Lock()
	d := h.devices[id]
	var cams []proto.Camera
	var p pin
	if d != nil {
		cams, p = d.cameras, h.pinOf(d)
	}
	h.mu.Unlock()
	if d != nil || h.cl == nil {
		return cams, p, d != nil
	}
	loc, ok := h.cl.locate(ctx, id)
	return loc.cameras, loc.pin, ok
}

func (h *Hub) pinOf(d *device) pin {
	if h.cl == nil {
		return pin{}
	}
	return pin{node: h.cl.node, gen: d.gen, since: d.since}
}

// linkFor is how to reach the device of s: its connection here, or (a
// cluster) the node it is on; neither means it is offline. Hub.mu held.
func (h *Hub) linkForLocked(s *session) (*device, bool) {
	d := h.devices[s.deviceID]
	if d != nil && (h.cl == nil || d.gen == s.pin.gen) {
		return d, true
	}
	return nil, h.cl != nil && s.pin.gen != ""
}

// sendDevice sends m for s through what linkForLocked found.
func (h *Hub) sendDevice(s *session, d *device, remote bool, m proto.Message) error {
	if d != nil {
		return d.conn.Send(m)
	}
	if remote {
		return h.cl.toDevice(s.deviceID, s.pin, s.id, m)
	}
	return ErrDeviceOffline
}

// SessionCount returns the number of open sessions.
func (h *Hub) SessionCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.sessions)
}

// track keeps c among the sockets Close ends, until the returned func.
func (h *Hub) track(c *wsconn.Conn) func() {
	h.mu.Lock()
	h.conns[c] = struct{}{}
	h.serving++
	h.mu.Unlock()
	return func() {
		h.mu.Lock()
		delete(h.conns, c)
		h.doneLocked()
		h.mu.Unlock()
	}
}

// goLocked runs f on a goroutine that Close waits for: work that uses the
// store (a claim-code loop, a slot's release). Hub.mu held.
func (h *Hub) goLocked(f func()) {
	h.serving++
	go func() {
		defer func() {
			h.mu.Lock()
			h.doneLocked()
			h.mu.Unlock()
		}()
		f()
	}()
}

// doneLocked counts off one link or goroutine of serving. Hub.mu held.
func (h *Hub) doneLocked() {
	if h.serving--; h.serving == 0 && h.drained != nil {
		close(h.drained)
		h.drained = nil
	}
}

// Close ends every signaling socket, as a server that stops must: agents
// then redial (another node, or this one restarted) at once. It waits, up
// to 5 s, for the links to finish (a device's last-seen time written) and
// the audit lines to be written, so that nothing touches the store after
// the server has stopped.
func (h *Hub) Close() {
	h.mu.Lock()
	h.closing = true
	conns := make([]*wsconn.Conn, 0, len(h.conns))
	for c := range h.conns {
		conns = append(conns, c)
	}
	var done chan struct{}
	if h.serving > 0 {
		done = make(chan struct{})
		h.drained = done
	}
	h.mu.Unlock()
	for _, c := range conns {
		c.Close(errors.New("the rendezvous is shutting down"))
	}
	deadline := time.After(5 * time.Second)
	if done != nil {
		select {
		case <-done:
		case <-deadline:
			h.log.Warn("some signaling links or store work had not ended 5 s after shutdown began")
			return
		}
	}
	// And the audit lines they queued as they ended.
	for h.auditPending.Load() > 0 {
		select {
		case <-deadline:
			h.log.Warn("audit lines still unwritten 5 s after shutdown began", "lines", h.auditPending.Load())
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// ServeDevice runs one device connection: handshake, then routing, until the
// connection ends. handshook, when set, is called once the handshake is
// over, whatever its outcome (admission control counts handshakes).
//
// Its goroutine spends nearly all its life waiting for the device's next
// message, one per device on the node: the work before and after is in
// functions of their own, so that the frames under that wait stay small
// and its stack can shrink to 4 KiB (see wsconn's idle wait).
func (h *Hub) ServeDevice(ctx context.Context, c *wsconn.Conn, remote string, handshook func()) {
	defer h.track(c)()
	d := h.online(ctx, c, remote, handshook)
	if d == nil {
		return
	}
	h.route(d, c)
	h.offline(d)
}

// logFor is a device's logger, made when a line is written: held for the
// link's life it would be a few hundred bytes for every device online.
func (h *Hub) logFor(d *device) *slog.Logger {
	return h.log.With("remote", d.remote, "device", d.id)
}

// online runs the handshake and makes d the device's link here.
//
//go:noinline
func (h *Hub) online(ctx context.Context, c *wsconn.Conn, remote string, handshook func()) *device {
	log := h.log.With("remote", remote)
	d, err := h.handshake(ctx, c)
	if handshook != nil {
		handshook()
	}
	if err != nil {
		log.Info("device refused", "err", err)
		c.Close(err)
		return nil
	}
	d.remote = remote
	log = log.With("device", d.id)
	d.since = time.Now().UnixNano()
	if h.cl != nil {
		d.gen = h.cl.newGen()
	}
	h.mu.Lock()
	old := h.devices[d.id]
	h.devices[d.id] = d
	h.repinLocked(d.id, h.pinOf(d))
	h.mu.Unlock()
	if old != nil {
		// Only the holder of the key gets here: the old link is stale.
		old.conn.Close(errors.New("replaced by a newer connection"))
	}
	if h.cl != nil {
		if err := h.cl.attach(d); err != nil {
			log.Warn("cluster: could not take the device's subject; viewers on other nodes cannot reach it", "err", err)
		}
	}
	log.Info("device online", "cameras", len(d.cameras))

	h.mu.Lock()
	if d.claim == "" {
		h.startClaimLocked(ctx, d)
	}
	h.mu.Unlock()
	return d
}

// route hands the device's messages on until its link ends.
func (h *Hub) route(d *device, c *wsconn.Conn) {
	for {
		m, err := c.Read()
		if err != nil {
			if !h.badFrame(d, err) {
				return
			}
			continue
		}
		h.fromDevice(d, m)
	}
}

// badFrame tells whether err is a frame refused (the link goes on), and
// counts and logs it.
//
//go:noinline
func (h *Hub) badFrame(d *device, err error) bool {
	var de *wsconn.DecodeError
	if !errors.As(err, &de) {
		return false
	}
	h.refused(de)
	h.logFor(d).Info("bad frame from device", "err", err)
	return true
}

// offline undoes online once the link has ended.
//
//go:noinline
func (h *Hub) offline(d *device) {
	h.mu.Lock()
	if d.stopClaim != nil {
		d.stopClaim()
	}
	if h.devices[d.id] == d {
		delete(h.devices, d.id)
	}
	newerHere, gone := h.devices[d.id] != nil, !d.movedAway && !h.closing
	var orphans []*session
	for id, s := range h.sessions {
		if s.deviceID == d.id && !newerHere && gone && (h.cl == nil || s.pin.gen == d.gen) {
			orphans = append(orphans, s)
			h.forgetLocked(id)
		}
	}
	h.mu.Unlock()
	if h.cl != nil {
		h.cl.detach(d, newerHere, !newerHere && gone)
	}
	for _, s := range orphans {
		s.viewer.deliver(proto.NewError(s.id, proto.CodeDeviceOffline, "the device went offline"))
	}
	_ = h.cfg.Store.TouchDevice(context.Background(), d.id)
	h.logFor(d).Info("device offline")
}

func (h *Hub) handshake(ctx context.Context, c *wsconn.Conn) (*device, error) {
	m, err := c.Read()
	if err != nil {
		return nil, err
	}
	hello, ok := m.(*proto.Hello)
	if !ok {
		h.sendErr(c, proto.NewError("", proto.CodeBadMessage, "expected hello"))
		return nil, errors.New("first message was not hello")
	}
	pub := ed25519.PublicKey(hello.PublicKey)
	if proto.DeviceID(pub) != hello.DeviceID {
		h.sendErr(c, proto.NewError("", proto.CodeAuthFailed, "device_id is not derived from public_key"))
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
		h.sendErr(c, proto.NewError("", proto.CodeBadMessage, "expected auth"))
		return nil, errors.New("second message was not auth")
	}
	if !ed25519.Verify(pub, proto.AuthPayload(nonce, hello.DeviceID), a.Signature) {
		h.sendErr(c, proto.NewError("", proto.CodeAuthFailed, "signature does not verify"))
		return nil, errors.New("bad signature")
	}
	gen := h.auth.gen.Load()
	rec, err := h.cfg.Store.RegisterDevice(ctx, hello.DeviceID, pub, hello.Cameras)
	if errors.Is(err, store.ErrKeyMismatch) {
		h.sendErr(c, proto.NewError("", proto.CodeKeyMismatch, "this device ID is registered with another key"))
		return nil, err
	}
	if err != nil {
		h.sendErr(c, proto.NewError("", proto.CodeInternal, "could not register the device"))
		return nil, err
	}
	if err := c.Send(&proto.Welcome{
		Time:       time.Now().UTC(),
		Claimed:    rec.OwnerID != 0,
		Owner:      rec.OwnerName,
		OwnerID:    rec.OwnerID,
		Claim:      rec.ClaimID,
		ServerKey:  h.cfg.Key.Public().(ed25519.PublicKey),
		ICEServers: h.cfg.ICEServers(),
	}); err != nil {
		return nil, err
	}
	return &device{id: hello.DeviceID, conn: c, cameras: hello.Cameras, owner: rec.OwnerID, claim: rec.ClaimID,
		rec: rec, held: holds(rec) && h.auth.gen.Load() == gen}, nil
}

// startClaimLocked starts the loop that keeps a fresh claim code on an
// unclaimed device's screen. It only waits on timers: claims made elsewhere
// (the admin CLI) reach it through WatchStore, one poll for all devices.
func (h *Hub) startClaimLocked(ctx context.Context, d *device) {
	if d.stopClaim != nil {
		d.stopClaim()
	}
	cctx, stop := context.WithCancel(ctx)
	d.stopClaim = stop
	h.goLocked(func() { h.claimLoop(cctx, d) })
}

func (h *Hub) claimLoop(ctx context.Context, d *device) {
	for {
		code := auth.NewClaimCode()
		expires := time.Now().Add(h.cfg.ClaimTTL)
		if err := h.cfg.Store.PutClaimCode(ctx, d.id, code, expires); err != nil {
			if ctx.Err() == nil {
				h.log.Error("claim code", "device", d.id, "err", err)
			}
			return
		}
		link := h.cfg.PublicURL + "/#claim=" + url.QueryEscape(code)
		if err := d.conn.Send(&proto.ClaimCode{Code: code, Expires: expires.UTC().Truncate(time.Second), URL: link}); err != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(h.cfg.ClaimTTL - h.cfg.ClaimTTL/10):
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
	rec, err := h.cfg.Store.Device(ctx, devID)
	if err != nil {
		return store.Device{}, err
	}
	h.Sync(rec)
	h.log.Info("device claimed", "device", devID, "owner", owner.Name)
	h.audit(store.AuditEvent{OwnerID: owner.ID, Kind: store.AuditClaim, Actor: owner.Name, Device: devID, Detail: name})
	return rec, nil
}

// Sync brings a connected device and its live sessions in line with its
// stored record after a claim or a removal, made here or by the admin CLI:
// sessions opened under another claim end at once (their tokens are void),
// and the device learns its new owner, or that it has none and must show a
// claim code again. In a cluster every node does so.
func (h *Hub) Sync(rec store.Device) {
	h.syncHere(rec)
	if h.cl != nil {
		h.cl.broadcast(envelope{Op: "sync", Device: rec.ID})
	}
}

func (h *Hub) syncHere(rec store.Device) {
	h.forgetDevice(rec.ID)
	ended := h.endWhere(func(s *session) bool { return s.deviceID == rec.ID && s.claim != rec.ClaimID },
		proto.CodeRevoked, "The owner removed this device or it changed hands; this session's access ended.")
	h.mu.Lock()
	d := h.devices[rec.ID]
	changed := d != nil && d.claim != rec.ClaimID
	if changed {
		d.owner, d.claim = rec.OwnerID, rec.ClaimID
		if rec.ClaimID == "" {
			h.startClaimLocked(context.Background(), d)
		} else if d.stopClaim != nil {
			d.stopClaim()
			d.stopClaim = nil
		}
	}
	h.mu.Unlock()
	if !changed {
		return
	}
	if rec.ClaimID == "" {
		_ = d.conn.Send(&proto.Unclaimed{Reason: "removed by its owner"})
		h.log.Info("device released by its owner", "device", rec.ID, "sessions_ended", ended)
		return
	}
	_ = d.conn.Send(&proto.Claimed{Owner: rec.OwnerName, OwnerID: rec.OwnerID, Claim: rec.ClaimID})
}

// Remove unbinds an owner's device, revokes everything issued for it and ends
// its live sessions.
func (h *Hub) Remove(ctx context.Context, owner store.User, devID string) (revoked int, err error) {
	revoked, err = h.cfg.Store.RemoveDevice(ctx, devID, owner.ID)
	if err != nil {
		return 0, err
	}
	if rec, err := h.cfg.Store.Device(ctx, devID); err == nil {
		h.Sync(rec)
	}
	h.audit(store.AuditEvent{OwnerID: owner.ID, Kind: store.AuditRemove, Actor: owner.Name, Device: devID,
		Detail: fmt.Sprintf("%d share(s) and token(s) revoked", revoked)})
	return revoked, nil
}

func (h *Hub) fromDevice(d *device, m proto.Message) {
	h.cfg.Metrics.Messages.WithLabelValues("device").Inc()
	var sid string
	switch m := m.(type) {
	case *proto.Answer:
		sid = m.Session
	case *proto.Candidate:
		sid = m.Session
	case *proto.Bye:
		sid = m.Session
	case *proto.Status:
		sid = m.Session
	case *proto.Path:
		sid = m.Session
	case *proto.Error:
		sid = m.Session
		if sid == "" {
			h.log.Info("device reported an error", "device", d.id, "code", m.Code, "message", m.Message)
			return
		}
	default:
		h.sendErr(d.conn, proto.NewError("", proto.CodeBadMessage, fmt.Sprintf("a device may not send %s now", m.MessageType())))
		return
	}
	if !h.toViewer(d.id, d.gen, sid, m) && h.cl != nil {
		// Not a session of this node's: its viewer is on another.
		h.cl.fromDevice(d, sid, m)
	}
}

// toViewer hands a device's message to the viewer of session sid, if the
// session is here, of that device and (in a cluster) pinned to that
// connection of it: a device may only speak for its own sessions.
func (h *Hub) toViewer(devID, gen, sid string, m proto.Message) bool {
	h.mu.Lock()
	s := h.sessions[sid]
	if s == nil || s.deviceID != devID || (h.cl != nil && s.pin.gen != gen) {
		h.mu.Unlock()
		return false
	}
	switch m := m.(type) {
	case *proto.Path:
		kind := "direct"
		if m.Relayed {
			kind = "relayed"
		}
		s.path = fmt.Sprintf("%s (%s ↔ %s)", kind, m.Local, m.Remote)
		h.mu.Unlock()
		return true
	case *proto.Bye, *proto.Error:
		h.forgetLocked(sid)
	}
	h.mu.Unlock()
	s.viewer.deliver(m)
	return true
}

// involves tells whether this node holds the device or a session of it.
func (h *Hub) involves(devID string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.devices[devID] != nil {
		return true
	}
	for _, s := range h.sessions {
		if s.deviceID == devID {
			return true
		}
	}
	return false
}

// repinLocked points this node's sessions of a device at the connection p,
// the device's newest.
func (h *Hub) repinLocked(devID string, p pin) {
	if h.cl == nil {
		return
	}
	for _, s := range h.sessions {
		if s.deviceID == devID {
			s.pin = p
		}
	}
}

// tookOver is another node saying a device connected there: this node's
// sessions of it talk to that connection now, and a connection of it here
// that is older is stale and dropped.
func (h *Hub) tookOver(devID string, p pin, since int64) {
	h.mu.Lock()
	d := h.devices[devID]
	if d != nil && (d.since > since || (d.since == since && d.gen > p.gen)) {
		h.mu.Unlock()
		return // this one is newer; the other node drops its own
	}
	if d != nil {
		d.movedAway = true
		delete(h.devices, devID)
	}
	h.repinLocked(devID, p)
	h.mu.Unlock()
	if d != nil {
		d.conn.Close(errors.New("the device connected to another rendezvous node"))
	}
}

// deviceGone ends this node's sessions pinned to a device connection that
// went offline (sid empty: all of them; else that one).
func (h *Hub) deviceGone(devID, gen, sid string) {
	h.mu.Lock()
	var ended []*session
	for id, s := range h.sessions {
		if s.deviceID == devID && s.pin.gen == gen && (sid == "" || sid == id) {
			ended = append(ended, s)
			h.forgetLocked(id)
		}
	}
	h.mu.Unlock()
	for _, s := range ended {
		s.viewer.deliver(proto.NewError(s.id, proto.CodeDeviceOffline, "the device went offline"))
	}
}

// Viewer is who is asking to watch: an owner with a sign-in session, or the
// holder of a viewer token. When both are present the token wins: a guest
// link opened in a browser that is also signed in acts as the guest.
type Viewer struct {
	Owner *store.User
	// LoginID is the owner's sign-in session (the session token's jti);
	// it must still be active at every open and resume.
	LoginID  string
	Token    *viewertoken.Claims
	RawToken string
}

// who names the identity of v for binding sessions to it.
func (v Viewer) who() string {
	if v.Token != nil {
		return "token:" + v.Token.ID
	}
	if v.Owner != nil {
		return fmt.Sprintf("user:%d", v.Owner.ID)
	}
	return ""
}

// grant is what authorize found: the device record, the token the agent
// will check, and for tokens their record.
type grant struct {
	rec    store.Device
	token  string
	issued store.Issued
}

// authorize checks v may watch camera on devID now. Ownership is the
// boundary: the device must be claimed, and a token must have been issued
// under its current claim by its current owner and be on record, unrevoked.
func (h *Hub) authorize(ctx context.Context, v Viewer, devID, camera string) (grant, error) {
	if v.Token != nil {
		// Scope first: a token for another device is forbidden whether or
		// not that ID exists.
		if err := v.Token.Allows(devID, camera, viewertoken.PermLive); err != nil {
			return grant{}, fmt.Errorf("%w: %w", ErrForbidden, err)
		}
	}
	// A guest's token is checked against the store itself each time; an
	// owner's open may use a record a moment old (authcache.go).
	var rec store.Device
	var err error
	if v.Token != nil {
		rec, err = h.cfg.Store.Device(ctx, devID)
	} else {
		rec, err = h.deviceRecord(ctx, devID)
	}
	if errors.Is(err, store.ErrNotFound) {
		return grant{}, fmt.Errorf("device %s: %w", devID, ErrNotFound)
	}
	if err != nil {
		return grant{}, err
	}
	switch {
	case v.Token != nil:
		if err := v.Token.IssuedUnder(rec.OwnerID, rec.ClaimID); err != nil {
			return grant{}, fmt.Errorf("%w: %w", ErrNotOwner, err)
		}
		is, err := h.cfg.Store.IssuedByID(ctx, v.Token.ID)
		if errors.Is(err, store.ErrNotFound) {
			return grant{}, ErrUnknownToken
		}
		if err != nil {
			return grant{}, err
		}
		if is.OwnerID != rec.OwnerID || is.DeviceID != devID {
			return grant{}, ErrNotOwner
		}
		if is.Revoked {
			return grant{}, ErrRevoked
		}
		return grant{rec: rec, token: v.RawToken, issued: is}, nil
	case v.Owner != nil:
		if v.LoginID != "" {
			if ok, err := h.loginActive(ctx, v.LoginID, v.Owner.ID); err != nil {
				return grant{}, err
			} else if !ok {
				return grant{}, ErrSignedOut
			}
		}
		if rec.OwnerID == 0 || rec.OwnerID != v.Owner.ID {
			// Same answer as a missing device: IDs are not to be probed.
			return grant{}, fmt.Errorf("device %s: %w", devID, ErrNotFound)
		}
		tok, err := h.ownerToken(v.Owner.ID, rec, camera)
		return grant{rec: rec, token: tok}, err
	}
	return grant{}, ErrUnauthorized
}

// open checks access and registers a session for viewer.
func (h *Hub) open(ctx context.Context, v Viewer, devID, camera, stream string, ep endpoint) (*session, error) {
	return h.openAs(ctx, v, devID, camera, stream, ep, "")
}

// openAs is open; a non-empty adopt is the ID of a live session this hub
// has no record of (it restarted, and the viewer resumes): the record is
// made again under that ID, already offered, so nothing ends it.
func (h *Hub) openAs(ctx context.Context, v Viewer, devID, camera, stream string, ep endpoint, adopt string) (*session, error) {
	g, err := h.authorize(ctx, v, devID, camera)
	if err != nil {
		return nil, err
	}
	// The store just said who owns the device and under which claim; a
	// connected agent that has not heard yet (a claim made by the admin
	// CLI a moment ago) hears it now, before the offer, on the same link.
	h.mu.Lock()
	d := h.devices[devID]
	stale := d != nil && d.claim != g.rec.ClaimID
	h.mu.Unlock()
	if stale {
		h.syncHere(g.rec)
	}
	var tokenID, actor string
	var expires time.Time
	maxViewers := 0
	if v.Owner != nil {
		actor = v.Owner.Name
	}
	if v.Token != nil {
		tokenID = v.Token.ID
		expires = v.Token.ExpiresAt.Time
		actor = "token " + short(tokenID)
		if g.issued.Share {
			// The record, not the token, is the authority on the cap.
			maxViewers = g.issued.MaxViewers
			actor = "guest share " + short(tokenID)
			if g.issued.Label != "" {
				actor = "guest share “" + g.issued.Label + "”"
			}
			_ = h.cfg.Store.TouchShare(ctx, tokenID)
		} else {
			_ = h.cfg.Store.TouchToken(ctx, tokenID)
		}
	}
	cams, where, online := h.find(ctx, devID)
	if !online {
		return nil, fmt.Errorf("device %s: %w", devID, ErrDeviceOffline)
	}
	found := false
	for _, c := range cams {
		found = found || c.ID == camera
	}
	if !found {
		return nil, fmt.Errorf("camera %s: %w", camera, ErrNotFound)
	}
	id := newID()
	if adopt != "" {
		h.mu.Lock()
		taken := h.sessions[adopt] != nil
		h.mu.Unlock()
		if taken {
			return nil, fmt.Errorf("session %s: %w", adopt, ErrNotFound)
		}
		id = adopt
	}
	slot := false
	if maxViewers > 0 && h.cl != nil {
		// Across nodes the store counts a share's viewers.
		ok, err := h.cfg.Store.TakeViewerSlot(ctx, tokenID, id, h.cl.node, maxViewers)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("%w (%d)", ErrViewerCap, maxViewers)
		}
		slot = true
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if maxViewers > 0 && h.cl == nil && h.countLocked(tokenID) >= maxViewers {
		return nil, fmt.Errorf("%w (%d)", ErrViewerCap, maxViewers)
	}
	if stream == "" {
		stream = proto.StreamMain
	}
	if adopt != "" && h.sessions[adopt] != nil {
		// Adopted meanwhile by another open of the same ID: that session
		// holds the slot row (it is keyed by the session), leave it.
		return nil, fmt.Errorf("session %s: %w", adopt, ErrNotFound)
	}
	if d := h.devices[devID]; d != nil {
		where = h.pinOf(d) // it connected here meanwhile
	}
	s := &session{id: id, deviceID: devID, camera: camera, stream: stream, viewer: ep, token: g.token,
		started: time.Now(), tokenID: tokenID, ownerID: g.rec.OwnerID, actor: actor, claim: g.rec.ClaimID,
		who: v.who(), loginID: v.LoginID, pin: where, slot: slot}
	sid := s.id
	if !expires.IsZero() {
		s.expiry = time.AfterFunc(time.Until(expires), func() {
			h.end(sid, proto.CodeExpired, "This share has expired. Ask the owner for a new link.")
		})
	}
	s.noOffer = time.AfterFunc(h.cfg.OfferTimeout, func() {
		h.end(sid, proto.CodeTimeout, "No offer came within "+h.cfg.OfferTimeout.String()+" of opening the session; open it again.")
	})
	if adopt != "" {
		s.offered = true
		s.noOffer.Stop()
	}
	h.sessions[s.id] = s
	if adopt == "" {
		h.cfg.Metrics.SessionsOpened.Inc()
	}
	return s, nil
}

// refused counts a message a socket's reader refused: one over the rate
// limit, or one that did not decode.
func (h *Hub) refused(de *wsconn.DecodeError) {
	if errors.Is(de, wsconn.ErrRateLimited) {
		h.cfg.Metrics.RateLimited.WithLabelValues("signaling").Inc()
		h.cfg.Metrics.Errors.WithLabelValues(string(proto.CodeRateLimited)).Inc()
		return
	}
	h.cfg.Metrics.Errors.WithLabelValues(string(proto.CodeOf(de.Err))).Inc()
}

// sendErr sends an error on a signaling socket, counted.
func (h *Hub) sendErr(c *wsconn.Conn, m *proto.Error) {
	h.cfg.Metrics.Errors.WithLabelValues(string(m.Code)).Inc()
	_ = c.Send(m)
}

// DevicesOnline counts the connected devices.
func (h *Hub) DevicesOnline() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.devices)
}

// Sockets counts the open signaling sockets.
func (h *Hub) Sockets() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.conns)
}

// adoptable tells whether id looks like a session ID this hub would make.
func adoptable(id string) bool {
	if len(id) != 24 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil
}

// offeredLocked marks a session as offered: from now it is a viewing session
// with lines of its own in the audit log.
func (h *Hub) offeredLocked(s *session) {
	if s.offered {
		return
	}
	s.offered = true
	s.noOffer.Stop()
	h.auditLater(store.AuditEvent{OwnerID: s.ownerID, At: s.started, Kind: store.AuditSessionOpen, Actor: s.actor,
		Device: s.deviceID, Camera: s.camera, Detail: s.stream + " stream"})
}

// forgetLocked removes a session, stops its timers and logs its end; a
// session that never got an offer only adds to its actor's aggregated line.
func (h *Hub) forgetLocked(sid string) {
	s := h.sessions[sid]
	if s == nil {
		return
	}
	if s.expiry != nil {
		s.expiry.Stop()
	}
	s.noOffer.Stop()
	delete(h.sessions, sid)
	if s.slot {
		h.goLocked(func() { h.releaseSlot(sid) })
	}
	if !s.offered {
		h.unused[unusedKey{owner: s.ownerID, actor: s.actor, device: s.deviceID}]++
		return
	}
	path := s.path
	if path == "" {
		path = "never connected"
	}
	h.auditLater(store.AuditEvent{OwnerID: s.ownerID, Kind: store.AuditSessionClose, Actor: s.actor,
		Device: s.deviceID, Camera: s.camera, Detail: path, Duration: time.Since(s.started)})
}

// FlushAudit writes the aggregated audit lines now instead of at the next
// minute, and waits for the queued session lines (tests, shutdown, and
// before the owner reads the log).
func (h *Hub) FlushAudit() {
	h.flushUnused()
	h.AuditWritten()
}

// AuditWritten waits (up to 5 s) until the queued session lines are in the
// store, so that a log read now has them.
func (h *Hub) AuditWritten() {
	for deadline := time.Now().Add(5 * time.Second); h.auditPending.Load() > 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
}

// flushUnused writes one audit line per actor for the sessions that closed
// without an offer since the last flush.
func (h *Hub) flushUnused() {
	h.mu.Lock()
	counts := h.unused
	h.unused = map[unusedKey]int{}
	h.mu.Unlock()
	for k, n := range counts {
		h.audit(store.AuditEvent{OwnerID: k.owner, Kind: store.AuditSessionsUnused, Actor: k.actor, Device: k.device,
			Detail: fmt.Sprintf("%d session(s) opened and closed without an offer", n)})
	}
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

// releaseSlot frees a share's viewer slot in the store.
func (h *Hub) releaseSlot(sid string) {
	if err := h.cfg.Store.ReleaseViewerSlot(context.Background(), sid); err != nil {
		h.log.Warn("releasing a viewer slot", "session", sid, "err", err)
	}
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
	var remote bool
	if s != nil {
		h.forgetLocked(sid)
		d, remote = h.linkForLocked(s)
	}
	h.mu.Unlock()
	if s == nil {
		return
	}
	_ = h.sendDevice(s, d, remote, &proto.Bye{Session: sid, Reason: string(code)})
	s.viewer.deliver(proto.NewError(sid, code, msg))
}

// WatchStore keeps the hub in line with the store when another process (the
// admin CLI) changes it: every interval it reads one counter, and only when
// that moved does it look at live sessions (revoked shares and tokens, ended
// sign-ins) and connected devices (claimed or removed). It also flushes the
// aggregated audit lines every minute and deletes devices never claimed
// within UnclaimedTTL. One loop for the whole hub, however many devices.
func (h *Hub) WatchStore(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	last, _ := h.cfg.Store.Epoch(ctx)
	lastFlush, lastExpire, lastRefresh := time.Now(), time.Time{}, time.Now()
	for {
		select {
		case <-ctx.Done():
			h.flushUnused()
			return
		case <-t.C:
		}
		if n, err := h.cfg.Store.Epoch(ctx); err == nil && n != last {
			last = n
			h.recheck(ctx)
		}
		if h.cl != nil && time.Since(lastRefresh) >= slotRefresh {
			lastRefresh = time.Now()
			if err := h.cfg.Store.RefreshViewerSlots(ctx, h.cl.node); err != nil {
				h.log.Warn("refreshing viewer slots", "err", err)
			}
		}
		if time.Since(lastFlush) >= time.Minute {
			lastFlush = time.Now()
			h.flushUnused()
		}
		if time.Since(lastExpire) >= time.Hour {
			lastExpire = time.Now()
			n, err := h.cfg.Store.ExpireUnclaimed(ctx, time.Now().Add(-h.cfg.UnclaimedTTL), h.Online)
			if err != nil {
				h.log.Warn("expiring unclaimed devices", "err", err)
			} else if n > 0 {
				h.log.Info("deleted devices never claimed", "count", n, "older_than", h.cfg.UnclaimedTTL)
			}
		}
	}
}

// recheck compares live sessions and connected devices with the store.
func (h *Hub) recheck(ctx context.Context) {
	h.forgetAll()
	h.mu.Lock()
	tokens, logins := map[string]bool{}, map[string]bool{}
	var devs []string
	for _, s := range h.sessions {
		if s.tokenID != "" {
			tokens[s.tokenID] = true
		}
		if s.loginID != "" {
			logins[s.loginID] = true
		}
	}
	for id := range h.devices {
		devs = append(devs, id)
	}
	h.mu.Unlock()
	if revoked, err := h.cfg.Store.RevokedAmong(ctx, keys(tokens)); err == nil {
		for _, id := range revoked {
			h.revokeTokenHere(id)
		}
	}
	if ended, err := h.cfg.Store.EndedLogins(ctx, keys(logins)); err == nil {
		for _, id := range ended {
			h.endLoginHere(id)
		}
	}
	recs, _ := h.cfg.Store.Owners(ctx, devs)
	for _, rec := range recs {
		h.syncHere(rec)
	}
}

// slotRefresh is how often a node renews the viewer slots its sessions
// hold: three times within their life, so a node that died loses them
// after store.SlotTTL and a live one never does.
const slotRefresh = store.SlotTTL / 3

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// EndLogin ends the live sessions an owner opened with a sign-in session
// that was signed out, on every node; it returns how many ended here.
func (h *Hub) EndLogin(loginID string) int {
	if h.cl != nil {
		h.cl.broadcast(envelope{Op: "endlogin", ID: loginID})
	}
	return h.endLoginHere(loginID)
}

func (h *Hub) endLoginHere(loginID string) int {
	h.forgetLogin(loginID)
	return h.endWhere(func(s *session) bool { return s.loginID == loginID },
		proto.CodeUnauthorized, "You were signed out. Sign in again to watch.")
}

// RevokeToken ends every live session that uses tokenID, at once, on every
// node; it returns how many ended here.
func (h *Hub) RevokeToken(tokenID string) int {
	if h.cl != nil {
		h.cl.broadcast(envelope{Op: "revoke", ID: tokenID})
	}
	return h.revokeTokenHere(tokenID)
}

func (h *Hub) revokeTokenHere(tokenID string) int {
	return h.endWhere(func(s *session) bool { return s.tokenID == tokenID }, proto.CodeRevoked, "The owner revoked this link.")
}

// ShareLimit tells the other nodes that this one spent (or, forget, reset)
// key's budget in the rate limiter name, so that limits hold across the
// cluster; nothing on one node.
func (h *Hub) ShareLimit(name, key string, forget bool) {
	if h.cl != nil {
		h.cl.broadcast(envelope{Op: "limit", ID: name, Key: key, Forget: forget})
	}
}

// FlushShared returns once what ShareLimit announced has reached NATS (at
// most 1 s), so that a refusal answered after spending is counted by the
// other nodes before the client can try one of them; nothing on one node.
func (h *Hub) FlushShared() {
	if h != nil && h.cl != nil {
		_ = h.cl.nc.FlushTimeout(time.Second)
	}
}

// HearShared returns once this node has heard what the other nodes'
// ShareLimit announced and flushed before it was called (at most 1 s), so
// that a guess here is counted against what another node spent a moment
// ago: a round trip through NATS on the subject those come on. Nothing on
// one node.
func (h *Hub) HearShared() {
	if h != nil && h.cl != nil {
		h.cl.barrier(time.Second)
	}
}

// OnSharedLimit sets what hears the other nodes' ShareLimit.
func (h *Hub) OnSharedLimit(f func(name, key string, forget bool)) {
	if h.cl != nil {
		h.cl.limits.Store(&f)
	}
}

// endWhere ends every live session match accepts and returns how many.
func (h *Hub) endWhere(match func(*session) bool, code proto.Code, msg string) int {
	h.mu.Lock()
	var ids []string
	for id, s := range h.sessions {
		if match(s) {
			ids = append(ids, id)
		}
	}
	h.mu.Unlock()
	for _, id := range ids {
		h.end(id, code, msg)
	}
	return len(ids)
}

// toDevice sends m to the device of session sid, if the session belongs to ep.
func (h *Hub) toDevice(ep endpoint, sid string, m proto.Message) error {
	h.mu.Lock()
	s := h.sessions[sid]
	var d *device
	var remote bool
	if s != nil && s.viewer == ep {
		d, remote = h.linkForLocked(s)
		switch m.(type) {
		case *proto.Bye:
			h.forgetLocked(sid)
		case *proto.Offer:
			h.offeredLocked(s)
		}
	}
	h.mu.Unlock()
	if s == nil || s.viewer != ep {
		return fmt.Errorf("session %s: %w", sid, ErrNotFound)
	}
	return h.sendDevice(s, d, remote, m)
}

// close ends a session from the viewer side.
func (h *Hub) close(ep endpoint, sid, reason string) {
	_ = h.toDevice(ep, sid, &proto.Bye{Session: sid, Reason: reason})
}

// ICEServers are the STUN and TURN servers for a new session, with fresh
// TURN credentials.
func (h *Hub) ICEServers() []proto.ICEServer { return h.cfg.ICEServers() }
