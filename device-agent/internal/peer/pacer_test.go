package peer

import (
	"testing"
	"time"
)

// A viewer joins with a 4 s GOP cache queued: every frame of it is backlog,
// its youngest (under freshAge old) too, up to the last queued one; the
// frames after that are live. A live viewer whose queue holds a fresh frame
// or two stays live; one held up past freshAge catches up again.
func TestPacer(t *testing.T) {
	var p pacer
	const gop = 100 // 25 fps
	for i := range gop {
		age := time.Duration(gop-1-i) * 40 * time.Millisecond
		if !p.behind(age, gop-1-i) {
			t.Fatalf("frame %d of the GOP cache (%v old, %d queued after it) went out as live", i, age, gop-1-i)
		}
	}
	for i, q := range []int{0, 1, 0, 2, 1, 0} {
		if p.behind(3*time.Millisecond, q) {
			t.Fatalf("live frame %d (%d fresh frames queued) was paced as backlog", i, q)
		}
	}
	// Held up: a frame 200 ms old with three behind it.
	for i, q := range []int{3, 2, 1, 0} {
		if !p.behind(time.Duration(200-40*i)*time.Millisecond, q) {
			t.Fatalf("frame %d of a 200 ms backlog went out as live", i)
		}
	}
	if p.behind(2*time.Millisecond, 0) {
		t.Fatal("still catching up after the backlog")
	}
	// Sound queued behind the newest frame does not make it backlog.
	p.behind(time.Second, 5)
	if !p.behind(10*time.Millisecond, 2) {
		t.Fatal("the backlog's last frame went out as live")
	}
	if p.behind(10*time.Millisecond, 1) {
		t.Fatal("a live frame with sound queued after it was paced as backlog")
	}
}
