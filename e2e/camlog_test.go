package e2e

import (
	"sort"
	"sync"
	"time"

	"github.com/pion/rtp"
)

// camLog records the video frames a simulated camera sent (nvr.Config's
// OnVideo), so that a viewer's frames can be timed from the camera: the
// delay each frame took through the server under test, measured the same
// way for PeerCam and for mediamtx.
type camLog struct {
	mu sync.Mutex // guards frames
	// frames are in sending order; timestamps only grow (within 2^31).
	frames []camFrame
}

type camFrame struct {
	ts  uint32
	key bool
	at  time.Time
}

// add logs a frame sent now.
func (c *camLog) add(pkts []*rtp.Packet) {
	if len(pkts) == 0 {
		return
	}
	key := false
	for _, p := range pkts {
		key = key || h264PacketKey(p.Payload)
	}
	f := camFrame{ts: pkts[0].Timestamp, key: key, at: time.Now()}
	c.mu.Lock()
	c.frames = append(c.frames, f)
	c.mu.Unlock()
}

// match times a viewer's frames from the camera. Servers rewrite RTP
// timestamps by an offset that is constant while they play live (PeerCam
// compresses them while it plays its GOP cache through), so the viewer's
// last frame fixes it: it is one of the last few frames the camera sent
// before it came. Each candidate is tried; the one that explains the
// longest run of frames back from the last (every one a camera frame, a
// keyframe where the camera's was) wins, the most recent on a tie (so the
// smallest delay: a run without a keyframe cannot tell frames apart).
// delays holds, for each frame of that live run, the time from the
// camera's send to the viewer's receipt; live is the index in rx where the
// run starts (len(rx) when no run of three frames matched).
func (c *camLog) match(rx []rxFrame) (delays []time.Duration, live int) {
	c.mu.Lock()
	cam := c.frames
	c.mu.Unlock()
	live = len(rx)
	if len(rx) == 0 || len(cam) == 0 {
		return nil, live
	}
	base := cam[0].ts
	find := func(ts uint32) (camFrame, bool) {
		rel := int64(int32(ts - base))
		i := sort.Search(len(cam), func(i int) bool { return int64(int32(cam[i].ts-base)) >= rel })
		if i < len(cam) && cam[i].ts == ts {
			return cam[i], true
		}
		return camFrame{}, false
	}
	// run is how far back from the end rx is explained with offset.
	run := func(offset uint32) int {
		from := len(rx)
		for i := len(rx) - 1; i >= 0; i-- {
			f, ok := find(rx[i].ts - offset)
			if d := rx[i].at.Sub(f.at); !ok || d < 0 || d > 2*time.Second || f.key != rx[i].key {
				break
			}
			from = i
		}
		return from
	}
	lastAt := rx[len(rx)-1].at
	k := sort.Search(len(cam), func(i int) bool { return cam[i].at.After(lastAt) }) - 1
	var best uint32
	for j := k; j >= 0 && j > k-5; j-- {
		offset := rx[len(rx)-1].ts - cam[j].ts
		if from := run(offset); from < live {
			live, best = from, offset
		}
	}
	if len(rx)-live < 3 {
		return nil, len(rx) // one or two frames match some offset by chance
	}
	for _, f := range rx[live:] {
		cf, _ := find(f.ts - best)
		delays = append(delays, f.at.Sub(cf.at))
	}
	return delays, live
}
