package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4/pkg/format/rtph264"
	"github.com/bluenviron/gortsplib/v4/pkg/format/rtph265"
	"github.com/chromedp/chromedp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/peercam/peercam/device-agent/agent"
	"github.com/peercam/peercam/firmware-sim/isapi"
	"github.com/peercam/peercam/firmware-sim/nvr"
	"github.com/peercam/peercam/internal/media/h264"
	"github.com/peercam/peercam/internal/media/h265"
	"github.com/peercam/peercam/rendezvous/server"
)

// startColdH265 is a camera whose main stream is H.265 and pulled only
// while watched, and an agent that asks it for keyframes over ask: "rtcp"
// (the camera honours PLI/FIR on its RTSP session), "isapi" (it ignores
// those and takes Hikvision's requestKeyFrame) or "none" (the agent does
// not ask).
func startColdH265(tb testing.TB, ask string) *system {
	tb.Helper()
	in := startInfraSim(tb, 1, func(c *nvr.Config) {
		c.H265Channels = []int{1}
		c.IgnoreRTCPKeyframeRequests = ask == "isapi"
	}, benchOpens)
	web := httptest.NewServer(isapi.Handler("admin", "admin", in.sim.Keyframe, slog.New(slog.DiscardHandler)))
	tb.Cleanup(web.Close)
	ag, stop := startAgent(tb, in, 1, func(c *agent.Config) {
		c.Linger, c.KeyframeRequests = time.Millisecond, ask != "none"
		if ask == "isapi" {
			c.NVR.ISAPI = web.URL
		}
	})
	waitFor(tb, 10*time.Second, "agent online", func() bool { return in.rv.Hub().Online(ag.ID()) })
	if err := server.ClaimDevice(context.Background(), in.dataDir, ownerName, ag.ID(), "Shop"); err != nil {
		tb.Fatal(err)
	}
	return &system{sim: in.sim, rv: in.rv, agent: ag, dataDir: in.dataDir, stopAgent: stop}
}

// The first viewer of a cold H.265 main stream (which the H.264 sub stream
// cannot start) makes the agent ask the camera for a keyframe: over ISAPI
// from the camera's entry, signed with the RTSP credentials; the stream's
// counter and the camera's agree.
func TestColdH265AsksForKeyframe(t *testing.T) {
	sys := startColdH265(t, "isapi")
	res := watchCodec(t, sys, "1", webrtc.MimeTypeH265, offerH265, 5)
	if res.status != 201 || res.codec != "H265" || res.stream != "main" {
		t.Fatalf("WHEP %d, served %s/%s", res.status, res.stream, res.codec)
	}
	rtcp, http := sys.sim.KeyframeRequests()
	asked := sys.agent.Stream("1", "main").Stats().KeyframesAsked
	if http == 0 || rtcp != 0 || asked == 0 {
		t.Fatalf("camera got %d ISAPI and %d RTCP requests it honoured; the agent counted %d sent", http, rtcp, asked)
	}
	t.Logf("first keyframe %s after the POST", res.firstKey.Round(time.Millisecond))
}

// A recorder like the ones people own: channel 1's main stream is H.265 Main
// (its sub stream H.264), channel 2's main stream has B-frames, channel 3 is
// plain H.264. Main streams are kept pulled, so they are warm.
func startRecorderSystem(t testing.TB, mods ...func(*server.Config)) *system {
	t.Helper()
	in := startInfraSim(t, 3, func(c *nvr.Config) {
		c.H265Channels = []int{1}
		c.BFrameChannels = []int{2}
	}, mods...)
	ag, stop := startAgent(t, in, 3, func(c *agent.Config) { c.NVR.AlwaysOn = true })
	waitFor(t, 10*time.Second, "agent online", func() bool { return in.rv.Hub().Online(ag.ID()) })
	if err := server.ClaimDevice(context.Background(), in.dataDir, ownerName, ag.ID(), "Recorder"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "warm main streams and the B-frames seen", func() bool {
		return ag.Stream("1", "main").Stats().GOP > 0 && ag.Stream("2", "main").HasBFrames()
	})
	return &system{sim: in.sim, rv: in.rv, agent: ag, dataDir: in.dataDir, stopAgent: stop}
}

// codecPC is a pion viewer that offers only the given video codec, as a
// browser without H.265 (or one with only H.265) would.
func codecPC(t testing.TB, mime, fmtp string) *webrtc.PeerConnection {
	t.Helper()
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	me := &webrtc.MediaEngine{}
	fb := []webrtc.RTCPFeedback{{Type: "nack"}, {Type: "nack", Parameter: "pli"}}
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{PayloadType: 102,
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: mime, ClockRate: 90000, SDPFmtpLine: fmtp, RTCPFeedback: fb}},
		webrtc.RTPCodecTypeVideo); err != nil {
		t.Fatal(err)
	}
	pc, err := webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(me)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	return pc
}

const (
	offerH265 = "level-id=93;profile-id=1;tier-flag=0;tx-mode=SRST"
	offerH264 = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"
)

