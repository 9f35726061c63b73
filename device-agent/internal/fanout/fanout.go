// Package fanout shares one camera stream among all its viewers. It opens the
// RTSP pull on the first viewer and keeps it for a linger after the last,
// packetizes every frame once, and keeps a GOP cache: the last keyframe and
// everything after it, so a new viewer starts from a picture at once instead of
// waiting up to a whole keyframe interval. A slow viewer drops frames and is
// counted; it never holds up the camera or the other viewers.
package fanout

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortsplib/v4/pkg/format/rtph264"
	"github.com/bluenviron/gortsplib/v4/pkg/format/rtph265"
	"github.com/pion/rtp"

	"github.com/peercam/peercam/device-agent/internal/rtspsource"
	"github.com/peercam/peercam/internal/backoff"
	"github.com/peercam/peercam/internal/media/h264"
	"github.com/peercam/peercam/internal/media/h265"
	"github.com/peercam/peercam/internal/redact"
)

// encoder packetizes access units for viewers; rtph264's and rtph265's are.
type encoder interface {
	Encode(au [][]byte) ([]*rtp.Packet, error)
}

// payloadMax is the RTP payload size: with SRTP, UDP and IP headers a packet
// stays under 1280 bytes, IPv6's minimum MTU, on any path.
const payloadMax = 1200

func newEncoder(codec string) (encoder, error) {
	if codec == rtspsource.H265 {
		e := &rtph265.Encoder{PayloadType: 96, PayloadMaxSize: payloadMax}
		return e, e.Init()
	}
	e := &rtph264.Encoder{PayloadType: 96, PayloadMaxSize: payloadMax, PacketizationMode: 1}
	return e, e.Init()
}

// StallAfter is how long a camera may send no video before it is taken for
// gone (at least; a camera with few frames a second gets four frame
// intervals).
var StallAfter = 2500 * time.Millisecond

// ErrUnavailable means the stream could not be started.
var ErrUnavailable = errors.New("camera stream unavailable")

// Stream events, sent to every viewer as a Frame with Event set.
const (
	// EventCameraLost: the camera stopped sending (closed, failed or
	// stalled); the agent is reconnecting.
	EventCameraLost = "camera_lost"
	// EventCameraBack: the camera sends again, from a new keyframe.
	EventCameraBack = "camera_back"
)

// Frame is one video access unit or one audio packet, packetized once, or
// an event about the camera.
type Frame struct {
	// Event, when set, makes this frame an event and nothing else.
	Event string
	// Reason, on a camera-lost event, is what a person can fix when the
	// camera refuses the agent (a changed password, a removed stream);
	// empty while it just does not answer.
	Reason   string
	Video    bool
	Keyframe bool
	// TS is the camera's RTP timestamp (90 kHz video, audio clock for audio).
	TS uint32
	// At is when the frame arrived from the camera.
	At time.Time
	// Packets carry the payloads; viewers copy the headers and set their own
	// sequence numbers and timestamps.
	Packets []*rtp.Packet
	// Size is the sum of the payload sizes.
	Size int
}

// Info is what a viewer needs to negotiate.
type Info struct {
	// Codec is rtspsource.H264 or rtspsource.H265.
	Codec string
	// VPS is H.265's only.
	VPS, SPS, PPS []byte
	Width, Height int
	Audio         *rtspsource.Audio
	// AudioNote says why there is no sound when the camera has audio that
	// browsers cannot play (AAC); empty otherwise.
	AudioNote string
}

// Config describes one camera stream.
type Config struct {
	// Name identifies the stream in logs, such as "door/main".
	Name string
	URL  string
	// Transport is the RTSP transport: tcp (default), udp or auto.
	Transport string
	// Linger keeps the pull open after the last viewer leaves. Default 30 s.
	Linger time.Duration
	// AlwaysOn keeps the pull open with no viewers (preload), so the first
	// viewer also gets the GOP cache.
	AlwaysOn bool
	// MaxGOPBytes bounds the GOP cache. Default 8 MiB.
	MaxGOPBytes int
	// ReadyTimeout bounds the wait for the camera's first parameter sets.
	// Default 10 s.
	ReadyTimeout time.Duration
	// SummaryEvery is how often malformed input from the camera is
	// summarised in the log (one line, only when there was some). Default
	// one minute.
	SummaryEvery time.Duration
	// Resolve, when set, looks the stream's URL up again (ONVIF) after the
	// pull failed: a camera that moved its RTSP path or port keeps working.
	Resolve func(context.Context) (string, error)
	// KeyframeRequests asks the camera for a keyframe when a pull starts
	// and when a viewer joins with no picture cached (RTCP PLI/FIR, and
	// ISAPI when set); see rtspsource.Config.
	KeyframeRequests bool
	ISAPI            string
	Logger           *slog.Logger

	// run replaces rtspsource.Run in tests.
	run func(context.Context, rtspsource.Config, rtspsource.Handler) error
}

