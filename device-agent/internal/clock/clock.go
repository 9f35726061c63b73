// Package clock gives the agent a time it can trust on a recorder whose own
// clock is wrong. Recorders often boot without NTP and with a real-time
// clock that reset to 1970 or 2000 when its battery died; with that clock
// every certificate and every viewer token looks not yet valid, and the box
// would be locked out for good. The agent instead takes the time from the
// rendezvous it is already talking to, and until then never believes a time
// earlier than the binary's own build.
package clock

import (
	"sync"
	"time"
)

// Floor is the earliest time this code can be running at: it was written
// after it. The build's commit time, when known and later, replaces it.
var Floor = time.Date(2026, time.January, 1, 0, 0, 0, 0, time.UTC)

// Clock is the agent's idea of now.
type Clock struct {
	// System reads the box's clock; tests replace it.
	System func() time.Time
	floor  time.Time

	mu sync.Mutex // guards offset and learned
	// offset is the rendezvous's time minus the system's, once learned.
	offset  time.Duration
	learned bool
}

// New returns a clock that never reads earlier than floor (or Floor, if
// that is later).
func New(system func() time.Time, floor time.Time) *Clock {
	if system == nil {
		system = time.Now
	}
	if floor.Before(Floor) {
		floor = Floor
	}
	return &Clock{System: system, floor: floor}
}

// Now is the system time corrected by what the rendezvous said; before it
// said anything, the system time, or the floor when the system time is
// plainly wrong (earlier than the floor).
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	off, learned := c.offset, c.learned
	c.mu.Unlock()
	now := c.System()
	if learned {
		return now.Add(off)
	}
	if now.Before(c.floor) {
		return c.floor
	}
	return now
}

// Floor is the earliest time this clock believes.
func (c *Clock) Floor() time.Time { return c.floor }

// Implausible reports whether the system clock is plainly wrong (before
// the floor) and no better time has been learned yet.
func (c *Clock) Implausible() bool {
	c.mu.Lock()
	learned := c.learned
	c.mu.Unlock()
	return !learned && c.System().Before(c.floor)
}

// Learn takes the rendezvous's time, sent at its end of a link we just
// used, and returns how far the system clock is off (positive: behind).
func (c *Clock) Learn(server time.Time) time.Duration {
	skew := server.Sub(c.System())
	c.mu.Lock()
	c.offset, c.learned = skew, true
	c.mu.Unlock()
	return skew
}

// Until is how long until t on the corrected clock: a token that expires at
// t by the rendezvous's clock expires after Until(t) on any local timer.
func (c *Clock) Until(t time.Time) time.Duration {
	return t.Sub(c.Now())
}
