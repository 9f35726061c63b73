package fanout

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4/pkg/format/rtph264"

	"github.com/peercam/peercam/device-agent/internal/rtspsource"
	"github.com/peercam/peercam/firmware-sim/camera"
	"github.com/peercam/peercam/internal/media/h264"
)

// fakeCamera is a camera as rtspsource would present it: an Info, then access
// units pushed by the test.
type fakeCamera struct {
	clip   *camera.Clip
	aus    chan [][]byte
	starts atomic.Int32
	err    error
	// noInBandParams: keyframes arrive without SPS/PPS, which such
	// cameras send only in the SDP.
	noInBandParams bool
}

func newFakeCamera(t *testing.T) *fakeCamera {
	clip, err := camera.LoadClip(1, camera.Sub)
	if err != nil {
		t.Fatal(err)
	}
	return &fakeCamera{clip: clip, aus: make(chan [][]byte, 1000)}
}

func (f *fakeCamera) run(ctx context.Context, _ rtspsource.Config, h rtspsource.Handler) error {
	f.starts.Add(1)
	if f.err != nil {
		return f.err
	}
	h.OnInfo(rtspsource.Info{SPS: f.clip.SPS, PPS: f.clip.PPS})
	ts := uint32(0)
	for {
		select {
		case <-ctx.Done():
			return nil
		case au := <-f.aus:
			if f.noInBandParams {
				var slices [][]byte
				for _, n := range au {
					if t := h264.NALType(n); t != h264.TypeSPS && t != h264.TypePPS {
						slices = append(slices, n)
					}
				}
				au = slices
			}
			h.OnVideo(au, ts)
			ts += 6000
		}
	}
}