// Stream is one shared camera stream.
type Stream struct {
	cfg Config
	log *slog.Logger

	mu sync.Mutex // guards everything below
	// users counts viewers holding the stream (Acquire minus Release).
	users int
	// cancel stops the running pull; nil when stopped.
	cancel context.CancelFunc
	// linger fires to stop the pull after the last viewer.
	linger *time.Timer
	// info is known once the camera's parameter sets are; ready is closed then
	// (or when the run fails, with runErr set). Both are renewed per run.
	info   *Info
	ready  chan struct{}
	runErr error
	// known is the last info any run saw; it outlives the run, so a viewer
	// can be matched to a stream without waiting for a cold camera.
	known *Info
	// gop is the cached group of pictures, starting with a keyframe.
	gop      []*Frame
	gopBytes int
	// subs are the viewers receiving frames.
	subs map[*Sub]struct{}
	// codec, vps, sps and pps are the codec and latest parameter sets
	// seen; audio is the audio track of the current run, audioNote why
	// there is none.
	codec         string
	vps, sps, pps []byte
	audio         *rtspsource.Audio
	audioNote     string
	// bframesReported is set once B-frames have been logged.
	bframesReported bool

	// down is set from a lost camera until its next keyframe; outages
	// counts the losses.
	down    bool
	outages uint64
	// bad counts unusable packets by what was wrong, since the last
	// summary.
	bad map[string]int

	// Counters, read with Stats.
	frames, dropped atomic.Uint64
	// lostPackets counts RTP packets the camera's stream lost on the way.
	lostPackets atomic.Uint64
	// kick carries keyframe requests to the running pull; asked counts
	// those sent to the camera, isapiWarned whether an ISAPI failure was
	// logged at WARN yet.
	kick        chan struct{}
	asked       atomic.Uint64
	isapiWarned atomic.Bool
	// lastVideo is when the current run last had video (unix ns; 0 before
	// its first frame); frameGap the usual time between frames (a moving
	// average, ns), so a 1 fps camera is not taken for a stalled one.
	lastVideo, frameGap atomic.Int64
}

// Stats are a stream's counters.
type Stats struct {
	Frames  uint64 // video frames received from the camera
	Dropped uint64 // frames not delivered to slow viewers, summed
	Viewers int
	GOP     int // frames in the GOP cache
	// Outages counts the times the camera was lost while playing.
	Outages uint64
	// LostPackets counts RTP packets lost between the camera and the agent.
	LostPackets uint64
	// KeyframesAsked counts keyframe requests sent to the camera.
	KeyframesAsked uint64
	// Down is set from a lost camera until its next keyframe.
	Down    bool
	Running bool
}

// New returns a stopped stream.
func New(cfg Config) *Stream {
	if cfg.Linger == 0 {
		cfg.Linger = 30 * time.Second
	}
	if cfg.MaxGOPBytes == 0 {
		cfg.MaxGOPBytes = 8 << 20
	}
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = 10 * time.Second
	}
	if cfg.SummaryEvery == 0 {
		cfg.SummaryEvery = time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.run == nil {
		cfg.run = rtspsource.Run
	}
	s := &Stream{cfg: cfg, log: cfg.Logger.With("stream", cfg.Name), subs: map[*Sub]struct{}{}, kick: make(chan struct{}, 1)}
	if cfg.AlwaysOn {
		s.mu.Lock()
		s.startLocked()
		s.mu.Unlock()
	}
	return s
}

// Stats returns the counters.
func (s *Stream) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{Frames: s.frames.Load(), Dropped: s.dropped.Load(), Viewers: len(s.subs), GOP: len(s.gop),
		Running: s.cancel != nil, Outages: s.outages, LostPackets: s.lostPackets.Load(), Down: s.down,
		KeyframesAsked: s.asked.Load()}
}

