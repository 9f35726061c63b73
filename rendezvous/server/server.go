// Package server assembles the rendezvous: store, signing key, STUN, the hub
// and the HTTP API, from one Config.
package server

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/peercam/peercam/internal/redact"
	"github.com/peercam/peercam/internal/wsconn"
	"github.com/peercam/peercam/proto"
	"github.com/peercam/peercam/rendezvous/internal/api"
	"github.com/peercam/peercam/rendezvous/internal/auth"
	"github.com/peercam/peercam/rendezvous/internal/hub"
	"github.com/peercam/peercam/rendezvous/internal/metrics"
	"github.com/peercam/peercam/rendezvous/internal/store"
	"github.com/peercam/peercam/rendezvous/internal/stun"
	"github.com/peercam/peercam/rendezvous/internal/turnrest"
	viewerweb "github.com/peercam/peercam/viewer-web"
)

// Config configures the rendezvous. Zero fields take the defaults listed.
type Config struct {
	// DataDir holds the SQLite database. Default "rendezvous-data".
	DataDir string
	// Store, when set, is a PostgreSQL URL (postgres://…) used instead of
	// SQLite: several nodes share it.
	Store string
	// NATS, when set, joins this node to a cluster of rendezvous nodes
	// that route signaling to each other through that NATS server
	// (nats://host:4222, comma-separated for several); it needs Store.
	NATS string
	// Node names this node in the cluster. Default: random.
	Node string
	// HTTPAddr is the HTTP(S) listen address. Default 127.0.0.1:8080.
	HTTPAddr string
	// TLSCert and TLSKey switch HTTP to HTTPS when both are set.
	TLSCert, TLSKey string
	// STUNAddr is the UDP address of the built-in STUN server. Default
	// 127.0.0.1:3478; "off" disables it.
	STUNAddr string
	// PublicURL is how people and agents reach this server, for links.
	// Default http(s)://HTTPAddr.
	PublicURL string
	// STUNURL is the STUN URL handed to peers. Default stun:STUNAddr.
	STUNURL string
	// ICEServers are extra STUN/TURN servers handed to peers.
	ICEServers []proto.ICEServer
	// TURNURLs are relays (turn:host:port?transport=udp) sharing TURNSecret
	// with this server, coturn's use-auth-secret: each session gets its own
	// credentials, valid for TURNTTL. Media relayed there never touches the
	// rendezvous.
	TURNURLs   []string
	TURNSecret string
	// TURNTTL bounds a relayed session's life: relays refuse to refresh an
	// allocation with expired credentials. Default 12h.
	TURNTTL time.Duration
	// TrustedProxies are reverse proxies (CIDRs) whose X-Forwarded-For
	// names the real client, for rate limits and logs.
	TrustedProxies []netip.Prefix
	// MaxConnsPerAddr caps concurrent WebSocket connections per client
	// address (per /64 for IPv6), viewers and devices each. Default 32.
	MaxConnsPerAddr int
	// OpenBurst is how many sessions one address or token may open in a
	// burst before it is held to one a second. Default 20.
	OpenBurst int
	// MaxHandshakes bounds device handshakes in progress (a reconnect
	// storm); more are told to retry in 1-3 s. Default 256.
	MaxHandshakes int
	// ViewerMsgs and DeviceMsgs bound what one viewer or device socket may
	// send: largest message and messages per second after a burst. Zero
	// fields: 64 KiB, viewers 50/s after 400, devices 500/s after 2000.
	ViewerMsgs, DeviceMsgs wsconn.Limits
	// MetricsAddr, when set, serves Prometheus metrics at /metrics on this
	// address (plain HTTP; keep it on loopback or a private network).
	// MetricsListener is used instead when set (tests).
	MetricsAddr     string
	MetricsListener net.Listener
	// ResumeGrace is how long a viewer's sessions outlive its socket when
	// the socket drops without a close (a network change, a sleeping
	// phone), for the page to take them to a new one. Default 10 s.
	ResumeGrace time.Duration
	// OfferTimeout ends a viewer session that sends no offer this long
	// after opening it. Default 10 s.
	OfferTimeout time.Duration
	// Logger receives logs. Default slog.Default().
	Logger *slog.Logger

	// HTTPListener and STUNConn, when set, are used instead of listening on
	// HTTPAddr and STUNAddr (tests, socket activation).
	HTTPListener net.Listener
	STUNConn     net.PacketConn
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{DataDir: "rendezvous-data", HTTPAddr: "127.0.0.1:8080", STUNAddr: "127.0.0.1:3478"}
}

