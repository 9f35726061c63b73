// Package rvclient keeps the agent's one outbound signaling link to the
// rendezvous: it dials, proves the device key, hands incoming messages to the
// agent, and redials with backoff whenever the link drops.
package rvclient

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/peercam/peercam/device-agent/internal/clock"
	"github.com/peercam/peercam/internal/backoff"
	"github.com/peercam/peercam/internal/wsconn"
	"github.com/peercam/peercam/proto"
)

// ErrRefused means the rendezvous refused the device for good (wrong key);
// retrying cannot help.
var ErrRefused = errors.New("rendezvous refused this device")

// Config configures the client.
type Config struct {
	// URL is the rendezvous base URL, http(s)://host[:port].
	URL      string
	DeviceID string
	Key      ed25519.PrivateKey
	Version  string
	Cameras  []proto.Camera
	// Handle receives every message after the handshake, Welcome included.
	// Calls come from one goroutine; Handle must not block for long.
	Handle func(proto.Message)
	Logger *slog.Logger
	// Roots are the CAs trusted for an https rendezvous; nil means the
	// system's (or the built-in set where the box has none).
	Roots *x509.CertPool
	// Clock is the time certificates are checked at; nil is the system's.
	Clock *clock.Clock
}

// Client is the signaling link.
type Client struct {
	cfg Config
	log *slog.Logger

	mu sync.Mutex // guards conn, notBefore and notAfter
	// conn is the live link, nil between connections.
	conn *wsconn.Conn
	// notBefore and notAfter bound the certificate of the last verified
	// TLS connection; zero over plain http.
	notBefore, notAfter time.Time
}

// CertValidity is the validity window of the certificate the rendezvous
// presented on the current link; ok is false over plain http.
func (c *Client) CertValidity() (notBefore, notAfter time.Time, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.notBefore, c.notAfter, !c.notAfter.IsZero()
}

// New returns a client; Run connects it.
func New(cfg Config) *Client {
	return &Client{cfg: cfg, log: cfg.Logger.With("component", "rendezvous-link")}
}

// WSURL turns the rendezvous base URL into the device socket URL.
func WSURL(base string) (string, error) {
	u, err := url.Parse(strings.TrimRight(base, "/"))
	if err != nil {
		return "", err
	}
	switch u.Scheme {
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	case "ws", "wss":
	default:
		return "", fmt.Errorf("scheme %q: want http or https", u.Scheme)
	}
	u.Path += "/ws/device"
	return u.String(), nil
}

// Send delivers m to the rendezvous if the link is up; signaling for a
// session whose link dropped is lost, and the viewer retries.
func (c *Client) Send(m proto.Message) {
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	if conn == nil {
		return
	}
	if err := conn.Send(m); err != nil {
		c.log.Debug("send", "type", m.MessageType(), "err", err)
	}
}

