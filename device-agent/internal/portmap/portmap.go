// Package portmap asks the home router to forward the agent's WebRTC UDP port
// to it, so viewers can reach the agent directly even where hole punching
// cannot work (both sides behind symmetric NATs). It speaks the three
// protocols consumer routers offer: PCP (RFC 6887), NAT-PMP (RFC 6886) and
// UPnP IGD (v2, then v1). A Mapper keeps one mapping alive: it renews the
// lease at half its lifetime, finds another protocol when the router stops
// answering, and removes the mapping when the agent stops.
//
// The mapped port speaks only ICE, DTLS and SRTP: a packet from anyone but a
// viewer the rendezvous introduced (who knows the session's ICE password)
// gets no answer, just as with the hole a STUN binding opens.
package portmap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Protocol is a port mapping protocol.
type Protocol string

// The protocols, in the order a Mapper tries them by default: PCP and
// NAT-PMP answer in one round trip; UPnP needs a 2 s multicast search.
const (
	PCP    Protocol = "pcp"
	NATPMP Protocol = "natpmp"
	UPnP   Protocol = "upnp"
)

// Protocols lists every protocol in the default order.
var Protocols = []Protocol{PCP, NATPMP, UPnP}

// ParseProtocols reads "auto", "off" or a comma-separated list such as
// "upnp,natpmp". "off" returns an empty list.
func ParseProtocols(s string) ([]Protocol, error) {
	switch strings.TrimSpace(s) {
	case "", "auto":
		return Protocols, nil
	case "off":
		return nil, nil
	}
	var out []Protocol
	for _, f := range strings.Split(s, ",") {
		p := Protocol(strings.ToLower(strings.TrimSpace(f)))
		switch p {
		case PCP, NATPMP, UPnP:
			out = append(out, p)
		case "nat-pmp":
			out = append(out, NATPMP)
		default:
			return nil, fmt.Errorf("%q is not a port mapping protocol: want auto, off, or a list of upnp, natpmp, pcp", f)
		}
	}
	return out, nil
}

// Mapping is a port the router forwards to the agent.
type Mapping struct {
	Protocol Protocol
	// External is the router's public address and the mapped port.
	External netip.AddrPort
	// Internal is the agent's LAN address and port the router forwards to.
	Internal netip.AddrPort
	// Lifetime is the lease the router granted; zero means until removed.
	Lifetime time.Duration
	// Detail names the protocol's variant, such as "IGDv2", for the log.
	Detail string
}

// ErrNoRouter means no protocol got an answer from the router.
var ErrNoRouter = errors.New("portmap: the router answers none of the port mapping protocols")

// ErrPrivateWAN means the router mapped a port on an address that is itself
// private: a second NAT (often the carrier's) lies beyond it, so the mapping
// cannot be reached from the Internet.
var ErrPrivateWAN = errors.New("portmap: the router's WAN address is private (double NAT or carrier-grade NAT)")

// client is one protocol's view of the router.
type client interface {
	// add asks for internal to be forwarded, preferably from the same
	// external port as want (0: any).
	add(ctx context.Context, internal netip.AddrPort, want uint16, lease time.Duration) (Mapping, error)
	// remove deletes a mapping add returned.
	remove(ctx context.Context, m Mapping) error
}

// Config configures a Mapper.
type Config struct {
	// Port is the local UDP port to map.
	Port uint16
	// LocalIP is the agent's LAN address; default: the address the system
	// routes to Gateway from.
	LocalIP netip.Addr
	// Gateway is the router; default: the IPv4 default route's gateway.
	Gateway netip.Addr
	// Protocols are tried in order. Default Protocols.
	Protocols []Protocol
	// Lease is the lifetime asked for; the mapping is renewed at half of
	// what the router grants. Default 2 h.
	Lease time.Duration
	// Timeout bounds each protocol's attempt. Default 3 s.
	Timeout time.Duration
	// Retry is the wait after every protocol failed; it doubles up to
	// 30 min (a router may turn UPnP on later). Default 1 min.
	Retry  time.Duration
	Logger *slog.Logger
}

// Mapper keeps a port mapping alive.
type Mapper struct {
	cfg Config
	log *slog.Logger

	mu sync.Mutex // guards current and renewals
	// current is the live mapping; nil when there is none.
	current *Mapping
	// renewals counts successful renewals, for tests and status.
	renewals int
	// newClient makes a protocol's client; tests replace it.
	newClient func(Protocol, netip.Addr) client
}

// New returns a Mapper; Run starts it.
func New(cfg Config) *Mapper {
	if cfg.Protocols == nil {
		cfg.Protocols = Protocols
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 2 * time.Hour
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 3 * time.Second
	}
	if cfg.Retry <= 0 {
		cfg.Retry = time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Mapper{cfg: cfg, log: cfg.Logger.With("component", "portmap"), newClient: newClient}
}

func newClient(p Protocol, gw netip.Addr) client {
	switch p {
	case PCP:
		return &pcpClient{gateway: gw}
	case NATPMP:
		return &natpmpClient{gateway: gw}
	}
	return &upnpClient{gateway: gw}
}

// Current returns the live mapping.
func (m *Mapper) Current() (Mapping, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.current == nil {
		return Mapping{}, false
	}
	return *m.current, true
}

// Renewals returns how many times the lease was renewed.
func (m *Mapper) Renewals() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.renewals
}

