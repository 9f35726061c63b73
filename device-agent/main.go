// Command device-agent runs on a DVR/NVR, or a small box beside it: it pulls
// the cameras' RTSP streams and serves them to viewers over WebRTC, with one
// outbound link to the rendezvous for signaling.
package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	// Recorders often ship without CA certificates: this set is used only
	// when the system has none.
	_ "golang.org/x/crypto/x509roots/fallback"

	"github.com/peercam/peercam/device-agent/agent"
	"github.com/peercam/peercam/device-agent/internal/identity"
	"github.com/peercam/peercam/internal/logging"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "discover" {
		discover(os.Args[2:])
		return
	}
	path := flag.String("config", "", "YAML config file (see README)")
	rendezvous := flag.String("rendezvous", "", "rendezvous URL (overrides the config file)")
	stateDir := flag.String("state-dir", "", "state directory (overrides the config file)")
	webrtcListen := flag.String("webrtc-listen", "", "UDP address for WebRTC (overrides the config file)")
	var memoryLimit *agent.Size
	flag.Func("memory-limit", "soft memory limit, e.g. 48MiB, or off (overrides the config file and GOMEMLIMIT; default 48MiB)", func(v string) error {
		memoryLimit = new(agent.Size)
		return memoryLimit.UnmarshalText([]byte(v))
	})
	printID := flag.Bool("print-id", false, "print the device ID (creating the key if needed) and exit")
	version := flag.Bool("version", false, "print the version and exit")
	flag.Parse()

	if *version {
		fmt.Println(agent.BuildInfo())
		return
	}
	cfg, err := agent.LoadConfig(*path)
	if err != nil {
		fail(err)
	}
	if *rendezvous != "" {
		cfg.Rendezvous = *rendezvous
	}
	if *stateDir != "" {
		cfg.StateDir = *stateDir
	}
	if *webrtcListen != "" {
		cfg.WebRTCListen = *webrtcListen
	}
	if memoryLimit != nil {
		cfg.MemoryLimit = *memoryLimit
	}
	if *printID {
		id, err := identity.Load(cfg.StateDir)
		if err != nil {
			fail(err)
		}
		fmt.Println(id.ID)
		return
	}
	if err := cfg.Validate(); err != nil {
		fail(err)
	}
	if cfg.MemoryLimit > 0 {
		debug.SetMemoryLimit(int64(cfg.MemoryLimit))
	} else {
		debug.SetMemoryLimit(math.MaxInt64)
	}
	logOut := cfg.LogWriter()
	defer logOut.Close()
	log, err := logging.New(logOut, cfg.LogLevel)
	if err != nil {
		fail(fmt.Errorf("agent: log_level: %w", err))
	}
	a, err := agent.New(cfg, log)
	if err != nil {
		fail(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := a.Run(ctx); err != nil {
		fail(err)
	}
}

// discover finds ONVIF cameras on the LAN and prints a cameras: block.
func discover(args []string) {
	fs := flag.NewFlagSet("discover", flag.ExitOnError)
	var o agent.DiscoverOptions
	fs.StringVar(&o.User, "user", "", "ONVIF user name (often the camera's admin account)")
	fs.StringVar(&o.Pass, "pass", "", "ONVIF password")
	fs.StringVar(&o.Probe, "probe", "", "where to send the WS-Discovery probe (default the LAN multicast group "+agent.DiscoveryGroup+")")
	fs.DurationVar(&o.Wait, "wait", 3*time.Second, "how long to wait for answers")
	fs.Func("host", "ask this device directly (address, address:port or device service URL; repeatable) instead of probing", func(v string) error {
		o.Hosts = append(o.Hosts, v)
		return nil
	})
	_ = fs.Parse(args)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := agent.Discover(ctx, o, os.Stdout); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "device-agent:", err)
	os.Exit(1)
}
