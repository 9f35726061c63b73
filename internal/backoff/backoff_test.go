package backoff

import (
	"testing"
	"time"
)

func TestDelay(t *testing.T) {
	p := Policy{Fast: time.Minute, FastMax: 2 * time.Second, SlowMax: 30 * time.Second}
	for _, tt := range []struct {
		name     string
		attempt  int
		down     time.Duration
		min, max time.Duration
	}{
		{"first retry is quick", 0, 0, 125 * time.Millisecond, 250 * time.Millisecond},
		{"young outage stays under 2 s", 20, 30 * time.Second, time.Second, 2 * time.Second},
		{"old outage backs off", 20, 5 * time.Minute, 15 * time.Second, 30 * time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for i := 0; i < 100; i++ {
				if d := p.Delay(tt.attempt, tt.down); d < tt.min || d > tt.max {
					t.Fatalf("Delay = %v, want within [%v, %v]", d, tt.min, tt.max)
				}
			}
		})
	}
}
