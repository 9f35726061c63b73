// Package backoff is how the agent waits before trying again, for the
// rendezvous link and for cameras alike: quick while an outage is young
// (what restarts look like), slower once it has lasted, always jittered so
// that many agents or cameras do not retry in step.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Policy is a retry schedule.
type Policy struct {
	// Fast is how long an outage counts as young; FastMax caps the delay
	// then, SlowMax after.
	Fast, FastMax, SlowMax time.Duration
}

// Delay is the wait before try number attempt (0 first) of an outage that
// began down ago: 250 ms doubling, capped, then jittered to half–all of it.
func (p Policy) Delay(attempt int, down time.Duration) time.Duration {
	ceiling := p.FastMax
	if down > p.Fast {
		ceiling = p.SlowMax
	}
	base := min(250*time.Millisecond<<min(attempt, 7), ceiling)
	return base/2 + rand.N(base/2+1)
}