// Acquire holds the stream open for a viewer and waits until its format is
// known. Every successful Acquire needs one Release.
func (s *Stream) Acquire(ctx context.Context) (*Info, error) {
	s.mu.Lock()
	s.users++
	if s.linger != nil {
		s.linger.Stop()
		s.linger = nil
	}
	if s.cancel == nil {
		s.startLocked()
	}
	ready := s.ready
	s.mu.Unlock()

	t := time.NewTimer(s.cfg.ReadyTimeout)
	defer t.Stop()
	select {
	case <-ready:
	case <-ctx.Done():
		s.Release()
		return nil, ctx.Err()
	case <-t.C:
		s.Release()
		return nil, fmt.Errorf("%w: no video from the camera within %s", ErrUnavailable, s.cfg.ReadyTimeout)
	}
	s.mu.Lock()
	info, err := s.info, s.runErr
	s.mu.Unlock()
	if info == nil {
		s.Release()
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return info, nil
}

// Release lets go of a viewer's hold; the last one starts the linger.
func (s *Stream) Release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users--
	if s.users > 0 || s.cfg.AlwaysOn || s.cancel == nil {
		return
	}
	s.linger = time.AfterFunc(s.cfg.Linger, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.users == 0 && s.cancel != nil {
			s.log.Info("no viewers: closing the camera stream")
			s.cancel()
			s.cancel = nil
			// A stopped stream has no picture to offer: a stale GOP would
			// keep its next viewer off the warm sub stream (and the next
			// run drops it anyway).
			s.gop, s.gopBytes = nil, 0
		}
	})
}

// Close stops the stream.
func (s *Stream) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.linger != nil {
		s.linger.Stop()
	}
	if s.cancel != nil {
		s.cancel()
		s.cancel = nil
	}
}

func (s *Stream) startLocked() {
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.ready = make(chan struct{})
	s.info, s.runErr = nil, nil
	s.gop, s.gopBytes = nil, 0
	go s.run(ctx, s.ready)
}

// run pulls the camera, retrying with backoff while the stream is wanted.
func (s *Stream) run(ctx context.Context, ready chan struct{}) {
	var readyOnce sync.Once
	markReady := func() { readyOnce.Do(func() { close(ready) }) }
	url := s.cfg.URL
	var outage time.Time // when the camera was lost; zero while it is up
	told := ""           // the refusal viewers were last told of, this outage
	go s.summarise(ctx)
	for attempt := 0; ; attempt++ {
		var enc encoder
		var codec string // this run's, from its OnInfo
		rctx, stopRun := context.WithCancel(ctx)
		stalled := s.watchdog(rctx, stopRun)
		err := s.cfg.run(rctx, rtspsource.Config{URL: url, Transport: s.cfg.Transport, Logger: s.log,
			KeyframeRequests: s.cfg.KeyframeRequests, Keyframes: s.kick, ISAPI: s.cfg.ISAPI, OnAsked: s.onAsked},
			rtspsource.Handler{
				OnInfo: func(in rtspsource.Info) {
					for _, why := range in.Skipped {
						s.log.Warn("track skipped", "why", why)
					}
					var err error
					codec = in.Codec
					if enc, err = newEncoder(in.Codec); err != nil {
						s.log.Error("video packetizer", "err", err)
					}
					s.onInfo(in, markReady)
				},
				OnVideo: func(au [][]byte, ts uint32) {
					if enc != nil {
						s.onVideo(enc, codec, au, ts, markReady)
					}
				},
				OnAudio: s.onAudio,
				OnBad:   s.onBad,
				OnLost:  func(n uint64) { s.lostPackets.Add(n) },
			})
		stopRun()
		if ctx.Err() != nil {
			s.mu.Lock()
			if s.cancel == nil { // not restarted: a frame published as it stopped goes too
				s.gop, s.gopBytes = nil, 0
			}
			s.mu.Unlock()
			return
		}
		if d := stalled(); d > 0 {
			err = fmt.Errorf("no video from the camera for %s", d.Round(100*time.Millisecond))
		} else if err == nil {
			err = errors.New("the camera ended the stream")
		}
		s.mu.Lock()
		s.runErr = err
		first := s.info == nil
		wasUp := s.lastVideo.Load() > 0
		s.mu.Unlock()
		if first {
			markReady() // waiting viewers learn the error now
		}
		if wasUp {
			// It was playing: a new outage. Viewers hear it at once, and the
			// cached GOP goes, so that no keyframe request replays a stale
			// picture as if it were live.
			outage, attempt, told = time.Now(), 0, ""
			s.lost(err, "")
		} else if outage.IsZero() {
			outage = time.Now()
		}
		if why := fixable(err); !wasUp && !first && why != "" && why != told {
			// The camera answers but refuses: viewers waiting on it learn
			// what to fix, not just that it is gone.
			told = why
			s.lost(err, why)
		}
		wait := retry.Delay(attempt, time.Since(outage))
		s.log.Warn("camera stream failed; retrying", "url", redact.URL(url), "err", err, "in", wait.Round(time.Millisecond))
		if s.cfg.Resolve != nil {
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			if u, rerr := s.cfg.Resolve(rctx); rerr != nil {
				s.log.Warn("could not look the stream up again over ONVIF", "err", rerr)
			} else if u != url {
				s.log.Info("the camera's stream moved; using its new URL", "url", redact.URL(u))
				url = u
			}
			cancel()
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// retry is the reconnect schedule: quick (at most 2 s) for the first
// minute, since a camera that reboots is back within one, then backing off
// to 30 s.
var retry = backoff.Policy{Fast: time.Minute, FastMax: 2 * time.Second, SlowMax: 30 * time.Second}

// watchdog ends a run whose camera has sent no video for max(3 s, four
// frame intervals): a camera that keeps the socket open but stopped sending
// (stalled, or rebooting behind a switch) is as gone as one that closed it.
// The returned func says how long it was silent when it fired.
func (s *Stream) watchdog(ctx context.Context, stop context.CancelFunc) func() time.Duration {
	var fired atomic.Int64
	s.lastVideo.Store(0)
	start := time.Now()
	go func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			last := s.lastVideo.Load()
			if last == 0 {
				// Still connecting: the RTSP client's own timeouts cover
				// DESCRIBE and SETUP; give the first frame 10 s.
				if time.Since(start) > s.cfg.ReadyTimeout {
					fired.Store(int64(time.Since(start)))
					stop()
					return
				}
				continue
			}
			limit := max(StallAfter, 4*time.Duration(s.frameGap.Load()))
			if silent := time.Since(time.Unix(0, last)); silent > limit {
				fired.Store(int64(silent))
				stop()
				return
			}
		}
	}()
	return func() time.Duration { return time.Duration(fired.Load()) }
}

// onBad counts an unusable packet.
func (s *Stream) onBad(what string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bad == nil {
		s.bad = map[string]int{}
	}
	s.bad[what]++
}

// BadPackets returns the unusable packets counted since the last summary.
func (s *Stream) BadPackets() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.bad {
		n += c
	}
	return n
}

