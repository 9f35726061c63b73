package e2e

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4/pkg/format/rtph264"
	"github.com/pion/webrtc/v4"

	"github.com/peercam/peercam/device-agent/agent"
	"github.com/peercam/peercam/firmware-sim/nvr"
	"github.com/peercam/peercam/rendezvous/server"
)

// whepPlayer plays a camera over WHEP the way a well-behaved player does:
// when its connection fails, or no video came for a while, it POSTs a new
// offer, waiting what a refusal's Retry-After says. It counts decoded
// frames across connections.
type whepPlayer struct {
	t          testing.TB
	url, token string
	// stall is how long without video counts as a failed connection.
	stall time.Duration

	frames atomic.Int64
	mu     sync.Mutex
	// connected holds when each connection's first frame came.
	connected []time.Time
	refusals  []int
}

// play starts a whepPlayer of url with token; stop ends it (and runs at
// cleanup if the test does not call it).
func play(t testing.TB, url, token string) (p *whepPlayer, stop func()) {
	t.Helper()
	p = &whepPlayer{t: t, url: url, token: token, stall: 2 * time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.run(ctx) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return p, stop
}

func (p *whepPlayer) run(ctx context.Context) {
	for ctx.Err() == nil {
		retry := p.once(ctx)
		select {
		case <-ctx.Done():
		case <-time.After(retry):
		}
	}
}

// once makes one connection and plays it until it fails; it returns how
// long to wait before the next.
func (p *whepPlayer) once(ctx context.Context) time.Duration {
	pc := newLoopbackPC(p.t)
	defer pc.Close()
	_, _ = pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly})
	var last atomic.Int64 // unix nanos of the last frame
	first := make(chan struct{})
	var once sync.Once
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		dec := &rtph264.Decoder{PacketizationMode: 1}
		if dec.Init() != nil {
			return
		}
		for {
			pkt, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			if _, err := dec.Decode(pkt); err == nil {
				p.frames.Add(1)
				last.Store(time.Now().UnixNano())
				once.Do(func() { close(first) })
			}
		}
	})
	failed := make(chan struct{})
	var failOnce sync.Once
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateFailed || s == webrtc.PeerConnectionStateClosed {
			failOnce.Do(func() { close(failed) })
		}
	})
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return time.Second
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	_ = pc.SetLocalDescription(offer)
	<-gathered
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, p.url, strings.NewReader(pc.LocalDescription().SDP))
	req.Header.Set("Content-Type", "application/sdp")
	req.Header.Set("Authorization", "Bearer "+p.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return time.Second
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		p.mu.Lock()
		p.refusals = append(p.refusals, resp.StatusCode)
		p.mu.Unlock()
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
			return time.Duration(s) * time.Second
		}
		return 5 * time.Second
	}
	if pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(body)}) != nil {
		return time.Second
	}
	select {
	case <-first:
		p.mu.Lock()
		p.connected = append(p.connected, time.Now())
		p.mu.Unlock()
	case <-failed:
		return 0
	case <-time.After(10 * time.Second):
		return 0
	case <-ctx.Done():
		return 0
	}
	tick := time.NewTicker(p.stall / 4)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return 0
		case <-failed:
			return 0
		case <-tick.C:
			if time.Since(time.Unix(0, last.Load())) > p.stall {
				return 0
			}
		}
	}
}

// The agent restarts under a WHEP player: while it is away, the player's
// offers get 503 with a short Retry-After (not 404), and the player plays
// again within 5 s of the agent registering, by itself.
func TestWHEPAgentRestart(t *testing.T) {
	in := startInfraSim(t, 1, func(c *nvr.Config) { c.KeyframeOnPlay = true })
	var cfg agent.Config
	ag, stop := startAgent(t, in, 1, func(c *agent.Config) { cfg = *c })
	waitFor(t, 10*time.Second, "agent online", func() bool { return in.rv.Hub().Online(ag.ID()) })
	if err := server.ClaimDevice(context.Background(), in.dataDir, ownerName, ag.ID(), "Shop NVR"); err != nil {
		t.Fatal(err)
	}
	token, err := mintToken(context.Background(), in.dataDir, ag.ID(), []string{"1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := play(t, in.rv.URL()+"/whep/"+ag.ID()+"/1", token)
	waitFor(t, 15*time.Second, "WHEP player playing", func() bool { return p.frames.Load() > 25 })

	stop()
	time.Sleep(3 * time.Second)
	restartAgent(t, in, cfg)
	registered := time.Now()
	before := p.frames.Load()
	waitFor(t, 15*time.Second, "WHEP player playing again", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.connected) >= 2 && p.frames.Load() > before+10
	})
	p.mu.Lock()
	back := p.connected[len(p.connected)-1].Sub(registered)
	refusals := append([]int(nil), p.refusals...)
	p.mu.Unlock()
	t.Logf("WHEP player: back %v after the agent registered again; refusals while away: %v", back.Round(10*time.Millisecond), refusals)
	if back > 5*time.Second {
		t.Fatalf("player back %v after the agent registered, want within 5 s", back)
	}
	for _, st := range refusals {
		if st != http.StatusServiceUnavailable {
			t.Fatalf("a POST while the agent was away got %d, want 503 (refusals %v)", st, refusals)
		}
	}
}
