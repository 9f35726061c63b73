package e2e

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/peercam/peercam/device-agent/agent"
	"github.com/peercam/peercam/firmware-sim/nvr"
	"github.com/peercam/peercam/rendezvous/server"
)

const (
	ownerName = "owner"
	ownerPass = "correct horse battery"
)

// system is a whole PeerCam on 127.0.0.1: a simulated 4-channel NVR, a
// rendezvous and an agent claimed by an owner.
type system struct {
	sim     *nvr.Server
	rv      *server.Server
	agent   *agent.Agent
	dataDir string
	// stopAgent takes the agent offline.
	stopAgent func()
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("PEERCAM_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// infra is the part of a system that is not the agent: a simulated NVR with
// channels channels and a rendezvous with an owner account, on 127.0.0.1.
type infra struct {
	sim     *nvr.Server
	rv      *server.Server
	dataDir string
	ctx     context.Context
}

func startInfra(t testing.TB, channels int, mods ...func(*server.Config)) *infra {
	t.Helper()
	return startInfraSim(t, channels, nil, mods...)
}

// startInfraSim is startInfra with the simulator's config changed by sim
// (H.265 or B-frame channels, say).
func startInfraSim(t testing.TB, channels int, simMod func(*nvr.Config), mods ...func(*server.Config)) *infra {
	t.Helper()
	log := testLogger(t)
	simCfg := nvr.DefaultConfig()
	simCfg.Listen = "127.0.0.1:0"
	simCfg.Channels = channels
	simCfg.Logger = log
	if simMod != nil {
		simMod(&simCfg)
	}
	sim, err := nvr.Start(simCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)

	dataDir := t.TempDir()
	rvCfg := server.DefaultConfig()
	rvCfg.DataDir = dataDir
	rvCfg.HTTPAddr = "127.0.0.1:0"
	rvCfg.STUNAddr = "127.0.0.1:0"
	rvCfg.Logger = log
	for _, m := range mods {
		m(&rvCfg)
	}
	rv, err := server.New(rvCfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rvDone := make(chan struct{})
	go func() { defer close(rvDone); _ = rv.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-rvDone })
	if err := server.AddUser(context.Background(), dataDir, ownerName, ownerPass); err != nil {
		t.Fatal(err)
	}
	return &infra{sim: sim, rv: rv, dataDir: dataDir, ctx: ctx}
}

func startSystem(t testing.TB, mods ...func(*server.Config)) *system {
	t.Helper()
	in := startInfra(t, 4, mods...)
	ag, stop := startAgent(t, in, 4, func(c *agent.Config) {
		// A fifth camera whose password is wrong, as happens after someone
		// changes it on the camera: viewers must get a clear error.
		c.Cameras = []agent.CameraConfig{{ID: "gate", Name: "Gate",
			URL: fmt.Sprintf("rtsp://admin:wrong@%s/Streaming/Channels/101", in.sim.Addr())}}
	})
	waitFor(t, 10*time.Second, "agent online", func() bool { return in.rv.Hub().Online(ag.ID()) })
	if err := server.ClaimDevice(context.Background(), in.dataDir, ownerName, ag.ID(), "Shop NVR"); err != nil {
		t.Fatal(err)
	}
	return &system{sim: in.sim, rv: in.rv, agent: ag, dataDir: in.dataDir, stopAgent: stop}
}

// startAgent runs an in-process agent for the infra's first channels NVR
// channels; mod changes its config. stop takes it offline.
func startAgent(t testing.TB, in *infra, channels int, mod func(*agent.Config)) (ag *agent.Agent, stop func()) {
	t.Helper()
	return startAgentLog(t, in, channels, mod, testLogger(t))
}

// startAgentLog is startAgent with the agent's logger.
func startAgentLog(t testing.TB, in *infra, channels int, mod func(*agent.Config), log *slog.Logger) (ag *agent.Agent, stop func()) {
	t.Helper()
	cfg := agent.DefaultConfig()
	cfg.Rendezvous = in.rv.URL()
	cfg.StateDir = filepath.Join(t.TempDir(), "state")
	cfg.WebRTCListen = "127.0.0.1:0"
	cfg.NVR = &agent.NVRConfig{
		URL:      fmt.Sprintf("rtsp://admin:admin@%s/Streaming/Channels/{channel}01", in.sim.Addr()),
		SubURL:   fmt.Sprintf("rtsp://admin:admin@%s/Streaming/Channels/{channel}02", in.sim.Addr()),
		Channels: channels,
	}
	if mod != nil {
		mod(&cfg)
	}
	ag, err := agent.New(cfg, log.With("side", "agent"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(in.ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = ag.Run(ctx) }()
	stop = func() { cancel(); <-done }
	t.Cleanup(stop)
	return ag, stop
}

func waitFor(t testing.TB, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// mintToken is server.MintToken's token alone.
func mintToken(ctx context.Context, dataDir, device string, cameras []string, ttl time.Duration) (string, error) {
	t, err := server.MintToken(ctx, dataDir, device, cameras, ttl)
	return t.Token, err
}

// slogTo is a logger writing text lines to w (and to stderr with
// PEERCAM_TEST_LOG set), for tests that read a component's log.
func slogTo(w io.Writer) *slog.Logger {
	if os.Getenv("PEERCAM_TEST_LOG") != "" {
		w = io.MultiWriter(w, os.Stderr)
	}
	return slog.New(slog.NewTextHandler(w, nil))
}