// summarise logs the unusable packets once per SummaryEvery, one line
// however many, while the stream runs: a camera sending junk is worth
// knowing of, and a log line per packet would bury everything else.
func (s *Stream) summarise(ctx context.Context) {
	t := time.NewTicker(s.cfg.SummaryEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		bad := s.bad
		s.bad = nil
		s.mu.Unlock()
		if len(bad) == 0 {
			continue
		}
		total := 0
		args := []any{}
		for what, n := range bad {
			total += n
			args = append(args, what, n)
		}
		s.log.Warn("the camera sent unusable video packets; they were dropped and viewers resumed at the next keyframe",
			append([]any{"packets", total, "over", s.cfg.SummaryEvery}, args...)...)
	}
}

// fixable is the sentence for a camera refusal a person can fix, or "".
func fixable(err error) string {
	if errors.Is(err, rtspsource.ErrAuth) || errors.Is(err, rtspsource.ErrNotFound) || errors.Is(err, rtspsource.ErrNoVideo) {
		return err.Error()
	}
	return ""
}

// lost tells every viewer the camera is gone (and why, when reason is set)
// and drops the cached GOP.
func (s *Stream) lost(err error, reason string) {
	s.mu.Lock()
	s.gop, s.gopBytes = nil, 0
	s.down = true
	if reason == "" {
		s.outages++
	}
	subs := make([]*Sub, 0, len(s.subs))
	for sub := range s.subs {
		subs = append(subs, sub)
	}
	s.mu.Unlock()
	if reason == "" {
		s.log.Warn("camera lost; telling its viewers and reconnecting", "err", err)
	}
	ev := &Frame{Event: EventCameraLost, Reason: reason, At: time.Now()}
	for _, sub := range subs {
		sub.event(ev)
	}
}

