package clock

import (
	"testing"
	"time"
)

func TestClock(t *testing.T) {
	real := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		system time.Time
		// learn is the rendezvous time, zero for none.
		learn       time.Time
		want        time.Time
		implausible bool
	}{
		{"right clock", real, time.Time{}, real, false},
		{"reset to 1970, nothing learned", time.Unix(0, 0), time.Time{}, Floor, true},
		{"reset to 1970, learned", time.Unix(0, 0), real, real, false},
		{"three years ahead, learned", real.AddDate(3, 0, 0), real, real, false},
		{"three years ahead, nothing learned", real.AddDate(3, 0, 0), time.Time{}, real.AddDate(3, 0, 0), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := New(func() time.Time { return tt.system }, time.Time{})
			if !tt.learn.IsZero() {
				if skew := c.Learn(tt.learn); skew != tt.learn.Sub(tt.system) {
					t.Fatalf("skew %v", skew)
				}
			}
			if got := c.Now(); !got.Equal(tt.want) {
				t.Fatalf("Now() = %v, want %v", got, tt.want)
			}
			if c.Implausible() != tt.implausible {
				t.Fatalf("Implausible() = %v", c.Implausible())
			}
		})
	}
}

func TestUntil(t *testing.T) {
	sys := time.Unix(1000, 0)
	c := New(func() time.Time { return sys }, time.Time{})
	real := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	c.Learn(real)
	// A token that expires in 5 minutes of real time expires 5 minutes from
	// now on the box's wrong clock.
	if got := c.Until(real.Add(5 * time.Minute)); got != 5*time.Minute {
		t.Fatalf("Until = %v", got)
	}
}

func TestBuildFloorLater(t *testing.T) {
	later := Floor.AddDate(0, 6, 0)
	c := New(func() time.Time { return time.Unix(0, 0) }, later)
	if !c.Now().Equal(later) {
		t.Fatalf("Now() = %v, want the build floor %v", c.Now(), later)
	}
}
