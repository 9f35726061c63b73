// Package lab builds a small Internet out of Linux network namespaces, veth
// pairs and nftables NAT, so tests can put a device agent behind a home
// router and a viewer behind another, each with the NAT behaviour real
// routers have, and watch what crosses which link. It needs root.
//
//	           "public" segment 11.0.0.0/24, bridge in the inet namespace
//	  ┌───────────────┬──────────────┬────────────────────┬────────────────────┐
//	rv 11.0.0.2     turn 11.0.0.3   home router            viewer router
//	(rendezvous,    (coturn,        WAN 11.0.0.11          WAN 11.0.0.22
//	 its STUN)       when asked)     │ NAT: none|cone|sym    │ NAT: none|cone|sym
//	                                home LAN               viewer LAN
//	                                agent + firmware-sim   viewer
//
// The public addresses are not reserved ones because miniupnpd refuses to
// map ports on a reserved WAN address; they exist only inside the lab, which
// has no route out. Behind a NAT the LANs use RFC 1918 addresses; with NAT
// "none" they are public subnets routed by the inet namespace.
package lab

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// NAT is a router's behaviour.
type NAT string

const (
	// NATNone routes a public subnet: the host has a public address and no
	// firewall.
	NATNone NAT = "none"
	// NATCone is endpoint-independent mapping and filtering (RFC 4787):
	// masquerade keeps the source port, and once the host has sent from a
	// port, anyone may send to that port on the router's WAN address (a
	// "full cone", what UPnP-era consumer routers do).
	NATCone NAT = "cone"
	// NATSymmetric gives every destination a new random port
	// (masquerade fully-random): what carrier-grade NATs and some
	// enterprise firewalls do, and what defeats hole punching.
	NATSymmetric NAT = "symmetric"
)

// NATs lists the behaviours, for matrices.
var NATs = []NAT{NATNone, NATCone, NATSymmetric}

// Addresses in the lab.
const (
	InetAddr        = "11.0.0.1"
	RendezvousAddr  = "11.0.0.2"
	TURNAddr        = "11.0.0.3"
	HomeRouterWAN   = "11.0.0.11"
	ViewerRouterWAN = "11.0.0.22"
	homeLANNAT      = "192.168.1"
	viewerLANNAT    = "10.0.0"
	homeLANPublic   = "11.0.1"
	viewerLANPublic = "11.0.2"
)

// Config chooses each router's NAT.
type Config struct {
	// Name prefixes the namespaces; default "pc" plus the process ID, so
	// two test processes do not collide.
	Name      string
	AgentNAT  NAT
	ViewerNAT NAT
}

// Lab is a built lab; Close tears it down.
type Lab struct {
	cfg Config
	// Namespace names.
	Inet, RV, TURN, HomeRouter, Home, ViewerRouter, Viewer string
	// HomeAddr and ViewerAddr are the hosts' LAN addresses.
	HomeAddr, ViewerAddr string
	// gateways are the hosts' routers' LAN addresses, by host namespace.
	gateways map[string]string
	made     []string
}