// StoreAt names the store: the PostgreSQL URL, or the data directory.
func (c Config) StoreAt() string {
	if c.Store != "" {
		return c.Store
	}
	return c.DataDir
}

// Validate checks the config and names the field at fault.
func (c Config) Validate() error {
	if c.NATS != "" && c.Store == "" {
		return errors.New("rendezvous: nats: several nodes need one shared database; give -store postgres://… too")
	}
	if c.Store != "" && !store.IsURL(c.Store) {
		return fmt.Errorf("rendezvous: store: %q is not a postgres:// URL (leave it empty for SQLite in -data)", redact.URL(c.Store))
	}
	if c.DataDir == "" {
		return errors.New("rendezvous: data: missing directory")
	}
	if c.HTTPListener == nil {
		if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
			return fmt.Errorf("rendezvous: http: %w", err)
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("rendezvous: tls-cert and tls-key: give both or neither")
	}
	if c.STUNConn == nil && c.STUNAddr != "off" && c.STUNAddr != "" {
		if _, _, err := net.SplitHostPort(c.STUNAddr); err != nil {
			return fmt.Errorf("rendezvous: stun: %w", err)
		}
	}
	if c.PublicURL != "" {
		u, err := url.Parse(c.PublicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("rendezvous: public-url: %q is not an http(s) URL", c.PublicURL)
		}
	}
	if (len(c.TURNURLs) == 0) != (c.TURNSecret == "") {
		return errors.New("rendezvous: turn-url and turn-secret: give both or neither")
	}
	for _, u := range c.TURNURLs {
		if !strings.HasPrefix(u, "turn:") && !strings.HasPrefix(u, "turns:") {
			return fmt.Errorf("rendezvous: turn-url: %q must start with turn: or turns:", u)
		}
	}
	for i, s := range c.ICEServers {
		if len(s.URLs) == 0 {
			return fmt.Errorf("rendezvous: ice-servers[%d]: no URL", i)
		}
		for _, u := range s.URLs {
			if !strings.HasPrefix(u, "stun:") && !strings.HasPrefix(u, "turn:") && !strings.HasPrefix(u, "turns:") {
				return fmt.Errorf("rendezvous: ice-servers[%d]: %q must start with stun:, turn: or turns:", i, u)
			}
		}
	}
	return nil
}

// Server is a ready rendezvous.
type Server struct {
	cfg   Config
	log   *slog.Logger
	store *store.Store
	key   ed25519.PrivateKey
	hub   *hub.Hub
	http  *http.Server
	ln    net.Listener
	stunC net.PacketConn
	stun  *stun.Server
	// metrics, and the listener serving them (nil when off).
	metrics   *metrics.Metrics
	metricsLn net.Listener
	// nc links the node to the cluster (nil on its own).
	nc *nats.Conn
}

