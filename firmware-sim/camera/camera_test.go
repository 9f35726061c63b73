package camera

import (
	"testing"
	"time"

	"github.com/peercam/peercam/internal/media/h264"
)

// Padded makes a constant-bitrate stream out of a clip: every frame that
// was smaller than its share of the bitrate now fills it exactly, with a
// well-formed filler-data NAL unit that decoders discard.
func TestPadded(t *testing.T) {
	clip, err := LoadClip(1, Main)
	if err != nil {
		t.Fatal(err)
	}
	const kbps = 3000
	perFrame := kbps * 1000 / 8 / clip.FPS
	padded := clip.Padded(kbps)
	size := func(au [][]byte) int {
		n := 0
		for _, nalu := range au {
			n += len(nalu) + 4
		}
		return n
	}
	var total int
	for i, au := range padded.AUs {
		total += size(au)
		orig := clip.AUs[i]
		if size(orig) >= perFrame-6 {
			if len(au) != len(orig) {
				t.Fatalf("frame %d of %d bytes got padding", i, size(orig))
			}
			continue
		}
		if size(au) != perFrame {
			t.Fatalf("frame %d: %d bytes after padding, want %d", i, size(au), perFrame)
		}
		filler := au[len(au)-1]
		if filler[0]&0x1f != 12 || filler[len(filler)-1] != 0x80 {
			t.Fatalf("frame %d: last NAL unit is not filler data", i)
		}
	}
	if got := total * 8 * clip.FPS / len(padded.AUs) / 1000; got < kbps {
		t.Fatalf("padded clip runs at %d kbit/s, want at least %d", got, kbps)
	}
	if clip.Padded(0) != clip {
		t.Fatal("Padded(0) must be the clip itself")
	}
}

func TestLongGOPClip(t *testing.T) {
	c, err := LoadLongGOPClip()
	if err != nil {
		t.Fatal(err)
	}
	keys := 0
	for _, au := range c.AUs {
		if h264.IsKeyframe(au) {
			keys++
		}
	}
	// Looped, one keyframe per clip length.
	if got := time.Duration(len(c.AUs)) * time.Second / time.Duration(c.FPS); keys != 1 || got != 10*time.Second {
		t.Fatalf("%d keyframes in %v, want 1 in 10 s", keys, got)
	}
	if c.Width != 1280 || c.Height != 720 {
		t.Fatalf("size %dx%d", c.Width, c.Height)
	}
}
