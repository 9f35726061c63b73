// Package camera makes the media a simulated camera sends: looping H.264 or H.265 clips
// embedded in the binary, paced in real time with continuous RTP timestamps and
// sequence numbers, and a G.711 µ-law tone. It knows nothing about RTSP; the nvr
// package serves what it makes.
package camera

import (
	"context"
	"embed"
	"fmt"
	"math"
	"time"

	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/g711"
	"github.com/pion/rtp"

	"github.com/peercam/peercam/internal/media/h264"
	"github.com/peercam/peercam/internal/media/h265"
)

//go:embed clips/*.h264 clips/*.h265
var clipFS embed.FS

// ClipChannels is how many channels have their own clip; higher channels reuse
// clip ((n-1) % ClipChannels) + 1, so their picture shows a lower number.
const ClipChannels = 4

// Stream kinds.
const (
	Main = "main"
	Sub  = "sub"
)

// Video codecs a clip can have.
const (
	H264 = "H264"
	H265 = "H265"
)

// Clip is a decoded clip ready to loop.
type Clip struct {
	Name string
	// Codec is H264 or H265.
	Codec         string
	AUs           [][][]byte
	FPS           int
	Width, Height int
	// VPS is H.265's only.
	VPS, SPS, PPS []byte
}

// LoadClip returns the clip for a channel's main or sub stream.
func LoadClip(channel int, stream string) (*Clip, error) {
	if channel < 1 {
		return nil, fmt.Errorf("camera: channel %d: channels start at 1", channel)
	}
	fps := 25
	if stream == Sub {
		fps = 15
	} else if stream != Main {
		return nil, fmt.Errorf("camera: unknown stream %q", stream)
	}
	name := fmt.Sprintf("ch%d-%s.h264", (channel-1)%ClipChannels+1, stream)
	return loadClip(name, fps)
}

// LoadH265Clip returns a channel's main stream in H.265 Main, as most NVRs
// since about 2018 send by default.
func LoadH265Clip(channel int) (*Clip, error) {
	if channel < 1 {
		return nil, fmt.Errorf("camera: channel %d: channels start at 1", channel)
	}
	name := fmt.Sprintf("ch%d-main.h265", (channel-1)%ClipChannels+1)
	raw, err := clipFS.ReadFile("clips/" + name)
	if err != nil {
		return nil, fmt.Errorf("camera: clip %s: %w", name, err)
	}
	aus, err := h265.SplitAccessUnits(raw)
	if err != nil {
		return nil, fmt.Errorf("camera: clip %s: %w", name, err)
	}
	if len(aus) == 0 || !h265.IsKeyframe(aus[0]) {
		return nil, fmt.Errorf("camera: clip %s does not start with a keyframe", name)
	}
	c := &Clip{Name: name, Codec: H265, AUs: aus, FPS: 25}
	c.VPS, c.SPS, c.PPS = h265.ParamSets(aus[0])
	p, err := h265.ParseSPS(c.SPS)
	if err != nil {
		return nil, fmt.Errorf("camera: clip %s: %w", name, err)
	}
	c.Width, c.Height = p.Width, p.Height
	return c, nil
}

// LoadBFrameClip returns a clip whose stream has B-frames, as some real cameras
// send; the agent must detect and report it.
func LoadBFrameClip() (*Clip, error) { return loadClip("bframes.h264", 15) }

// LoadLongGOPClip returns a 1280×720 main stream with a keyframe only every
// 10 s, as cameras set for a low bitrate send: a viewer that joins cold
// waits for it unless the camera is asked for one.
func LoadLongGOPClip() (*Clip, error) { return loadClip("longgop.h264", 25) }

func loadClip(name string, fps int) (*Clip, error) {
	raw, err := clipFS.ReadFile("clips/" + name)
	if err != nil {
		return nil, fmt.Errorf("camera: clip %s: %w", name, err)
	}
	aus, err := h264.SplitAccessUnits(raw)
	if err != nil {
		return nil, fmt.Errorf("camera: clip %s: %w", name, err)
	}
	if len(aus) == 0 || !h264.IsKeyframe(aus[0]) {
		return nil, fmt.Errorf("camera: clip %s does not start with a keyframe", name)
	}
	c := &Clip{Name: name, Codec: H264, AUs: aus, FPS: fps}
	c.SPS, c.PPS = h264.ParamSets(aus[0])
	if c.Width, c.Height, err = h264.Size(c.SPS); err != nil {
		return nil, fmt.Errorf("camera: clip %s: %w", name, err)
	}
	return c, nil
}

// Padded returns the clip as a camera in constant-bitrate mode sends it:
// every frame smaller than its share of kbps gets a filler-data NAL unit
// (type 12, which decoders discard) to make up the difference. The embedded
// clips are tiny; this gives tests a realistic 2-4 Mbit/s main stream.
func (c *Clip) Padded(kbps int) *Clip {
	if kbps <= 0 {
		return c
	}
	perFrame := kbps * 1000 / 8 / c.FPS
	out := *c
	out.AUs = make([][][]byte, len(c.AUs))
	for i, au := range c.AUs {
		size := 0
		for _, nalu := range au {
			size += len(nalu) + 4
		}
		out.AUs[i] = au
		if fill := perFrame - size - 4; fill > 3 {
			nalu := make([]byte, fill)
			start := 1
			nalu[0] = 12 // forbidden_zero_bit 0, nal_ref_idc 0, type 12: filler data
			if c.Codec == H265 {
				nalu[0], nalu[1], start = 38<<1, 1, 2 // FD_NUT, layer 0, temporal ID 0
			}
			for j := start; j < fill-1; j++ {
				nalu[j] = 0xff
			}
			nalu[fill-1] = 0x80 // rbsp_stop_one_bit
			out.AUs[i] = append(append([][]byte{}, au...), nalu)
		}
	}
	return &out
}

