// Command rendezvous introduces agents and viewers: accounts, devices,
// signaling, STUN and WHEP. Media never passes through it.
//
//	rendezvous [-data DIR | -store postgres://…] [-nats nats://…] [-http ADDR] [-stun ADDR] [-public-url URL] [-tls-cert F -tls-key F]
//	rendezvous user add NAME [-password P]     (password from stdin otherwise)
//	rendezvous user passwd NAME [-password P]  (ends all of NAME's sign-in sessions)
//	rendezvous device list
//	rendezvous device claim -user NAME DEVICE_ID
//	rendezvous device remove -user NAME DEVICE_ID
//	rendezvous token [mint] -device ID -camera N [-ttl 1h]
//	rendezvous token list -user NAME
//	rendezvous token revoke -user NAME TOKEN_ID
//	rendezvous share create -user NAME -device ID -camera N [-ttl 8h] [-max-viewers 2] [-label plumber]
//	rendezvous share list -user NAME
//	rendezvous share revoke -user NAME SHARE_ID
//	rendezvous migrate [-data DIR | -store postgres://…]
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/peercam/peercam/proto"
	"github.com/peercam/peercam/rendezvous/internal/api"
	"github.com/peercam/peercam/rendezvous/server"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "rendezvous:", err)
		os.Exit(1)
	}
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func run(args []string) error {
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		return admin(args)
	}
	cfg := server.DefaultConfig()
	fs := flag.NewFlagSet("rendezvous", flag.ExitOnError)
	fs.StringVar(&cfg.DataDir, "data", cfg.DataDir, "data directory (SQLite database)")
	fs.StringVar(&cfg.Store, "store", "", storeUsage)
	fs.StringVar(&cfg.NATS, "nats", "", "NATS server URL(s), e.g. nats://10.0.0.5:4222: join the other rendezvous nodes using it (needs -store)")
	fs.StringVar(&cfg.Node, "node", "", "this node's name in the cluster, for logs (default: random)")
	fs.StringVar(&cfg.HTTPAddr, "http", cfg.HTTPAddr, "HTTP listen address (HTTPS with -tls-cert/-tls-key)")
	fs.StringVar(&cfg.TLSCert, "tls-cert", "", "TLS certificate file (PEM)")
	fs.StringVar(&cfg.TLSKey, "tls-key", "", "TLS key file (PEM)")
	fs.StringVar(&cfg.STUNAddr, "stun", cfg.STUNAddr, `STUN UDP listen address, or "off"`)
	fs.StringVar(&cfg.STUNURL, "stun-url", "", "STUN URL given to peers (default stun:<-stun address>)")
	fs.StringVar(&cfg.PublicURL, "public-url", "", "URL people and agents use to reach this server (default from -http)")
	var ice, turn listFlag
	fs.Var(&ice, "ice-server", "extra STUN server URL given to peers (repeatable)")
	fs.Var(&turn, "turn-url", "TURN relay URL, e.g. turn:turn.example.net:3478?transport=udp (repeatable; needs -turn-secret-file)")
	secretFile := fs.String("turn-secret-file", "", "file holding the secret shared with the TURN relay (coturn static-auth-secret)")
	fs.DurationVar(&cfg.TURNTTL, "turn-ttl", 12*time.Hour, "lifetime of the TURN credentials handed to each session")
	var proxies listFlag
	fs.Var(&proxies, "trusted-proxy", "CIDR of a reverse proxy whose X-Forwarded-For names the client (repeatable)")
	fs.IntVar(&cfg.OpenBurst, "open-burst", 20, "viewer sessions one address (or one token) may open in a burst before it is held to one a second")
	fs.IntVar(&cfg.MaxHandshakes, "max-handshakes", api.DefaultMaxHandshakes, "device handshakes in progress at once; more are told to retry in 1-3 s (a reconnect storm after a restart)")
	fs.IntVar(&cfg.MaxConnsPerAddr, "max-conns-per-address", 32, "concurrent WebSocket connections per client address (per /64 for IPv6), viewers and devices each")
	fs.Float64Var(&cfg.ViewerMsgs.Rate, "viewer-msg-rate", api.DefaultViewerMsgs.Rate, "signaling messages a second one viewer socket may send after its burst; more are dropped with a rate_limited error")
	fs.IntVar(&cfg.ViewerMsgs.Burst, "viewer-msg-burst", api.DefaultViewerMsgs.Burst, "signaling messages one viewer socket may send at once")
	fs.Float64Var(&cfg.DeviceMsgs.Rate, "device-msg-rate", api.DefaultDeviceMsgs.Rate, "signaling messages a second one agent socket may send after its burst")
	fs.IntVar(&cfg.DeviceMsgs.Burst, "device-msg-burst", api.DefaultDeviceMsgs.Burst, "signaling messages one agent socket may send at once")
	maxMsg := fs.Int64("max-message-size", proto.MaxMessageSize, "largest signaling message in bytes (at most the protocol's 65536); a larger one closes the socket")
	fs.StringVar(&cfg.MetricsAddr, "metrics", "", "address serving Prometheus metrics at /metrics, e.g. 127.0.0.1:9109 (plain HTTP; empty: off)")
	fs.DurationVar(&cfg.ResumeGrace, "resume-grace", 10*time.Second, "how long a viewer's sessions outlive a socket that dropped without closing, for the page to resume them")
	_ = fs.Parse(args)
	if *maxMsg < 4096 || *maxMsg > proto.MaxMessageSize {
		return fmt.Errorf("max-message-size: %d is not between 4096 and %d", *maxMsg, proto.MaxMessageSize)
	}
	cfg.ViewerMsgs.MaxMessage, cfg.DeviceMsgs.MaxMessage = *maxMsg, *maxMsg
	for _, p := range proxies {
		pfx, err := parsePrefix(p)
		if err != nil {
			return fmt.Errorf("trusted-proxy: %w", err)
		}
		cfg.TrustedProxies = append(cfg.TrustedProxies, pfx)
	}
	cfg.TURNURLs = turn
	if *secretFile != "" {
		b, err := os.ReadFile(*secretFile)
		if err != nil {
			return fmt.Errorf("turn-secret-file: %w", err)
		}
		cfg.TURNSecret = strings.TrimSpace(string(b))
		if cfg.TURNSecret == "" {
			return fmt.Errorf("turn-secret-file: %s is empty", *secretFile)
		}
	}
	for _, u := range ice {
		cfg.ICEServers = append(cfg.ICEServers, proto.ICEServer{URLs: []string{u}})
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))

	srv, err := server.New(cfg)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return srv.Run(ctx)
}