// Run keeps the link up until ctx ends or the rendezvous refuses the device.
func (c *Client) Run(ctx context.Context) error {
	var down time.Time // when the link was last lost
	attempt := 0
	for {
		start := time.Now()
		err := c.once(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrRefused) {
			return err
		}
		if time.Since(start) > 10*time.Second || down.IsZero() {
			down, attempt = time.Now(), 0 // it had been up: a new outage
		}
		wait := retry.Delay(attempt, time.Since(down))
		var busy *busyError
		if errors.As(err, &busy) {
			// The server said when; the jitter above keeps agents apart.
			wait = max(wait, busy.after+wait/2)
		}
		attempt++
		c.log.Warn("rendezvous link down; redialling", "err", err, "in", wait.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// busyError is a server refusing the link for now with Retry-After (its
// admission control during a reconnect storm).
type busyError struct {
	status string
	after  time.Duration
}

func (e *busyError) Error() string {
	return fmt.Sprintf("the rendezvous is busy (HTTP %s), retry after %s", e.status, e.after)
}

// retry is the redial schedule: at most 2 s for the first two minutes of an
// outage, so an agent is back within 2 s of a restarted server accepting
// connections, then backing off to 30 s for a server that stays away.
var retry = backoff.Policy{Fast: 2 * time.Minute, FastMax: 2 * time.Second, SlowMax: 30 * time.Second}

func (c *Client) once(ctx context.Context) error {
	wsURL, err := WSURL(c.cfg.URL)
	if err != nil {
		return fmt.Errorf("%w: rendezvous URL: %w", ErrRefused, err)
	}
	dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	dialer := *websocket.DefaultDialer
	dialer.TLSClientConfig = &tls.Config{
		MinVersion: tls.VersionTLS12,
		// The standard check runs in verify, at the agent's clock rather than
		// the box's.
		InsecureSkipVerify: true,
		VerifyConnection:   c.verify,
	}
	c.mu.Lock()
	c.notBefore, c.notAfter = time.Time{}, time.Time{}
	c.mu.Unlock()
	ws, resp, err := dialer.DialContext(dctx, wsURL, http.Header{"User-Agent": {"peercam-agent/" + c.cfg.Version}})
	if err != nil {
		if resp != nil {
			if s, e := strconv.Atoi(resp.Header.Get("Retry-After")); e == nil && s > 0 && s <= 300 {
				return &busyError{status: resp.Status, after: time.Duration(s) * time.Second}
			}
			return fmt.Errorf("dial %s: HTTP %s", wsURL, resp.Status)
		}
		return fmt.Errorf("dial %s: %w", wsURL, err)
	}
	conn := wsconn.New(ws)
	defer conn.Close(errors.New("link closed"))
	stop := context.AfterFunc(ctx, func() { conn.Close(ctx.Err()) })
	defer stop()

	pub := c.cfg.Key.Public().(ed25519.PublicKey)
	if err := conn.Send(&proto.Hello{DeviceID: c.cfg.DeviceID, PublicKey: pub, AgentVersion: c.cfg.Version, Cameras: c.cfg.Cameras}); err != nil {
		return err
	}
	m, err := conn.Read()
	if err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	ch, ok := m.(*proto.Challenge)
	if !ok {
		return refusal(m)
	}
	if err := conn.Send(&proto.Auth{Signature: ed25519.Sign(c.cfg.Key, proto.AuthPayload(ch.Nonce, c.cfg.DeviceID))}); err != nil {
		return err
	}
	m, err = conn.Read()
	if err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	if _, ok := m.(*proto.Welcome); !ok {
		return refusal(m)
	}
	c.mu.Lock()
	c.conn = conn
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.conn = nil
		c.mu.Unlock()
	}()
	c.log.Info("connected to rendezvous", "url", c.cfg.URL)
	c.cfg.Handle(m)
	for {
		m, err := conn.Read()
		var de *wsconn.DecodeError
		if errors.As(err, &de) {
			c.log.Warn("bad message from rendezvous", "err", err)
			continue
		}
		if err != nil {
			return err
		}
		c.cfg.Handle(m)
	}
}

// verify is the standard certificate check (chain to a trusted root, host
// name, validity), with one allowance: when the box's clock is plainly wrong
// (before the agent's build) and the rendezvous has not told the time yet, a
// chain that fails only on time is checked at its own issue time instead. A
// recorder whose clock reset at boot can then still reach the one server that
// will tell it the time, and tokens are still checked against the pinned key.
func (c *Client) verify(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("tls: the rendezvous sent no certificate")
	}
	leaf := cs.PeerCertificates[0]
	defer func() {
		c.mu.Lock()
		c.notBefore, c.notAfter = leaf.NotBefore, leaf.NotAfter
		c.mu.Unlock()
	}()
	opts := x509.VerifyOptions{Roots: c.cfg.Roots, DNSName: cs.ServerName, Intermediates: x509.NewCertPool()}
	for _, ic := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(ic)
	}
	opts.CurrentTime = time.Now()
	if c.cfg.Clock != nil {
		opts.CurrentTime = c.cfg.Clock.Now()
	}
	_, err := leaf.Verify(opts)
	var inv x509.CertificateInvalidError
	if err == nil || !errors.As(err, &inv) || inv.Reason != x509.Expired {
		return err
	}
	if c.cfg.Clock == nil || !c.cfg.Clock.Implausible() {
		return fmt.Errorf("%w (this box's clock says %s; if that is wrong, set it or enable NTP)",
			err, opts.CurrentTime.UTC().Format(time.RFC3339))
	}
	// The latest issue time in the chain: every certificate was valid then.
	at := leaf.NotBefore
	for _, ic := range cs.PeerCertificates[1:] {
		if ic.NotBefore.After(at) {
			at = ic.NotBefore
		}
	}
	opts.CurrentTime = at.Add(time.Second)
	if _, err2 := leaf.Verify(opts); err2 != nil {
		return err
	}
	c.log.Warn("this box's clock is before the agent was built; accepting the rendezvous certificate as of its issue time until the rendezvous tells the time",
		"box_clock", c.cfg.Clock.System().UTC().Format(time.RFC3339))
	return nil
}

func refusal(m proto.Message) error {
	if e, ok := m.(*proto.Error); ok {
		if e.Code == proto.CodeKeyMismatch || e.Code == proto.CodeAuthFailed {
			return fmt.Errorf("%w: %s: %s", ErrRefused, e.Code, e.Message)
		}
		return fmt.Errorf("handshake: %s: %s", e.Code, e.Message)
	}
	return fmt.Errorf("handshake: unexpected %s", m.MessageType())
}