// New builds the lab. On error it tears down what it made.
func New(cfg Config) (l *Lab, err error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("lab: needs root (network namespaces)")
	}
	if cfg.Name == "" {
		cfg.Name = "pc" + strconv.Itoa(os.Getpid()%100000)
	}
	for _, n := range []NAT{cfg.AgentNAT, cfg.ViewerNAT} {
		if n != NATNone && n != NATCone && n != NATSymmetric {
			return nil, fmt.Errorf("lab: NAT %q: want none, cone or symmetric", n)
		}
	}
	p := cfg.Name + "-"
	l = &Lab{cfg: cfg, Inet: p + "inet", RV: p + "rv", TURN: p + "turn", HomeRouter: p + "hrt",
		Home: p + "home", ViewerRouter: p + "vrt", Viewer: p + "view", gateways: map[string]string{}}
	// A failing step returns a nil *Lab, so the cleanup keeps its own
	// pointer to what was made so far.
	made := l
	defer func() {
		if err != nil {
			made.Close()
		}
	}()
	for _, ns := range []string{l.Inet, l.RV, l.TURN, l.HomeRouter, l.Home, l.ViewerRouter, l.Viewer} {
		_ = exec.Command("ip", "netns", "del", ns).Run() // a leftover from a killed run
		if err := run("ip", "netns", "add", ns); err != nil {
			return nil, err
		}
		l.made = append(l.made, ns)
		if err := l.ip(ns, "link", "set", "lo", "up"); err != nil {
			return nil, err
		}
	}
	// The public segment: a bridge in the inet namespace, which also routes
	// the public LAN subnets of NAT-less routers.
	if err := l.ip(l.Inet, "link", "add", "br0", "type", "bridge"); err != nil {
		return nil, err
	}
	if err := l.ip(l.Inet, "addr", "add", InetAddr+"/24", "dev", "br0"); err != nil {
		return nil, err
	}
	if err := l.ip(l.Inet, "link", "set", "br0", "up"); err != nil {
		return nil, err
	}
	if err := l.sysctl(l.Inet, "net.ipv4.ip_forward=1"); err != nil {
		return nil, err
	}
	for _, c := range []struct{ ns, addr string }{
		{l.RV, RendezvousAddr}, {l.TURN, TURNAddr}, {l.HomeRouter, HomeRouterWAN}, {l.ViewerRouter, ViewerRouterWAN},
	} {
		if err := l.link(l.Inet, "br0", c.ns, "wan", c.addr+"/24"); err != nil {
			return nil, err
		}
		if err := l.ip(c.ns, "route", "add", "default", "via", InetAddr); err != nil {
			return nil, err
		}
	}
	l.HomeAddr, err = l.site(l.HomeRouter, l.Home, HomeRouterWAN, cfg.AgentNAT, homeLANNAT, homeLANPublic)
	if err != nil {
		return nil, err
	}
	l.ViewerAddr, err = l.site(l.ViewerRouter, l.Viewer, ViewerRouterWAN, cfg.ViewerNAT, viewerLANNAT, viewerLANPublic)
	if err != nil {
		return nil, err
	}
	return l, nil
}

// site wires a router and the host behind it and returns the host's LAN
// address.
func (l *Lab) site(router, host, wan string, nat NAT, natLAN, publicLAN string) (string, error) {
	lan := natLAN
	if nat == NATNone {
		lan = publicLAN
		// The inet namespace routes the public subnet to this router.
		if err := l.ip(l.Inet, "route", "add", lan+".0/24", "via", wan); err != nil {
			return "", err
		}
	}
	gw, hostAddr := lan+".1", lan+".10"
	l.gateways[host] = gw
	if err := l.link(router, "", host, "eth0", hostAddr+"/24"); err != nil {
		return "", err
	}
	if err := l.ip(router, "addr", "add", gw+"/24", "dev", "lan"); err != nil {
		return "", err
	}
	if err := l.ip(host, "route", "add", "default", "via", gw); err != nil {
		return "", err
	}
	if err := l.sysctl(router, "net.ipv4.ip_forward=1"); err != nil {
		return "", err
	}
	return hostAddr, l.nft(router, rules(nat, hostAddr))
}

// rules is a router's nftables ruleset. The chains named *miniupnpd are the
// ones miniupnpd fills when it runs on the router (see MiniUPnPdConfig).
func rules(nat NAT, host string) string {
	masq, cone := "", ""
	filter := `policy drop;
		ct state established,related accept
		ct status dnat accept
		iifname "lan" oifname "wan" accept
		jump miniupnpd`
	switch nat {
	case NATNone:
		filter = "policy accept;"
	case NATCone:
		masq = `oifname "wan" masquerade`
		// Endpoint-independent filtering: a UDP port the host has sent
		// from stays open to every sender for two minutes. Masquerade kept
		// the port, so the way in is the same port on the host.
		filter = `policy drop;
		iifname "lan" oifname "wan" meta l4proto udp update @mapped { udp sport }
		ct state established,related accept
		ct status dnat accept
		iifname "lan" oifname "wan" accept
		jump miniupnpd`
		cone = fmt.Sprintf(`iifname "wan" ct state new udp dport @mapped dnat ip to %s`, host)
	case NATSymmetric:
		masq = `oifname "wan" masquerade fully-random`
	}
	return fmt.Sprintf(`table inet filter {
	set mapped {
		type inet_service; flags dynamic,timeout; timeout 2m;
	}
	chain forward {
		type filter hook forward priority 0; %s
	}
	chain miniupnpd {
	}
	chain prerouting {
		type nat hook prerouting priority -100; policy accept;
		jump prerouting_miniupnpd
		%s
	}
	chain postrouting {
		type nat hook postrouting priority 100; policy accept;
		jump postrouting_miniupnpd
		%s
	}
	chain prerouting_miniupnpd {
	}
	chain postrouting_miniupnpd {
	}
}
`, filter, cone, masq)
}