func (s *Stream) onInfo(in rtspsource.Info, markReady func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.codec != in.Codec {
		// A camera reconfigured to another codec: forget the old one's
		// parameter sets.
		s.vps, s.sps, s.pps = nil, nil, nil
	}
	s.codec = in.Codec
	if in.SPS != nil && in.PPS != nil && (in.Codec != rtspsource.H265 || in.VPS != nil) {
		s.vps, s.sps, s.pps = in.VPS, in.SPS, in.PPS
	}
	s.audio, s.audioNote = in.Audio, ""
	for _, why := range in.Skipped {
		if strings.HasPrefix(why, "AAC") {
			s.audioNote = "No sound: the camera sends AAC, which browsers cannot play over WebRTC; set its audio to G.711."
		}
	}
	if s.sps == nil {
		return // wait for in-band parameter sets
	}
	s.setInfoLocked()
	markReady()
}

func (s *Stream) setInfoLocked() {
	in := &Info{Codec: s.codec, VPS: s.vps, SPS: s.sps, PPS: s.pps, Audio: s.audio, AudioNote: s.audioNote}
	if in.Codec == "" {
		in.Codec = rtspsource.H264
	}
	if s.codec == rtspsource.H265 {
		if p, err := h265.ParseSPS(s.sps); err == nil {
			in.Width, in.Height = p.Width, p.Height
		}
	} else {
		in.Width, in.Height, _ = h264.Size(s.sps)
	}
	s.info, s.known = in, in
}

// Known returns what the stream was last seen to be (codec, size), even
// while it is not pulled; nil before it ever ran. Cameras rarely change
// codec, and one that did is caught when a viewer's answer fails.
func (s *Stream) Known() *Info {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.known
}

// HasBFrames tells whether the stream has sent B-frames, which browsers'
// WebRTC H.264 decoders mangle.
func (s *Stream) HasBFrames() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bframesReported
}

func (s *Stream) onVideo(enc encoder, codec string, au [][]byte, ts uint32, markReady func()) {
	now := time.Now()
	s.frames.Add(1)
	if prev := s.lastVideo.Swap(now.UnixNano()); prev != 0 {
		gap := now.UnixNano() - prev
		avg := s.frameGap.Load()
		if avg == 0 {
			avg = gap
		}
		s.frameGap.Store(avg + (gap-avg)/8)
	}
	var key bool
	if codec == rtspsource.H265 {
		key = h265.IsKeyframe(au)
		if vps, sps, pps := h265.ParamSets(au); vps != nil && sps != nil && pps != nil {
			s.mu.Lock()
			changed := !bytes.Equal(sps, s.sps) || !bytes.Equal(pps, s.pps) || !bytes.Equal(vps, s.vps)
			s.vps, s.sps, s.pps = vps, sps, pps
			if s.info == nil || changed {
				s.setInfoLocked()
				markReady()
			}
			s.mu.Unlock()
		}
		if key {
			s.mu.Lock()
			vps, sps, pps := s.vps, s.sps, s.pps
			s.mu.Unlock()
			au = h265.WithParamSets(au, vps, sps, pps)
		}
	} else {
		if sps, pps := h264.ParamSets(au); sps != nil && pps != nil {
			s.mu.Lock()
			changed := !bytes.Equal(sps, s.sps) || !bytes.Equal(pps, s.pps)
			s.sps, s.pps = sps, pps
			if s.info == nil || changed {
				// New parameter sets (the camera was reconfigured): they
				// go before every keyframe from now on, and new viewers
				// negotiate for them.
				s.setInfoLocked()
				markReady()
			}
			s.mu.Unlock()
		}
		key = h264.IsKeyframe(au)
		s.mu.Lock()
		sps, pps := s.sps, s.pps
		report := !s.bframesReported && h264.HasBSlice(au)
		if report {
			s.bframesReported = true
		}
		s.mu.Unlock()
		if report {
			s.log.Warn("this camera stream has B-frames; browsers' WebRTC decoders drop most of them and the picture stutters. " +
				"Turn B-frames off in the camera's video encoding settings (often 'B-frame', 'GOP structure', 'H.264+' or 'smart codec'); until then viewers get the sub stream where it has none")
		}
		if key {
			au = h264.WithParamSets(au, sps, pps)
		}
	}
	pkts, err := enc.Encode(au)
	if err != nil {
		return
	}
	f := &Frame{Video: true, Keyframe: key, TS: ts, At: now, Packets: pkts}
	for _, p := range pkts {
		f.Size += len(p.Payload)
	}
	s.publish(f)
}

func (s *Stream) onAudio(pkt *rtp.Packet) {
	p := &rtp.Packet{Header: pkt.Header, Payload: append([]byte(nil), pkt.Payload...)}
	s.publish(&Frame{TS: pkt.Timestamp, At: time.Now(), Packets: []*rtp.Packet{p}, Size: len(p.Payload)})
}

