package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4/pkg/format/rtph264"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"

	"github.com/peercam/peercam/internal/media/h264"
)

// whepResult is what a WHEP viewer saw.
type whepResult struct {
	frames, keyframes int
	width, height     int
	firstFrame        time.Duration
	audioCodec        string
	audioPackets      int64
}

// newLoopbackPC makes a pion peer connection that gathers on 127.0.0.1 only.
func newLoopbackPC(t testing.TB) *webrtc.PeerConnection {
	t.Helper()
	return loopbackPC(t, nil)
}

// loopbackPC is newLoopbackPC with the given interceptors; nil means
// pion's defaults (NACKs, reports, TWCC, stats), an empty registry none.
func loopbackPC(t testing.TB, ir *interceptor.Registry) *webrtc.PeerConnection {
	t.Helper()
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	opts := []func(*webrtc.API){webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(me)}
	if ir != nil {
		opts = append(opts, webrtc.WithInterceptorRegistry(ir))
	}
	pc, err := webrtc.NewAPI(opts...).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	return pc
}

// whepPost sends a complete offer and returns the HTTP status, the Location
// and the answer or error text.
func whepPost(t testing.TB, url, token string, pc *webrtc.PeerConnection) (int, string, string) {
	t.Helper()
	return whepPostWith(t, http.DefaultClient, url, token, pc)
}

// whepPostWith is whepPost through a given HTTP client (one that trusts a
// test CA, say).
func whepPostWith(t testing.TB, client *http.Client, url, token string, pc *webrtc.PeerConnection) (int, string, string) {
	t.Helper()
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(pc.LocalDescription().SDP))
	req.Header.Set("Content-Type", "application/sdp")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Location"), string(body)
}

// watchWHEP plays a camera through WHEP until it has seen want frames.
func watchWHEP(t testing.TB, base, token string, want int) whepResult {
	t.Helper()
	return watchWHEPWithin(t, http.DefaultClient, base, token, want, 20*time.Second)
}

// watchWHEPWithin is watchWHEP through client, with a deadline for all want
// frames.
func watchWHEPWithin(t testing.TB, client *http.Client, base, token string, want int, within time.Duration) whepResult {
	t.Helper()
	pc := newLoopbackPC(t)
	defer pc.Close()
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	type frameEvt struct {
		au [][]byte
	}
	frames := make(chan frameEvt, 256)
	var audioPackets atomic.Int64
	var audioCodec atomic.Value
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		if tr.Kind() != webrtc.RTPCodecTypeVideo {
			audioCodec.Store(tr.Codec().MimeType)
			for {
				if _, _, err := tr.ReadRTP(); err != nil {
					return
				}
				audioPackets.Add(1)
			}
		}
		dec := &rtph264.Decoder{PacketizationMode: 1}
		if err := dec.Init(); err != nil {
			return
		}
		for {
			pkt, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			au, err := dec.Decode(pkt)
			if err != nil {
				continue
			}
			select {
			case frames <- frameEvt{au}:
			default:
			}
		}
	})
	start := time.Now()
	status, loc, answer := whepPostWith(t, client, base, token, pc)
	if status != http.StatusCreated {
		t.Fatalf("WHEP POST: %d %s", status, answer)
	}
	if !strings.HasPrefix(loc, "/whep/") {
		t.Fatalf("Location %q", loc)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	var res whepResult
	timeout := time.After(within)
	for res.frames < want {
		select {
		case f := <-frames:
			if res.frames == 0 {
				res.firstFrame = time.Since(start)
				if !h264.IsKeyframe(f.au) {
					t.Fatal("first frame is not a keyframe: a decoder could not start from it")
				}
			}
			res.frames++
			if h264.IsKeyframe(f.au) {
				res.keyframes++
				if sps, _ := h264.ParamSets(f.au); sps != nil {
					res.width, res.height, _ = h264.Size(sps)
				} else {
					t.Fatal("keyframe without SPS/PPS in front")
				}
			}
		case <-timeout:
			t.Fatalf("only %d frames after %s", res.frames, within)
		}
	}
	res.audioPackets = audioPackets.Load()
	if c, ok := audioCodec.Load().(string); ok {
		res.audioCodec = c
	}
	// DELETE ends the session at the agent.
	req, _ := http.NewRequest(http.MethodDelete, strings.Split(base, "/whep/")[0]+loc, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("WHEP DELETE: %d", resp.StatusCode)
	}
	return res
}

func TestWHEP(t *testing.T) {
	sys := startSystem(t)
	token, err := mintToken(context.Background(), sys.dataDir, sys.agent.ID(), []string{"2"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("%s/whep/%s/2", sys.rv.URL(), sys.agent.ID())

	res := watchWHEP(t, url, token, 30)
	t.Logf("WHEP channel 2: %d frames, first after %v, %dx%d", res.frames, res.firstFrame, res.width, res.height)
	if res.width != 1280 || res.height != 720 {
		t.Fatalf("decoded size %dx%d, want the main stream's 1280x720", res.width, res.height)
	}
	if res.audioCodec != "audio/PCMU" || res.audioPackets == 0 {
		t.Fatalf("audio: codec %q, %d packets; want the camera's G.711 µ-law passed through", res.audioCodec, res.audioPackets)
	}
	waitFor(t, 5*time.Second, "session closed at the agent after DELETE", func() bool {
		return sys.agent.Stream("2", "main").Stats().Viewers == 0
	})

	// A second viewer joins a warm stream: the GOP cache gives it a keyframe
	// at once, not at the camera's next one (up to 4 s away).
	res2 := watchWHEP(t, url, token, 1)
	t.Logf("warm stream: first frame after %v", res2.firstFrame)

	otherCam, _ := mintToken(context.Background(), sys.dataDir, sys.agent.ID(), []string{"1"}, time.Hour)
	refusals := []struct {
		name, token string
		status      int
	}{
		{"missing token", "", http.StatusUnauthorized},
		{"garbage token", "not.a.token", http.StatusUnauthorized},
		{"tampered token", token[:len(token)-4] + "AAAA", http.StatusUnauthorized},
		{"token for another camera", otherCam, http.StatusForbidden},
	}
	for _, r := range refusals {
		t.Run(r.name, func(t *testing.T) {
			pc := newLoopbackPC(t)
			defer pc.Close()
			_, _ = pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly})
			status, _, body := whepPost(t, url, r.token, pc)
			if status != r.status {
				t.Fatalf("status %d (%s), want %d", status, body, r.status)
			}
			if strings.TrimSpace(body) == "" {
				t.Fatal("refusal without a message")
			}
		})
	}
	if n := sys.rv.Hub().SessionCount(); n != 0 {
		t.Fatalf("%d sessions left at the hub", n)
	}
}