// whepCodec is what a codec-limited WHEP viewer got.
type whepCodec struct {
	status                 int
	answer                 string
	stream, codec, note    string
	aus                    [][][]byte
	firstKey               time.Duration
	paramSetsBeforeFirstAU bool
}

// watchCodec plays a camera through WHEP with a viewer that offers only
// mime, until frames access units have arrived.
func watchCodec(t testing.TB, sys *system, camera, mime, fmtp string, frames int) whepCodec {
	t.Helper()
	token, err := mintToken(context.Background(), sys.dataDir, sys.agent.ID(), []string{camera}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pc := codecPC(t, mime, fmtp)
	defer pc.Close()
	aus := make(chan [][]byte, 1024)
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		var decode func(*rtp.Packet) ([][]byte, error)
		if strings.EqualFold(tr.Codec().MimeType, webrtc.MimeTypeH265) {
			d := &rtph265.Decoder{}
			if d.Init() != nil {
				return
			}
			decode = d.Decode
		} else {
			d := &rtph264.Decoder{PacketizationMode: 1}
			if d.Init() != nil {
				return
			}
			decode = d.Decode
		}
		for {
			pkt, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			if au, err := decode(pkt); err == nil {
				select {
				case aus <- au:
				default:
				}
			}
		}
	})
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	start := time.Now()
	req, _ := http.NewRequest("POST", sys.rv.URL()+"/whep/"+sys.agent.ID()+"/"+camera, strings.NewReader(pc.LocalDescription().SDP))
	req.Header.Set("Content-Type", "application/sdp")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	res := whepCodec{status: resp.StatusCode, answer: string(body), stream: resp.Header.Get("PeerCam-Stream"),
		codec: resp.Header.Get("PeerCam-Codec"), note: resp.Header.Get("PeerCam-Note")}
	if resp.StatusCode != http.StatusCreated {
		return res
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: res.answer}); err != nil {
		t.Fatal(err)
	}
	defer func() {
		// End the session at once, so a benchmark's next view gets a slot.
		del, _ := http.NewRequest("DELETE", sys.rv.URL()+resp.Header.Get("Location"), nil)
		del.Header.Set("Authorization", "Bearer "+token)
		if r, err := http.DefaultClient.Do(del); err == nil {
			r.Body.Close()
		}
	}()
	isKey := h264.IsKeyframe
	if mime == webrtc.MimeTypeH265 {
		isKey = h265.IsKeyframe
	}
	timeout := time.After(20 * time.Second)
	for len(res.aus) < frames {
		select {
		case au := <-aus:
			if len(res.aus) == 0 {
				if !isKey(au) {
					continue // a decoder cannot start here; count from the first keyframe
				}
				res.firstKey = time.Since(start)
				if mime == webrtc.MimeTypeH265 {
					v, s, p := h265.ParamSets(au)
					res.paramSetsBeforeFirstAU = v != nil && s != nil && p != nil && h265.NALType(au[0]) == h265.TypeVPS
				} else {
					s, p := h264.ParamSets(au)
					res.paramSetsBeforeFirstAU = s != nil && p != nil
				}
			}
			res.aus = append(res.aus, au)
		case <-timeout:
			t.Fatalf("only %d access units after 20 s", len(res.aus))
		}
	}
	return res
}

// ffprobeES decodes an elementary stream with ffmpeg's decoder and returns
// the frame count and size.
func ffprobeES(t testing.TB, aus [][][]byte, format string) (frames, width, height int) {
	t.Helper()
	var buf bytes.Buffer
	for _, au := range aus {
		for _, n := range au {
			buf.Write([]byte{0, 0, 0, 1})
			buf.Write(n)
		}
	}
	path := filepath.Join(t.TempDir(), "stream."+format)
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ffprobe", "-v", "error", "-f", format, "-count_frames", "-select_streams", "v:0",
		"-show_entries", "stream=nb_read_frames,width,height", "-of", "csv=p=0", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe: %v\n%s", err, out)
	}
	f := strings.Split(strings.TrimSpace(string(out)), ",")
	if len(f) != 3 {
		t.Fatalf("ffprobe said %q", out)
	}
	width, _ = strconv.Atoi(f[0])
	height, _ = strconv.Atoi(f[1])
	frames, _ = strconv.Atoi(f[2])
	return frames, width, height
}