// link makes a veth pair between namespaces a and b. In a, the end is
// enslaved to bridge when bridge is set (named to-<b>), else named "lan";
// in b it is named bName and gets addr.
func (l *Lab) link(a, bridge, b, bName, addr string) error {
	// veth names must be short and unique in the root namespace while they
	// pass through it.
	tmpA, tmpB := "v"+strconv.Itoa(os.Getpid()%10000)+"a", "v"+strconv.Itoa(os.Getpid()%10000)+"b"
	if err := run("ip", "link", "add", tmpA, "type", "veth", "peer", "name", tmpB); err != nil {
		return err
	}
	aName := "lan"
	if bridge != "" {
		aName = "to-" + b[len(l.cfg.Name)+1:]
	}
	if err := run("ip", "link", "set", tmpA, "netns", a, "name", aName); err != nil {
		return err
	}
	if err := run("ip", "link", "set", tmpB, "netns", b, "name", bName); err != nil {
		return err
	}
	if bridge != "" {
		if err := l.ip(a, "link", "set", aName, "master", bridge); err != nil {
			return err
		}
	}
	if err := l.ip(a, "link", "set", aName, "up"); err != nil {
		return err
	}
	if err := l.ip(b, "addr", "add", addr, "dev", bName); err != nil {
		return err
	}
	return l.ip(b, "link", "set", bName, "up")
}

// SetLink takes a host's (l.Home's or l.Viewer's) link down or brings it
// back up, as a pulled cable or lost Wi-Fi does. Up restores the default
// route, as the host's DHCP client would.
func (l *Lab) SetLink(host string, up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	if err := l.ip(host, "link", "set", "eth0", state); err != nil {
		return err
	}
	if up {
		return l.ip(host, "route", "replace", "default", "via", l.gateways[host])
	}
	return nil
}

// Renumber moves a host to another address on its LAN, as a phone that
// joins another network gets a new address, and returns it. The old
// address stops working at once. (A cone router forwards to the first
// address only: renumber behind none or symmetric.)
func (l *Lab) Renumber(host string) (string, error) {
	old := l.HomeAddr
	if host == l.Viewer {
		old = l.ViewerAddr
	}
	i := strings.LastIndexByte(old, '.')
	n, _ := strconv.Atoi(old[i+1:])
	addr := old[:i+1] + strconv.Itoa(n+1)
	// Deleting the address takes the default route with it.
	if err := l.ip(host, "addr", "del", old+"/24", "dev", "eth0"); err != nil {
		return "", err
	}
	if err := l.ip(host, "addr", "add", addr+"/24", "dev", "eth0"); err != nil {
		return "", err
	}
	if err := l.ip(host, "route", "replace", "default", "via", l.gateways[host]); err != nil {
		return "", err
	}
	if host == l.Viewer {
		l.ViewerAddr = addr
	} else {
		l.HomeAddr = addr
	}
	return addr, nil
}