func admin(args []string) error {
	ctx := context.Background()
	cmd := strings.Join(args[:min(2, len(args))], " ")
	switch {
	case cmd == "user passwd":
		fs := flag.NewFlagSet("user passwd", flag.ExitOnError)
		data := storeFlags(fs)
		pw := fs.String("password", "", "new password (default: read a line from stdin)")
		name, rest := splitName(args[2:])
		_ = fs.Parse(rest)
		if name == "" {
			name = fs.Arg(0)
		}
		if name == "" {
			return errors.New("usage: rendezvous user passwd NAME [-password P]")
		}
		if *pw == "" {
			var err error
			if *pw, err = readPassword("new password for " + name + ":"); err != nil {
				return fmt.Errorf("user passwd: %w", err)
			}
		}
		n, err := server.SetPassword(ctx, data(), name, *pw)
		if err != nil {
			return err
		}
		fmt.Printf("password of %s changed; %d sign-in session(s) ended\n", name, n)
		return nil
	case cmd == "device remove":
		fs := flag.NewFlagSet("device remove", flag.ExitOnError)
		data := storeFlags(fs)
		user := fs.String("user", "", "owner of the device")
		_ = fs.Parse(args[2:])
		if *user == "" || fs.NArg() != 1 {
			return errors.New("usage: rendezvous device remove -user NAME DEVICE_ID")
		}
		n, err := server.RemoveDevice(ctx, data(), *user, fs.Arg(0))
		if err != nil {
			return err
		}
		fmt.Printf("removed %s from %s; %d share(s) and token(s) revoked\n", fs.Arg(0), *user, n)
		return nil
	case cmd == "token list":
		fs := flag.NewFlagSet("token list", flag.ExitOnError)
		data := storeFlags(fs)
		user := fs.String("user", "", "owner")
		_ = fs.Parse(args[2:])
		return server.ListTokens(ctx, data(), *user, os.Stdout)
	case cmd == "token revoke":
		fs := flag.NewFlagSet("token revoke", flag.ExitOnError)
		data := storeFlags(fs)
		user := fs.String("user", "", "owner")
		_ = fs.Parse(args[2:])
		if fs.NArg() != 1 {
			return errors.New("usage: rendezvous token revoke -user NAME TOKEN_ID")
		}
		if err := server.RevokeToken(ctx, data(), *user, fs.Arg(0)); err != nil {
			return err
		}
		fmt.Println("revoked", fs.Arg(0))
		return nil
	case args[0] == "migrate":
		fs := flag.NewFlagSet("migrate", flag.ExitOnError)
		data := storeFlags(fs)
		_ = fs.Parse(args[1:])
		n, v, err := server.Migrate(ctx, data())
		if err != nil {
			return err
		}
		fmt.Printf("schema at version %d (%d step(s) applied now)\n", v, n)
		return nil
	case cmd == "user add":
		fs := flag.NewFlagSet("user add", flag.ExitOnError)
		data := storeFlags(fs)
		pw := fs.String("password", "", "password (default: read a line from stdin)")
		name, rest := splitName(args[2:])
		_ = fs.Parse(rest)
		if name == "" {
			name = fs.Arg(0)
		}
		if *pw == "" {
			var err error
			if *pw, err = readPassword("password for " + name + ":"); err != nil {
				return fmt.Errorf("user add: %w", err)
			}
		}
		if err := server.AddUser(ctx, data(), name, *pw); err != nil {
			return err
		}
		fmt.Println("created owner", name)
		return nil
	case cmd == "device list":
		fs := flag.NewFlagSet("device list", flag.ExitOnError)
		data := storeFlags(fs)
		_ = fs.Parse(args[2:])
		return server.ListDevices(ctx, data(), os.Stdout)
	case cmd == "device claim":
		fs := flag.NewFlagSet("device claim", flag.ExitOnError)
		data := storeFlags(fs)
		user := fs.String("user", "", "owner to bind the device to")
		name := fs.String("name", "", "device name shown in the app")
		_ = fs.Parse(args[2:])
		if *user == "" || fs.NArg() != 1 {
			return errors.New("usage: rendezvous device claim -user NAME [-name LABEL] DEVICE_ID")
		}
		if err := server.ClaimDevice(ctx, data(), *user, fs.Arg(0), *name); err != nil {
			return err
		}
		fmt.Println("claimed", fs.Arg(0), "for", *user)
		return nil
	case args[0] == "token":
		if len(args) > 1 && args[1] == "mint" {
			args = args[1:]
		}
		fs := flag.NewFlagSet("token", flag.ExitOnError)
		data := storeFlags(fs)
		dev := fs.String("device", "", "device ID")
		var cams listFlag
		fs.Var(&cams, "camera", "camera ID (repeatable)")
		ttl := fs.Duration("ttl", time.Hour, "how long the token is valid")
		_ = fs.Parse(args[1:])
		t, err := server.MintToken(ctx, data(), *dev, cams, *ttl)
		if err != nil {
			return err
		}
		// The token alone on stdout, so TOKEN=$(rendezvous token ...) works.
		fmt.Fprintf(os.Stderr, "token %s, until %s (revoke: rendezvous token revoke -user OWNER %s)\n", t.ID, t.Expires.UTC().Format(time.RFC3339), t.ID)
		fmt.Println(t.Token)
		return nil
	case cmd == "share create":
		fs := flag.NewFlagSet("share create", flag.ExitOnError)
		data := storeFlags(fs)
		pub := fs.String("public-url", "http://127.0.0.1:8080", "the server's public URL, for the link")
		user := fs.String("user", "", "owner of the device")
		dev := fs.String("device", "", "device ID")
		var cams listFlag
		fs.Var(&cams, "camera", "camera ID (repeatable)")
		ttl := fs.Duration("ttl", 24*time.Hour, "how long the link works (1h, 8h, 24h, 168h …)")
		until := fs.String("expires", "", "expiry as an RFC 3339 date, instead of -ttl")
		maxV := fs.Int("max-viewers", api.DefaultShareViewers, "concurrent viewers allowed (0: no cap)")
		label := fs.String("label", "", "label shown to the owner, e.g. plumber")
		_ = fs.Parse(args[2:])
		req := api.ShareRequest{Device: *dev, Cameras: cams, TTLSeconds: int(ttl.Seconds()), Expires: *until, MaxViewers: maxV, Label: *label}
		if *until != "" {
			req.TTLSeconds = 0
		}
		sh, err := server.CreateShare(ctx, data(), *pub, *user, req)
		if err != nil {
			return err
		}
		fmt.Printf("share %s, until %s\n%s\n", sh.ID, sh.Expires.Format(time.RFC3339), sh.Link)
		return nil
	case cmd == "share list":
		fs := flag.NewFlagSet("share list", flag.ExitOnError)
		data := storeFlags(fs)
		user := fs.String("user", "", "owner")
		_ = fs.Parse(args[2:])
		return server.ListShares(ctx, data(), *user, os.Stdout)
	case cmd == "share revoke":
		fs := flag.NewFlagSet("share revoke", flag.ExitOnError)
		data := storeFlags(fs)
		user := fs.String("user", "", "owner")
		_ = fs.Parse(args[2:])
		if fs.NArg() != 1 {
			return errors.New("usage: rendezvous share revoke -user NAME SHARE_ID")
		}
		if err := server.RevokeShare(ctx, data(), *user, fs.Arg(0)); err != nil {
			return err
		}
		fmt.Println("revoked", fs.Arg(0))
		return nil
	}
	return fmt.Errorf("unknown command %q; commands: user add, user passwd, device list, device claim, device remove, token [mint], token list, token revoke, share create, share list, share revoke, migrate", cmd)
}

// storeFlags registers -data and -store on fs; the func it returns names
// the store to open: the PostgreSQL URL when -store is set, else -data.
func storeFlags(fs *flag.FlagSet) func() string {
	data := fs.String("data", server.DefaultConfig().DataDir, "data directory (SQLite database)")
	pg := fs.String("store", "", storeUsage)
	return func() string {
		if *pg != "" {
			return *pg
		}
		return *data
	}
}

const storeUsage = "PostgreSQL URL, e.g. postgres://peercam@db.internal/peercam (password in PGPASSWORD or ~/.pgpass), for several nodes sharing one database; empty: SQLite in -data"

func readPassword(prompt string) (string, error) {
	fmt.Fprintln(os.Stderr, prompt)
	line, err := bufio.NewReader(os.Stdin).ReadString('\n')
	if err != nil && line == "" {
		return "", errors.New("no password on stdin")
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// parsePrefix reads a CIDR, or a bare address as a one-address prefix.
func parsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	return p.Masked(), err
}

// splitName takes a leading positional NAME so "user add alice -password x"
// works as well as "user add -password x alice".
func splitName(args []string) (string, []string) {
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		return args[0], args[1:]
	}
	return "", args
}
