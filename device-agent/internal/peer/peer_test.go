package peer

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/pion/sdp/v3"

	"github.com/peercam/peercam/internal/media/h265"
	"github.com/peercam/peercam/proto"
)

func offerWith(t *testing.T, fmtps ...string) *sdp.SessionDescription {
	t.Helper()
	var b strings.Builder
	b.WriteString("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF")
	for i := range fmtps {
		b.WriteString(" " + strconv.Itoa(96+i))
	}
	b.WriteString("\r\nc=IN IP4 0.0.0.0\r\n")
	for i, f := range fmtps {
		pt := strconv.Itoa(96 + i)
		b.WriteString("a=rtpmap:" + pt + " H264/90000\r\na=fmtp:" + pt + " " + f + "\r\n")
	}
	var s sdp.SessionDescription
	if err := s.Unmarshal([]byte(b.String())); err != nil {
		t.Fatal(err)
	}
	return &s
}

func TestChooseH264(t *testing.T) {
	chromium := []string{
		"level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f",
		"level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
		"level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f",
	}
	withHigh := append(chromium[:3:3], "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=64001f")
	tests := []struct {
		name     string
		offer    []string
		sps      []byte
		want     string
		fallback bool
		err      bool
	}{
		{"main with constraint flags the browser does not list", chromium, []byte{0x67, 0x4d, 0x40, 0x1e}, "4d001e", false, false},
		{"constrained baseline", chromium, []byte{0x67, 0x42, 0xe0, 0x1f}, "42e01f", false, false},
		{"high offered", withHigh, []byte{0x67, 0x64, 0x00, 0x28}, "640028", false, false},
		{"high not offered: main stands in", chromium, []byte{0x67, 0x64, 0x00, 0x1f}, "4d001f", true, false},
		{"only packetization-mode 0", []string{"packetization-mode=0;profile-level-id=42e01f"}, []byte{0x67, 0x42, 0xe0, 0x1f}, "", false, true},
		{"no parameter sets", chromium, nil, "", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fmtp, note, err := chooseH264(offerWith(t, tt.offer...), tt.sps)
			if tt.err {
				if !errors.Is(err, ErrCodec) {
					t.Fatalf("err %v, want ErrCodec", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasSuffix(fmtp, "profile-level-id="+tt.want) || !strings.Contains(fmtp, "packetization-mode=1") {
				t.Fatalf("fmtp %q, want profile-level-id=%s", fmtp, tt.want)
			}
			if (note != "") != tt.fallback {
				t.Fatalf("note %q, want fallback=%v", note, tt.fallback)
			}
		})
	}
}

// Candidates trickled before the offer is answered wait for it, within
// bounds, instead of being lost.
func TestEarlyCandidatesBounded(t *testing.T) {
	m := NewManager(Config{Logger: slog.New(slog.DiscardHandler)})
	cand := &proto.Candidate{Session: "s1", Candidate: "candidate:1 1 udp 2130706431 10.0.0.10 40000 typ host"}
	for i := range maxEarly {
		if err := m.AddCandidate(cand); err != nil {
			t.Fatalf("candidate %d: %v", i, err)
		}
	}
	if err := m.AddCandidate(cand); err == nil {
		t.Fatal("no bound on candidates before the offer")
	}
	if err := m.AddCandidate(&proto.Candidate{Session: "s1"}); err != nil {
		t.Fatalf("end of candidates: %v", err)
	}
	m.Bye("s1", "gone")
	m.mu.Lock()
	left := len(m.early)
	m.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d sessions' early candidates kept after bye", left)
	}
	for i := range maxEarlySessions {
		if err := m.AddCandidate(&proto.Candidate{Session: fmt.Sprint("s", i), Candidate: cand.Candidate}); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.AddCandidate(&proto.Candidate{Session: "one-too-many", Candidate: cand.Candidate}); err == nil {
		t.Fatal("no bound on sessions waiting for their offer")
	}
	// Offers that were refused never collect their candidates; once they
	// are stale they make room for new sessions.
	m.mu.Lock()
	for _, e := range m.early {
		e.since = e.since.Add(-2 * earlyTTL)
	}
	m.mu.Unlock()
	if err := m.AddCandidate(&proto.Candidate{Session: "after-refusals", Candidate: cand.Candidate}); err != nil {
		t.Fatalf("stale early candidates still block new sessions: %v", err)
	}
}

// H.265: the camera's profile and tier must be offered; level-id is not
// matched, and the answer states the camera's.
func TestChooseH265(t *testing.T) {
	raw, err := os.ReadFile("../../../firmware-sim/camera/clips/ch1-main.h265")
	if err != nil {
		t.Fatal(err)
	}
	aus, err := h265.SplitAccessUnits(raw)
	if err != nil {
		t.Fatal(err)
	}
	_, sps, _ := h265.ParamSets(aus[0])
	p, _ := h265.ParseSPS(sps)
	offer := func(rtpmaps ...string) *sdp.SessionDescription {
		t.Helper()
		var b strings.Builder
		b.WriteString("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF")
		for i := range rtpmaps {
			b.WriteString(" " + strconv.Itoa(96+i))
		}
		b.WriteString("\r\nc=IN IP4 0.0.0.0\r\n")
		for i, r := range rtpmaps {
			name, fmtp, _ := strings.Cut(r, " ")
			pt := strconv.Itoa(96 + i)
			b.WriteString("a=rtpmap:" + pt + " " + name + "/90000\r\na=fmtp:" + pt + " " + fmtp + "\r\n")
		}
		var s sdp.SessionDescription
		if err := s.Unmarshal([]byte(b.String())); err != nil {
			t.Fatal(err)
		}
		return &s
	}
	for _, tt := range []struct {
		name  string
		offer []string
		ok    bool
	}{
		{"Safari's Main offer, another level", []string{"H265 level-id=180;profile-id=1;tier-flag=0;tx-mode=SRST"}, true},
		{"Main 10 only", []string{"H265 level-id=93;profile-id=2;tier-flag=0;tx-mode=SRST"}, false},
		{"high tier only", []string{"H265 level-id=93;profile-id=1;tier-flag=1;tx-mode=SRST"}, false},
		{"no H.265 at all", []string{"H264 packetization-mode=1;profile-level-id=42e01f"}, false},
		{"defaults (no fmtp params)", []string{"H265 x=1"}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fmtp, err := chooseH265(offer(tt.offer...), sps)
			if !tt.ok {
				if !errors.Is(err, ErrCodec) {
					t.Fatalf("err %v, want ErrCodec", err)
				}
				return
			}
			if err != nil || fmtp != p.Fmtp() {
				t.Fatalf("fmtp %q (%v), want the camera's %q", fmtp, err, p.Fmtp())
			}
		})
	}
}

// Whatever SDP a viewer sends, the agent's codec handling returns.
func FuzzOffer(f *testing.F) {
	f.Add("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96 97\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1;profile-level-id=42e01f\r\na=rtpmap:97 H265/90000\r\na=fmtp:97 profile-id=1\r\n")
	sps264 := []byte{0x67, 0x42, 0xe0, 0x1f}
	f.Fuzz(func(t *testing.T, s string) {
		_ = OfferedCodecs(s)
		var d sdp.SessionDescription
		if d.Unmarshal([]byte(s)) != nil {
			return
		}
		_, _, _ = chooseH264(&d, sps264)
		_, _ = chooseH265(&d, []byte{0x42, 0x01})
		_ = offersAudio(&d, "audio/PCMU")
	})
}