// New opens the store and the listeners. Run serves.
func New(cfg Config) (*Server, error) {
	def := DefaultConfig()
	if cfg.DataDir == "" {
		cfg.DataDir = def.DataDir
	}
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = def.HTTPAddr
	}
	if cfg.STUNAddr == "" {
		cfg.STUNAddr = def.STUNAddr
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger.With("component", "rendezvous")}
	var err error
	if s.store, err = store.Open(cfg.StoreAt()); err != nil {
		return nil, err
	}
	if s.key, err = auth.LoadKey(context.Background(), s.store); err != nil {
		s.store.Close()
		return nil, err
	}
	s.ln = cfg.HTTPListener
	if s.ln == nil {
		if s.ln, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
			s.store.Close()
			return nil, fmt.Errorf("rendezvous: http: %w", err)
		}
	}
	s.stunC = cfg.STUNConn
	if s.stunC == nil && cfg.STUNAddr != "off" {
		if s.stunC, err = net.ListenPacket("udp", cfg.STUNAddr); err != nil {
			s.ln.Close()
			s.store.Close()
			return nil, fmt.Errorf("rendezvous: stun: %w", err)
		}
	}
	if s.cfg.PublicURL == "" {
		scheme := "http"
		if cfg.TLSCert != "" {
			scheme = "https"
		}
		s.cfg.PublicURL = scheme + "://" + s.ln.Addr().String()
	}
	s.cfg.PublicURL = strings.TrimRight(s.cfg.PublicURL, "/")
	if s.cfg.STUNURL == "" && s.stunC != nil {
		s.cfg.STUNURL = "stun:" + s.stunC.LocalAddr().String()
	}
	s.metrics = metrics.New(metrics.Live{
		DevicesOnline: func() int { return s.hub.DevicesOnline() },
		Sessions:      func() int { return s.hub.SessionCount() },
		Sockets:       func() int { return s.hub.Sockets() },
	})
	s.metricsLn = cfg.MetricsListener
	if s.metricsLn == nil && cfg.MetricsAddr != "" {
		if s.metricsLn, err = net.Listen("tcp", cfg.MetricsAddr); err != nil {
			s.closeListeners()
			s.store.Close()
			return nil, fmt.Errorf("rendezvous: metrics: %w", err)
		}
	}
	s.hub = hub.New(hub.Config{Store: s.store, Key: s.key, ICEServers: s.iceServers, PublicURL: s.cfg.PublicURL,
		OfferTimeout: cfg.OfferTimeout, ResumeGrace: cfg.ResumeGrace, Metrics: s.metrics, Logger: cfg.Logger})
	if cfg.NATS != "" {
		if err := s.joinCluster(); err != nil {
			s.closeListeners()
			s.store.Close()
			return nil, err
		}
	}
	a := api.New(api.Config{Store: s.store, Hub: s.hub, Key: s.key, Static: viewerweb.Handler(),
		PublicURL: s.cfg.PublicURL, SecureCookies: cfg.TLSCert != "", TrustedProxies: cfg.TrustedProxies,
		MaxConnsPerAddr: cfg.MaxConnsPerAddr, OpenBurst: cfg.OpenBurst, MaxHandshakes: cfg.MaxHandshakes,
		ViewerMsgs: cfg.ViewerMsgs, DeviceMsgs: cfg.DeviceMsgs, Metrics: s.metrics, Logger: cfg.Logger})
	s.http = &http.Server{Handler: a, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn)}
	if s.stunC != nil {
		s.stun = stun.New(s.stunC, cfg.Logger)
	}
	return s, nil
}

