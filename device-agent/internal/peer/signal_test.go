package peer

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/peercam/peercam/device-agent/internal/fanout"
	"github.com/peercam/peercam/firmware-sim/camera"
	"github.com/peercam/peercam/firmware-sim/nvr"
	"github.com/peercam/peercam/internal/logging"
	"github.com/peercam/peercam/proto"
)

// recorder collects what a session signals, in order.
type recorder struct {
	mu   sync.Mutex
	msgs []proto.Message
	done chan struct{} // closed at end of candidates
}

func (r *recorder) send(m proto.Message) {
	if _, ok := m.(*proto.Answer); ok {
		// A real link takes a moment to write the answer; pion gathers
		// meanwhile.
		time.Sleep(20 * time.Millisecond)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, m)
	if c, ok := m.(*proto.Candidate); ok && c.Candidate == "" {
		close(r.done)
	}
}

// testCamera is a real RTSP camera (firmware-sim) behind a fanout stream.
func testCamera(t *testing.T) *fanout.Stream {
	t.Helper()
	cfg := nvr.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.Audio = false
	cfg.Logger = slog.New(slog.DiscardHandler)
	srv, err := nvr.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	st := fanout.New(fanout.Config{Name: "test", URL: srv.URL(1, camera.Sub), Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(st.Close)
	return st
}

// viewerOffer is a browser-like recvonly offer.
func viewerOffer(t *testing.T) string {
	t.Helper()
	pc, err := webrtc.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	return offer.SDP
}

// A viewer cannot add a candidate before it has the answer: every trickled
// candidate, however fast pion gathers it, follows the answer.
func TestCandidatesFollowTheAnswer(t *testing.T) {
	udp, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	m := NewManager(Config{UDPMux: webrtc.NewICEUDPMux(logging.PionFactory{Log: slog.New(slog.DiscardHandler)}.NewLogger("udpmux"), udp), IncludeLoopback: true, Logger: slog.New(slog.DiscardHandler)})
	defer m.Close()
	st := testCamera(t)
	offer := viewerOffer(t)
	for i := range 20 {
		r := &recorder{done: make(chan struct{})}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		id := "s" + string(rune('a'+i))
		err := m.Offer(ctx, Request{Session: id, SDP: offer, Trickle: true, Camera: "1", Stream: st, Send: r.send})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-r.done:
		case <-time.After(10 * time.Second):
			t.Fatal("no end of candidates")
		}
		r.mu.Lock()
		msgs := r.msgs
		r.mu.Unlock()
		if _, ok := msgs[0].(*proto.Answer); !ok {
			t.Fatalf("session %d: first message is a %s, not the answer", i, msgs[0].MessageType())
		}
		if len(msgs) < 3 {
			t.Fatalf("session %d: %d messages, want the answer, candidates and their end", i, len(msgs))
		}
		m.Bye(id, "done")
	}
}