// Format is the RTSP format description of the clip's video.
func (c *Clip) Format() format.Format {
	if c.Codec == H265 {
		return &format.H265{PayloadTyp: 96, VPS: c.VPS, SPS: c.SPS, PPS: c.PPS}
	}
	return &format.H264{PayloadTyp: 96, PacketizationMode: 1, SPS: c.SPS, PPS: c.PPS}
}

// encoder packetizes access units; rtph264's and rtph265's both are.
type encoder interface {
	Encode(au [][]byte) ([]*rtp.Packet, error)
}

func (c *Clip) encoder() (encoder, error) {
	switch f := c.Format().(type) {
	case *format.H265:
		return f.CreateEncoder()
	case *format.H264:
		return f.CreateEncoder()
	}
	return nil, fmt.Errorf("camera: %s: no encoder for %s", c.Name, c.Codec)
}

// PlayVideo loops the clip in real time, handing each frame's RTP packets to
// write, until ctx ends. Timestamps and sequence numbers run on across loops so a
// client never sees time jump back. A receive on keyframe makes the next frame
// the clip's first, a keyframe, as a camera asked for one sends it; a clip
// received on swap replaces this one from its first frame, as a camera
// reconfigured to another resolution does (its new SPS/PPS in band).
func (c *Clip) PlayVideo(ctx context.Context, write func([]*rtp.Packet), keyframe <-chan struct{}, swap <-chan *Clip) error {
	enc, err := c.encoder()
	if err != nil {
		return fmt.Errorf("camera: %s: %w", c.Name, err)
	}
	const clockRate = 90000
	start := time.Now()
	baseTS := randUint32()
	idx := 0
	for n := 0; ; n++ {
		due := start.Add(time.Duration(n) * time.Second / time.Duration(c.FPS))
		if err := sleepUntil(ctx, due); err != nil {
			return nil
		}
		select {
		case <-keyframe:
			idx = 0
		case next := <-swap:
			// Go on from here at the new clip's pace and timestamps.
			baseTS += uint32(int64(n) * clockRate / int64(c.FPS))
			start, n, idx, c = time.Now(), 0, 0, next
		default:
		}
		pkts, err := enc.Encode(c.AUs[idx%len(c.AUs)])
		idx++
		if err != nil {
			return fmt.Errorf("camera: %s: frame %d: %w", c.Name, n, err)
		}
		ts := baseTS + uint32(int64(n)*clockRate/int64(c.FPS))
		for _, p := range pkts {
			p.Timestamp = ts
		}
		write(pkts)
	}
}

// Mangle returns a frame's packets as a failing camera sends them: every
// third packet truncated, every fifth one's payload random bytes, and a junk
// packet (random payload, same stream) after each frame.
func Mangle(pkts []*rtp.Packet) []*rtp.Packet {
	out := make([]*rtp.Packet, 0, len(pkts)+1)
	for i, p := range pkts {
		q := &rtp.Packet{Header: p.Header, Payload: append([]byte(nil), p.Payload...)}
		switch {
		case i%3 == 1 && len(q.Payload) > 2:
			q.Payload = q.Payload[:len(q.Payload)/2]
		case i%5 == 2:
			randBytes(q.Payload)
		}
		out = append(out, q)
	}
	if len(pkts) > 0 {
		junk := &rtp.Packet{Header: pkts[len(pkts)-1].Header, Payload: make([]byte, 1+int(randUint32()%300))}
		randBytes(junk.Payload)
		out = append(out, junk)
	}
	return out
}

// AudioFormat is the format of the simulated microphone.
func AudioFormat() *format.G711 {
	return &format.G711{PayloadTyp: 0, MULaw: true, SampleRate: 8000, ChannelCount: 1}
}

// toneSecond is one second of a quiet 400 Hz tone in µ-law; 400 Hz fits a
// whole number of periods in a second, so it loops without a click.
var toneSecond = func() []byte {
	lpcm := make(g711.Mulaw, 8000*2)
	for i := 0; i < 8000; i++ {
		v := int16(2000 * math.Sin(2*math.Pi*400*float64(i)/8000))
		lpcm[2*i], lpcm[2*i+1] = byte(uint16(v)>>8), byte(uint16(v))
	}
	enc, _ := lpcm.Marshal()
	return enc
}()

// PlayAudio sends the tone in 20 ms packets until ctx ends.
func PlayAudio(ctx context.Context, write func(*rtp.Packet)) error {
	const samples = 160 // 20 ms at 8 kHz
	start := time.Now()
	seq, ts := uint16(randUint32()), randUint32()
	for n := 0; ; n++ {
		if err := sleepUntil(ctx, start.Add(time.Duration(n)*20*time.Millisecond)); err != nil {
			return nil
		}
		off := (n * samples) % len(toneSecond)
		write(&rtp.Packet{
			Header: rtp.Header{
				Version: 2, PayloadType: 0, SequenceNumber: seq,
				Timestamp: ts, Marker: n == 0,
			},
			Payload: toneSecond[off : off+samples],
		})
		seq++
		ts += samples
	}
}

func sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}