// joinCluster connects to NATS and links the hub to the other nodes.
func (s *Server) joinCluster() error {
	if s.cfg.Node == "" {
		s.cfg.Node = newNodeName()
	}
	var err error
	s.nc, err = nats.Connect(s.cfg.NATS, nats.Name("peercam-rendezvous "+s.cfg.Node), nats.MaxReconnects(-1),
		nats.ReconnectWait(500*time.Millisecond), nats.Timeout(5*time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			s.log.Warn("cluster: lost NATS; viewers here cannot reach devices on other nodes until it is back", "err", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { s.log.Info("cluster: NATS is back", "server", nc.ConnectedUrl()) }))
	if err != nil {
		return fmt.Errorf("rendezvous: nats: cannot reach %s: %w", s.cfg.NATS, err)
	}
	if err := s.hub.JoinCluster(s.nc, s.cfg.Node); err != nil {
		s.nc.Close()
		return err
	}
	return nil
}

func newNodeName() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Node is this node's name in its cluster, or "" on its own.
func (s *Server) Node() string {
	if s.nc == nil {
		return ""
	}
	return s.cfg.Node
}

func (s *Server) closeListeners() {
	s.ln.Close()
	if s.stunC != nil {
		s.stunC.Close()
	}
}

// MetricsAddr is the metrics listen address, or "" when off.
func (s *Server) MetricsAddr() string {
	if s.metricsLn == nil {
		return ""
	}
	return s.metricsLn.Addr().String()
}

func (s *Server) iceServers() []proto.ICEServer {
	var out []proto.ICEServer
	if s.cfg.STUNURL != "" {
		out = append(out, proto.ICEServer{URLs: []string{s.cfg.STUNURL}})
	}
	out = append(out, s.cfg.ICEServers...)
	if len(s.cfg.TURNURLs) > 0 {
		ttl := s.cfg.TURNTTL
		if ttl <= 0 {
			ttl = 12 * time.Hour
		}
		user, pass := turnrest.Credentials([]byte(s.cfg.TURNSecret), "peercam", time.Now(), ttl)
		out = append(out, proto.ICEServer{URLs: s.cfg.TURNURLs, Username: user, Credential: pass})
	}
	return out
}

// URL is the public base URL.
func (s *Server) URL() string { return s.cfg.PublicURL }

// Addr is the HTTP listen address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// STUNAddr is the STUN listen address, or "" when off.
func (s *Server) STUNAddr() string {
	if s.stunC == nil {
		return ""
	}
	return s.stunC.LocalAddr().String()
}

// Hub exposes the signaling hub (for tests and metrics).
func (s *Server) Hub() *hub.Hub { return s.hub }

// Run serves until ctx ends, then shuts down.
func (s *Server) Run(ctx context.Context) error {
	defer s.store.Close()
	if err := s.printSetupLink(ctx); err != nil {
		return err
	}
	if s.stun != nil {
		go func() {
			if err := s.stun.Serve(); err != nil {
				s.log.Error("stun stopped", "err", err)
			}
		}()
	}
	watching := make(chan struct{})
	go func() { defer close(watching); s.hub.WatchStore(ctx, 500*time.Millisecond) }()
	if s.metricsLn != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", s.metrics.Handler())
		// Profiles, beside the metrics: the same private address.
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		msrv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = msrv.Serve(s.metricsLn) }()
		defer msrv.Close()
		s.log.Info("metrics ready", "url", "http://"+s.metricsLn.Addr().String()+"/metrics")
	}
	errc := make(chan error, 1)
	go func() {
		var err error
		if s.cfg.TLSCert != "" {
			err = s.http.ServeTLS(s.ln, s.cfg.TLSCert, s.cfg.TLSKey)
		} else {
			err = s.http.Serve(s.ln)
		}
		errc <- err
	}()
	s.log.Info("rendezvous ready", "url", s.cfg.PublicURL, "stun", s.STUNAddr(), "store", redact.URL(s.cfg.StoreAt()), "node", s.Node())
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.http.Shutdown(shut)
	s.hub.Close() // Shutdown leaves the hijacked WebSockets open
	// Nothing may use the store once Run returns (and closes it).
	if ctx.Err() != nil {
		<-watching
	}
	if s.nc != nil {
		s.nc.Close()
	}
	if s.stunC != nil {
		s.stunC.Close()
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// printSetupLink prints a one-time link for creating the first owner while
// there is none, so the first visitor of a fresh server cannot take it over.
func (s *Server) printSetupLink(ctx context.Context) error {
	n, err := s.store.UserCount(ctx)
	if err != nil || n > 0 {
		return err
	}
	tok := auth.NewSecret()
	if err := s.store.PutSetupToken(ctx, tok, time.Now().Add(24*time.Hour)); err != nil {
		return err
	}
	s.log.Warn("no owner account yet: open this one-time link within 24 h to create one, or run 'rendezvous user add NAME'",
		"link", s.cfg.PublicURL+"/#setup="+tok)
	return nil
}