// Command runs a program inside namespace ns.
func (l *Lab) Command(ns, name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// Bytes returns the bytes received and sent on interface dev in ns.
func (l *Lab) Bytes(ns, dev string) (rx, tx uint64, err error) {
	out, err := exec.Command("ip", "-n", ns, "-s", "-s", "link", "show", "dev", dev).Output()
	if err != nil {
		return 0, 0, fmt.Errorf("lab: counters of %s in %s: %w", dev, ns, err)
	}
	// The line after "RX:" holds bytes first; the same for "TX:".
	lines := strings.Split(string(out), "\n")
	for i, line := range lines {
		f := strings.Fields(line)
		if len(f) == 0 || i+1 >= len(lines) {
			continue
		}
		v, _ := strconv.ParseUint(strings.Fields(lines[i+1] + " 0")[0], 10, 64)
		switch f[0] {
		case "RX:":
			rx = v
		case "TX:":
			tx = v
		}
	}
	return rx, tx, nil
}

// Close removes every namespace; their links and processes' sockets go
// with them. Processes started with Command must be stopped first.
func (l *Lab) Close() {
	for i := len(l.made) - 1; i >= 0; i-- {
		_ = exec.Command("ip", "netns", "del", l.made[i]).Run()
	}
	l.made = nil
}

func (l *Lab) ip(ns string, args ...string) error {
	return run("ip", append([]string{"-n", ns}, args...)...)
}

func (l *Lab) sysctl(ns, kv string) error {
	return run("ip", "netns", "exec", ns, "sysctl", "-q", "-w", kv)
}

func (l *Lab) nft(ns, ruleset string) error {
	cmd := exec.Command("ip", "netns", "exec", ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(ruleset)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("lab: nft in %s: %w: %s", ns, err, bytes.TrimSpace(out))
	}
	return nil
}

func run(name string, args ...string) error {
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("lab: %s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// Router is a home router's port mapping service (miniupnpd).
type Router struct {
	// UPnP serves UPnP IGD; IGDv1 makes it describe itself as IGD v1
	// (WANIPConnection:1) instead of v2.
	UPnP, IGDv1 bool
	// NATPMP serves NAT-PMP and PCP (miniupnpd answers both on port 5351).
	NATPMP bool
}

func (r Router) String() string {
	var s []string
	if r.UPnP {
		v := "UPnP IGDv2"
		if r.IGDv1 {
			v = "UPnP IGDv1"
		}
		s = append(s, v)
	}
	if r.NATPMP {
		s = append(s, "NAT-PMP/PCP")
	}
	return strings.Join(s, "+")
}

// MiniUPnPdConfig is the miniupnpd.conf for the home router: WAN and LAN
// interfaces, the lab's nftables chains, leases from 2 s (so tests can watch
// renewals) and mappings only for LAN hosts, each to its own address.
func (l *Lab) MiniUPnPdConfig(r Router) string {
	yes := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	lan := homeLANNAT
	if l.cfg.AgentNAT == NATNone {
		lan = homeLANPublic
	}
	return fmt.Sprintf(`ext_ifname=wan
listening_ip=lan
http_port=0
enable_upnp=%s
enable_natpmp=%s
force_igd_desc_v1=%s
secure_mode=yes
system_uptime=yes
min_lifetime=2
max_lifetime=86400
uuid=3d3cec3a-8cf0-11e0-98ee-001a6bd2d07b
upnp_table_name=filter
upnp_nat_table_name=filter
upnp_forward_chain=miniupnpd
upnp_nat_chain=prerouting_miniupnpd
upnp_nat_postrouting_chain=postrouting_miniupnpd
allow 1024-65535 %s.0/24 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
`, yes(r.UPnP), yes(r.NATPMP), yes(r.IGDv1), lan)
}

// MiniUPnPd returns the command that runs miniupnpd in the home router's
// namespace in the foreground, with its config and pid file in dir.
func (l *Lab) MiniUPnPd(r Router, dir string) (*exec.Cmd, error) {
	conf := dir + "/miniupnpd.conf"
	if err := os.WriteFile(conf, []byte(l.MiniUPnPdConfig(r)), 0o600); err != nil {
		return nil, fmt.Errorf("lab: miniupnpd config: %w", err)
	}
	return l.Command(l.HomeRouter, "miniupnpd", "-d", "-4", "-f", conf, "-P", dir+"/miniupnpd.pid"), nil
}

// Forwards lists the home router's port forwards as miniupnpd wrote them
// (the rules of its prerouting chain), one per line.
func (l *Lab) Forwards() ([]string, error) {
	out, err := l.Command(l.HomeRouter, "nft", "list", "chain", "inet", "filter", "prerouting_miniupnpd").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("lab: nft list: %w: %s", err, bytes.TrimSpace(out))
	}
	var rules []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "dnat") {
			rules = append(rules, strings.TrimSpace(line))
		}
	}
	return rules, nil
}