// A viewer whose offer lists H.265 gets the camera's H.265 main stream: the
// answer's fmtp is the camera's, VPS/SPS/PPS come before the first IRAP, the
// warm stream's first keyframe is there at once, and what arrives decodes.
func TestH265PassThrough(t *testing.T) {
	sys := startRecorderSystem(t)
	res := watchCodec(t, sys, "1", webrtc.MimeTypeH265, offerH265, 50)
	if res.status != 201 {
		t.Fatalf("WHEP: %d %s", res.status, res.answer)
	}
	if res.stream != "main" || res.codec != "H265" || res.note != "" {
		t.Fatalf("served %s/%s (%q), want the H.265 main stream", res.stream, res.codec, res.note)
	}
	sps := firstSPS(t, res.aus)
	p, err := h265.ParseSPS(sps)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(res.answer, "H265/90000") || !strings.Contains(res.answer, p.Fmtp()) {
		t.Fatalf("answer lacks H265 with the camera's fmtp %q:\n%s", p.Fmtp(), res.answer)
	}
	if !res.paramSetsBeforeFirstAU {
		t.Fatal("the first IRAP did not start with VPS, SPS and PPS")
	}
	frames, w, h := ffprobeES(t, res.aus, "hevc")
	t.Logf("H.265: first keyframe %v after the POST; %d of %d access units decode at %dx%d", res.firstKey.Round(time.Millisecond), frames, len(res.aus), w, h)
	if w != 1280 || h != 720 || frames != len(res.aus) {
		t.Fatalf("ffmpeg decoded %d frames at %dx%d, want %d at 1280x720", frames, w, h, len(res.aus))
	}
	if res.firstKey > 2*time.Second {
		t.Fatalf("first keyframe of a warm H.265 stream after %v: the GOP cache did not serve it", res.firstKey)
	}
}

func firstSPS(t testing.TB, aus [][][]byte) []byte {
	t.Helper()
	for _, au := range aus {
		if _, s, _ := h265.ParamSets(au); s != nil {
			return s
		}
	}
	t.Fatal("no SPS in the stream")
	return nil
}

// A viewer that cannot play H.265 gets the H.264 sub stream, told why; one
// that can gets the main stream at the same time, from the same pulls.
func TestH265FallbackToSub(t *testing.T) {
	sys := startRecorderSystem(t)
	h264Only := watchCodec(t, sys, "1", webrtc.MimeTypeH264, offerH264, 20)
	if h264Only.status != 201 || h264Only.stream != "sub" || h264Only.codec != "H264" || !strings.Contains(h264Only.note, "cannot play H.265") {
		t.Fatalf("H.264-only viewer of an H.265 camera: %d, %s/%s %q", h264Only.status, h264Only.stream, h264Only.codec, h264Only.note)
	}
	if _, w, h := ffprobeES(t, h264Only.aus, "h264"); w != 640 || h != 360 {
		t.Fatalf("H.264-only viewer decoded %dx%d, want the sub stream's 640x360", w, h)
	}
	h265Viewer := watchCodec(t, sys, "1", webrtc.MimeTypeH265, offerH265, 10)
	if h265Viewer.stream != "main" || h265Viewer.codec != "H265" {
		t.Fatalf("H.265 viewer beside it got %s/%s", h265Viewer.stream, h265Viewer.codec)
	}
	// A channel whose main stream is H.264 plays as before.
	plain := watchCodec(t, sys, "3", webrtc.MimeTypeH264, offerH264, 10)
	if plain.stream != "main" || plain.note != "" {
		t.Fatalf("plain H.264 channel: %s %q", plain.stream, plain.note)
	}
	// A main stream with B-frames goes out from the clean sub stream.
	bf := watchCodec(t, sys, "2", webrtc.MimeTypeH264, offerH264, 10)
	if bf.stream != "sub" || !strings.Contains(bf.note, "B-frames") {
		t.Fatalf("B-frame channel: %s %q, want the sub stream with a B-frames note", bf.stream, bf.note)
	}
}

// Headless Chromium here cannot decode H.265: on the H.265 camera it plays
// the H.264 sub stream and says why; on the B-frame camera, the clean sub
// stream, decoded without losses.
func TestBrowserH265AndBFramesFallBack(t *testing.T) {
	sys := startRecorderSystem(t)
	ctx := chromium(t)
	signIn(t, ctx, sys)
	for _, tt := range []struct {
		camera, says, shot string
	}{
		{"1", "cannot play H.265", "live-h265-fallback"},
		{"2", "B-frames", "live-bframes-fallback"},
	} {
		do(t, ctx, 30*time.Second, "camera "+tt.camera+" falls back to its sub stream",
			evalJS(fmt.Sprintf(`location.hash = '#/d/%s/c/%s'`, sys.agent.ID(), tt.camera)),
			waitJS(`(() => { const s = window.peercam.sessions()[0]; return s && s.camera === `+strconv.Quote(tt.camera)+` && s.framesDecoded > 45 && s.width === 640; })()`),
			waitJS(`document.querySelector('.status').textContent.includes('Sub stream') &&
				document.querySelector('.status').textContent.includes(`+strconv.Quote(tt.says)+`)`),
		)
		st := sessionStats(t, ctx)[0]
		t.Logf("camera %s: %d frames decoded at %dx%d", tt.camera, st.FramesDecoded, st.Width, st.Height)
		screenshot(t, ctx, tt.shot)
		// Without artefacts: the decoder drops nothing and asks for no
		// keyframe (B-frames made Chromium do both).
		bad, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`(() => { const s = window.peercam.sessions()[0]; return (s.framesDropped || 0) + (s.pliCount || 0); })()`))
		if err != nil {
			t.Fatal(err)
		}
		if bad > 3 {
			t.Fatalf("camera %s: %v frames dropped or keyframes asked for: the decoder struggles", tt.camera, bad)
		}
	}
}