// send pushes clip frames [from, to) and waits until the stream took them.
func (f *fakeCamera) send(t *testing.T, s *Stream, from, to int) {
	t.Helper()
	before := s.frames.Load()
	for i := from; i < to; i++ {
		f.aus <- f.clip.AUs[i]
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.frames.Load() < before+uint64(to-from) {
		if time.Now().After(deadline) {
			t.Fatal("stream did not take the frames")
		}
		time.Sleep(time.Millisecond)
	}
}

func newStream(t *testing.T, f *fakeCamera, cfg Config) *Stream {
	cfg.Name = "test"
	cfg.run = f.run
	cfg.Logger = slog.New(slog.DiscardHandler)
	s := New(cfg)
	t.Cleanup(s.Close)
	return s
}

func drain(sub *Sub) []*Frame {
	var out []*Frame
	for {
		select {
		case f := <-sub.C():
			out = append(out, f)
		default:
			return out
		}
	}
}

func TestGOPCacheStartsNewViewerAtKeyframe(t *testing.T) {
	cam := newFakeCamera(t)
	cam.noInBandParams = true
	s := newStream(t, cam, Config{})
	info, err := s.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Release()
	if info.Width != 640 || info.Height != 360 {
		t.Fatalf("info %dx%d", info.Width, info.Height)
	}
	// Frames 0..29 are one GOP (keyframe every 30); 30..39 start the next.
	cam.send(t, s, 0, 40)
	sub := s.Subscribe(100)
	defer s.Unsubscribe(sub)
	got := drain(sub)
	if len(got) != 10 {
		t.Fatalf("new viewer got %d cached frames, want the 10 since the last keyframe", len(got))
	}
	if !got[0].Keyframe {
		t.Fatal("cache does not start with the keyframe")
	}
	for _, f := range got[1:] {
		if f.Keyframe {
			t.Fatal("second keyframe in one GOP")
		}
	}
	// Live frames follow the cache.
	cam.send(t, s, 40, 41)
	if live := drain(sub); len(live) != 1 || live[0].Keyframe {
		t.Fatalf("live frames after the cache: %d", len(live))
	}
	// The cached keyframe carries SPS and PPS, so a decoder can start there.
	dec := &rtph264.Decoder{PacketizationMode: 1}
	if err := dec.Init(); err != nil {
		t.Fatal(err)
	}
	var au [][]byte
	for _, p := range got[0].Packets {
		if a, err := dec.Decode(p); err == nil {
			au = a
		}
	}
	if sps, pps := h264.ParamSets(au); sps == nil || pps == nil {
		t.Fatal("cached keyframe lacks SPS/PPS")
	}
	if st := s.Stats(); st.GOP != 11 || st.Viewers != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestSlowViewerDropsAloneAndResumesAtKeyframe(t *testing.T) {
	cam := newFakeCamera(t)
	s := newStream(t, cam, Config{})
	if _, err := s.Acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Release()
	cam.send(t, s, 0, 1) // a keyframe to start from
	slow := s.Subscribe(4)
	fast := s.Subscribe(1000)
	defer s.Unsubscribe(slow)
	defer s.Unsubscribe(fast)

	cam.send(t, s, 1, 45) // no one reads: the slow queue overflows
	if n := len(drain(fast)); n != 45 {
		t.Fatalf("fast viewer got %d frames, want all 45", n)
	}
	got := drain(slow)
	if len(got) != 4 {
		t.Fatalf("slow viewer queued %d frames, want its 4", len(got))
	}
	if slow.Dropped.Load() == 0 || s.Stats().Dropped == 0 {
		t.Fatal("drops were not counted")
	}
	// After a drop the slow viewer gets nothing until the next keyframe
	// (frame 60), so its decoder never sees a frame with a missing reference.
	cam.send(t, s, 45, 62)
	got = drain(slow)
	if len(got) == 0 || !got[0].Keyframe {
		t.Fatalf("slow viewer resumed with %d frames, first keyframe=%v", len(got), len(got) > 0 && got[0].Keyframe)
	}
}

func TestResyncReplaysGOP(t *testing.T) {
	cam := newFakeCamera(t)
	s := newStream(t, cam, Config{})
	if _, err := s.Acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Release()
	cam.send(t, s, 0, 5)
	sub := s.Subscribe(100)
	defer s.Unsubscribe(sub)
	cam.send(t, s, 5, 8)
	sub.Resync()
	got := drain(sub)
	if len(got) != 8 || !got[0].Keyframe {
		t.Fatalf("after a keyframe request the viewer has %d frames (keyframe first: %v), want the 8-frame GOP", len(got), len(got) > 0 && got[0].Keyframe)
	}
}

// A stream stops after its linger and forgets its pictures (a stale GOP
// would keep the next viewer of a cold main stream off the warm sub stream).
func TestLingerThenStop(t *testing.T) {
	cam := newFakeCamera(t)
	s := newStream(t, cam, Config{Linger: 100 * time.Millisecond})
	if _, err := s.Acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	cam.send(t, s, 0, 5)
	if n := s.Stats().GOP; n == 0 {
		t.Fatal("no GOP cached while running")
	}
	// A second viewer shares the pull.
	if _, err := s.Acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := cam.starts.Load(); n != 1 {
		t.Fatalf("%d pulls for two viewers, want 1", n)
	}
	s.Release()
	s.Release()
	if !s.Stats().Running {
		t.Fatal("stream stopped before the linger")
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.Stats().Running {
		if time.Now().After(deadline) {
			t.Fatal("stream still running long after the linger")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := s.Stats().GOP; n != 0 {
		t.Fatalf("a stopped stream still holds %d frames of GOP", n)
	}
	if _, err := s.Acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.Release()
	if n := cam.starts.Load(); n != 2 {
		t.Fatalf("%d pulls, want a second one after the linger", n)
	}
}

func TestUnreachableCameraFailsFast(t *testing.T) {
	cam := newFakeCamera(t)
	cam.err = errors.New("connect to 10.0.0.9:554: connection refused")
	s := newStream(t, cam, Config{ReadyTimeout: 5 * time.Second})
	start := time.Now()
	_, err := s.Acquire(context.Background())
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("err %v, want ErrUnavailable naming the cause", err)
	}
	if time.Since(start) > 2*time.Second {
		t.Fatalf("took %v: the viewer must not wait for the timeout when the camera already failed", time.Since(start))
	}
}

type countingHandler struct {
	mu   sync.Mutex
	msgs []string
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.msgs = append(h.msgs, r.Message)
	return nil
}
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countingHandler) WithGroup(string) slog.Handler      { return h }

func TestBFramesReportedOnce(t *testing.T) {
	clip, err := camera.LoadBFrameClip()
	if err != nil {
		t.Fatal(err)
	}
	cam := &fakeCamera{clip: clip, aus: make(chan [][]byte, 1000)}
	logs := &countingHandler{}
	s := New(Config{Name: "bframes", run: cam.run, Logger: slog.New(logs)})
	defer s.Close()
	if _, err := s.Acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Release()
	cam.send(t, s, 0, len(clip.AUs))
	n := 0
	logs.mu.Lock()
	for _, m := range logs.msgs {
		if strings.Contains(m, "B-frames") {
			n++
		}
	}
	logs.mu.Unlock()
	if n != 1 {
		t.Fatalf("B-frames reported %d times, want once", n)
	}
}

func BenchmarkPublish8Viewers(b *testing.B) {
	clip, _ := camera.LoadClip(1, camera.Main)
	cam := &fakeCamera{clip: clip, aus: make(chan [][]byte, 1)}
	s := New(Config{Name: "bench", run: cam.run, Logger: slog.New(slog.DiscardHandler)})
	defer s.Close()
	var subs []*Sub
	for range 8 {
		subs = append(subs, s.Subscribe(1<<16))
	}
	frames := make([]*Frame, len(clip.AUs))
	for i, au := range clip.AUs {
		frames[i] = &Frame{Video: true, Keyframe: i%100 == 0, Packets: nil, Size: len(au)}
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		s.publish(frames[i%len(frames)])
		if i%1000 == 999 {
			for _, sub := range subs {
				drain(sub)
			}
		}
	}
}

// A camera that sends AAC: the stream plays without sound, and viewers are
// told why and what to set.
func TestAACAudioNote(t *testing.T) {
	clip, err := camera.LoadClip(1, camera.Sub)
	if err != nil {
		t.Fatal(err)
	}
	run := func(ctx context.Context, _ rtspsource.Config, h rtspsource.Handler) error {
		h.OnInfo(rtspsource.Info{Codec: rtspsource.H264, SPS: clip.SPS, PPS: clip.PPS,
			Skipped: []string{"AAC audio: browsers cannot play AAC over WebRTC; set the camera's audio codec to G.711 to hear it"}})
		<-ctx.Done()
		return nil
	}
	s := New(Config{Name: "aac", Logger: slog.New(slog.DiscardHandler), run: run})
	defer s.Close()
	info, err := s.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Release()
	if info.Audio != nil || !strings.Contains(info.AudioNote, "AAC") || !strings.Contains(info.AudioNote, "G.711") {
		t.Fatalf("info %+v: want no audio and a note naming AAC and G.711", info)
	}
}

// A stream that fails is looked up again (ONVIF), and the next pull uses the
// URL the camera gives now.
func TestResolveAfterFailure(t *testing.T) {
	clip, err := camera.LoadClip(1, camera.Sub)
	if err != nil {
		t.Fatal(err)
	}
	var urls []string
	var mu sync.Mutex
	run := func(ctx context.Context, c rtspsource.Config, h rtspsource.Handler) error {
		mu.Lock()
		urls = append(urls, c.URL)
		mu.Unlock()
		if c.URL == "rtsp://cam/old" {
			return errors.New("RTSP 404")
		}
		h.OnInfo(rtspsource.Info{Codec: rtspsource.H264, SPS: clip.SPS, PPS: clip.PPS})
		<-ctx.Done()
		return nil
	}
	s := New(Config{Name: "moved", URL: "rtsp://cam/old", Logger: slog.New(slog.DiscardHandler), run: run,
		Resolve: func(context.Context) (string, error) { return "rtsp://cam/new", nil }})
	defer s.Close()
	// The first pull fails at once, so Acquire learns its error; the retry
	// (after a second) uses the new URL.
	_, _ = s.Acquire(context.Background())
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(urls)
		last := ""
		if n > 0 {
			last = urls[n-1]
		}
		mu.Unlock()
		if n >= 2 && last == "rtsp://cam/new" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pulls %v: want a retry with the resolved URL", urls)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
