package e2e

import (
	"testing"
	"time"
)

// match finds the offset a server put on the timestamps from the viewer's
// last keyframe, and times only the live run: catch-up frames, whose
// timestamps were compressed, are left out.
func TestCamLogMatch(t *testing.T) {
	t0 := time.Now()
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	var c camLog
	// 3 s of a 25 fps camera, a keyframe every second.
	for i := 0; i < 75; i++ {
		c.frames = append(c.frames, camFrame{ts: 1000 + uint32(i)*3600, key: i%25 == 0, at: ms(i * 40)})
	}
	const offset = 777777
	var rx []rxFrame
	// A viewer that joined at 1.9 s: the GOP cache from the keyframe at
	// 1.0 s, played 8× fast with compressed timestamps...
	ts := uint32(50)
	for i := 25; i < 48; i++ {
		rx = append(rx, rxFrame{ts: ts, key: i == 25, at: ms(1900 + (i-25)*5)})
		ts += 450
	}
	// ...then live from frame 48 on, 3 ms after the camera sent each.
	for i := 48; i < 75; i++ {
		rx = append(rx, rxFrame{ts: 1000 + uint32(i)*3600 + offset, key: i%25 == 0, at: ms(i*40 + 3)})
	}
	delays, live := c.match(rx)
	if live != 23 || len(delays) != 27 {
		t.Fatalf("live from %d with %d delays; want 23 and 27", live, len(delays))
	}
	for _, d := range delays {
		if d != 3*time.Millisecond {
			t.Fatalf("delay %v, want 3ms", d)
		}
	}
	if d, l := c.match(rx[:20]); d != nil || l != 20 {
		t.Fatalf("catch-up frames alone: %d delays, live from %d; want none", len(d), l)
	}
}
