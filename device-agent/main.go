// Command device-agent runs on a DVR/NVR, or a small box beside it: it pulls
// the cameras' RTSP streams and serves them to viewers over WebRTC, with one
// outbound link to the rendezvous for signaling.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/peercam/peercam/device-agent/agent"
	"github.com/peercam/peercam/device-agent/internal/identity"
	"github.com/peercam/peercam/internal/logging"
)

func main() {
	path := flag.String("config", "", "YAML config file (see README)")
	rendezvous := flag.String("rendezvous", "", "rendezvous URL (overrides the config file)")
	stateDir := flag.String("state-dir", "", "state directory (overrides the config file)")
	webrtcListen := flag.String("webrtc-listen", "", "UDP address for WebRTC (overrides the config file)")
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
	if *printID {
		id, err := identity.Load(cfg.StateDir)
		if err != nil {
			fail(err)
		}
		fmt.Println(id.ID)
		return
	}
	log, err := logging.New(os.Stderr, cfg.LogLevel)
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

func fail(err error) {
	fmt.Fprintln(os.Stderr, "device-agent:", err)
	os.Exit(1)
}