func (s *Stream) publish(f *Frame) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f.Video && s.down {
		if !f.Keyframe {
			return // nothing a viewer can decode until the next keyframe
		}
		s.down = false
		back := &Frame{Event: EventCameraBack, At: f.At}
		for sub := range s.subs {
			sub.eventLocked(back)
		}
		s.log.Info("camera back")
	}
	if f.Video {
		switch {
		case f.Keyframe:
			s.gop, s.gopBytes = append(s.gop[:0:0], f), f.Size
		case len(s.gop) > 0 && s.gopBytes+f.Size <= s.cfg.MaxGOPBytes:
			s.gop = append(s.gop, f)
			s.gopBytes += f.Size
		default:
			// Too long a GOP for the cache: stop caching until the next
			// keyframe rather than hand a viewer half a GOP.
			s.gop, s.gopBytes = nil, 0
		}
	}
	for sub := range s.subs {
		if !sub.push(f) {
			s.dropped.Add(1)
		}
	}
}

// Subscribe starts delivering frames to a new viewer: first the GOP cache, then
// live frames. With nothing cached, the camera is asked for a keyframe.
func (s *Stream) Subscribe(queue int) *Sub {
	sub := &Sub{ch: make(chan *Frame, queue), stream: s}
	s.mu.Lock()
	defer s.mu.Unlock()
	sub.primeLocked(s.gop)
	s.subs[sub] = struct{}{}
	if len(s.gop) == 0 {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
	return sub
}

// onAsked counts a keyframe request sent to the camera; an ISAPI failure
// is logged at WARN once per stream (it is usually a setting to fix), then
// at DEBUG.
func (s *Stream) onAsked(via string, err error) {
	if err == nil {
		s.asked.Add(1)
		return
	}
	if s.isapiWarned.CompareAndSwap(false, true) {
		s.log.Warn("the camera did not take the keyframe request; new viewers wait for its next keyframe", "via", via, "err", err)
		return
	}
	s.log.Debug("keyframe request failed", "via", via, "err", err)
}

// Unsubscribe stops delivery to sub.
func (s *Stream) Unsubscribe(sub *Sub) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.subs, sub)
}

// Sub is one viewer's queue of frames.
type Sub struct {
	ch     chan *Frame
	stream *Stream
	// waitKey is set after a drop: video resumes at the next keyframe so the
	// decoder never gets a frame whose reference it missed. Guarded by the
	// stream's mu.
	waitKey bool
	// Dropped counts frames this viewer missed.
	Dropped atomic.Uint64
}

// C delivers frames.
func (sub *Sub) C() <-chan *Frame { return sub.ch }

// event queues an event frame; it goes ahead of nothing and waits for no
// keyframe, and after it video resumes only at a keyframe.
func (sub *Sub) event(f *Frame) {
	sub.stream.mu.Lock()
	defer sub.stream.mu.Unlock()
	sub.eventLocked(f)
}

func (sub *Sub) eventLocked(f *Frame) {
	if f.Event == EventCameraLost {
		sub.waitKey = true
	}
	select {
	case sub.ch <- f:
	default:
		// A full queue: drop the oldest frame for it, events matter more.
		select {
		case <-sub.ch:
		default:
		}
		select {
		case sub.ch <- f:
		default:
		}
	}
}

func (sub *Sub) primeLocked(gop []*Frame) {
	for _, f := range gop {
		select {
		case sub.ch <- f:
		default:
			sub.waitKey = true
			return
		}
	}
	if len(gop) == 0 {
		sub.waitKey = true
	}
}

// push queues f without blocking; false means it was dropped.
func (sub *Sub) push(f *Frame) bool {
	if f.Video && sub.waitKey {
		if !f.Keyframe {
			sub.Dropped.Add(1)
			return false
		}
		sub.waitKey = false
	}
	select {
	case sub.ch <- f:
		return true
	default:
		if f.Video {
			sub.waitKey = true
		}
		sub.Dropped.Add(1)
		return false
	}
}

// Resync answers a viewer's keyframe request from the cache: the queue is
// replaced by the current GOP, which the viewer's writer then fast-forwards.
func (sub *Sub) Resync() {
	s := sub.stream
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		select {
		case <-sub.ch:
			continue
		default:
		}
		break
	}
	sub.waitKey = false
	sub.primeLocked(s.gop)
}