// Run keeps a mapping until ctx ends, then removes it.
func (m *Mapper) Run(ctx context.Context) {
	if len(m.cfg.Protocols) == 0 {
		return
	}
	retry := m.cfg.Retry
	quiet := false // after the first report of failure, retries log at debug
	var (
		cur     *Mapping
		curCl   client
		expires time.Time
	)
	defer func() {
		if cur == nil {
			return
		}
		rctx, cancel := context.WithTimeout(context.Background(), m.cfg.Timeout)
		defer cancel()
		m.set(nil, false)
		if err := curCl.remove(rctx, *cur); err != nil {
			m.log.Warn("could not remove the router's port mapping; it lapses when its lease ends",
				"protocol", cur.Protocol, "external", cur.External.String(), "err", err)
			return
		}
		m.log.Info("removed the router's port mapping", "protocol", cur.Protocol, "external", cur.External.String())
	}()
	for {
		next, cl, err := m.mapOnce(ctx, cur, curCl)
		wait := retry
		switch {
		case ctx.Err() != nil:
			return
		case err == nil:
			renewed := cur != nil && cur.Protocol == next.Protocol
			if !renewed || cur.External != next.External {
				m.log.Info("the router forwards a port to this agent; viewers anywhere can reach it directly",
					"protocol", next.Protocol, "variant", next.Detail, "external", next.External.String(),
					"internal", next.Internal.String(), "lease", next.Lifetime.String())
			} else {
				m.log.Info("renewed the router's port mapping", "protocol", next.Protocol, "external", next.External.String())
			}
			if cur != nil && curCl != cl {
				// Another protocol took over: drop the old mapping.
				_ = curCl.remove(ctx, *cur)
			}
			cur, curCl, retry, quiet = &next, cl, m.cfg.Retry, false
			m.set(cur, renewed)
			wait = next.Lifetime / 2
			if next.Lifetime == 0 {
				wait = time.Hour // permanent: check it is still there now and then
			}
			expires = time.Now().Add(next.Lifetime)
		default:
			if cur != nil && cur.Lifetime != 0 && time.Now().After(expires) {
				m.log.Warn("the router's port mapping lapsed", "protocol", cur.Protocol, "external", cur.External.String())
				cur, curCl = nil, nil
				m.set(nil, false)
			}
			if !quiet {
				m.log.Info("no port mapping from the router; viewers behind strict NATs will need a relay", "why", err)
				quiet = true
			} else {
				m.log.Debug("port mapping attempt failed", "err", err)
			}
			if cur != nil && cur.Lifetime != 0 {
				// Try again well before the lease runs out.
				wait = min(retry, time.Until(expires)/2, 30*time.Second)
				wait = max(wait, time.Second)
			} else {
				retry = min(2*retry, 30*time.Minute)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

func (m *Mapper) set(cur *Mapping, renewed bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur == nil {
		m.current = nil
		return
	}
	c := *cur
	m.current = &c
	if renewed {
		m.renewals++
	}
}

// mapOnce renews cur with its own protocol first, then tries the others,
// asking for cur's external port, else the same port as the internal one.
func (m *Mapper) mapOnce(ctx context.Context, cur *Mapping, curCl client) (Mapping, client, error) {
	gw, local, err := m.route()
	if err != nil {
		return Mapping{}, nil, err
	}
	internal := netip.AddrPortFrom(local, m.cfg.Port)
	want := m.cfg.Port
	if cur != nil {
		want = cur.External.Port()
	}
	var errs []error
	try := func(p Protocol, cl client) (Mapping, bool) {
		actx, cancel := context.WithTimeout(ctx, m.cfg.Timeout)
		defer cancel()
		got, err := cl.add(actx, internal, want, m.cfg.Lease)
		if err == nil && !publicAddr(got.External.Addr()) {
			_ = cl.remove(actx, got)
			err = fmt.Errorf("%w: %s", ErrPrivateWAN, got.External.Addr())
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p, err))
			return Mapping{}, false
		}
		got.Protocol, got.Internal = p, internal
		return got, true
	}
	if cur != nil {
		if got, ok := try(cur.Protocol, curCl); ok {
			return got, curCl, nil
		}
	}
	for _, p := range m.cfg.Protocols {
		if cur != nil && p == cur.Protocol {
			continue
		}
		cl := m.newClient(p, gw)
		if got, ok := try(p, cl); ok {
			return got, cl, nil
		}
		if ctx.Err() != nil {
			return Mapping{}, nil, ctx.Err()
		}
	}
	return Mapping{}, nil, fmt.Errorf("%w (gateway %s): %w", ErrNoRouter, gw, errors.Join(errs...))
}

// route finds the gateway and the agent's address towards it.
func (m *Mapper) route() (gw, local netip.Addr, err error) {
	gw = m.cfg.Gateway
	if !gw.IsValid() {
		if gw, err = DefaultGateway(); err != nil {
			return gw, local, err
		}
	}
	local = m.cfg.LocalIP
	if !local.IsValid() || local.IsUnspecified() {
		// A UDP "connection" sends nothing; it only asks the kernel which
		// source address it would use.
		c, err := net.Dial("udp4", netip.AddrPortFrom(gw, 5351).String())
		if err != nil {
			return gw, local, fmt.Errorf("portmap: no route to the gateway %s: %w", gw, err)
		}
		local = c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
		c.Close()
	}
	return gw, local, nil
}

// cgnat is the carrier-grade NAT range (RFC 6598).
var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// publicAddr tells whether a router's WAN address is reachable from the
// Internet.
func publicAddr(a netip.Addr) bool {
	return a.IsValid() && a.IsGlobalUnicast() && !a.IsPrivate() && !cgnat.Contains(a)
}
