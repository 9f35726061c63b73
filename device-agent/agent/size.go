package agent

import (
	"fmt"
	"strconv"
	"strings"
)

// Size is a byte count written the way GOMEMLIMIT is: 48MiB, 512KiB, 1GiB.
// KB, MB and GB are decimal; K, M and G are binary, like KiB, MiB and GiB.
// "0" and "off" mean no limit.
type Size int64

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9},
	{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30},
	{"B", 1},
}

// UnmarshalText parses a size; YAML, the environment and flags all use it.
func (s *Size) UnmarshalText(b []byte) error {
	text := strings.TrimSpace(string(b))
	if text == "off" {
		*s = 0
		return nil
	}
	mult := int64(1)
	num := text
	for _, u := range sizeUnits {
		if strings.HasSuffix(text, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(text, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseFloat(num, 64)
	if err != nil || n < 0 || n*float64(mult) > 1<<50 {
		return fmt.Errorf("%q is not a size like 48MiB, 512KiB or off", text)
	}
	*s = Size(n * float64(mult))
	return nil
}

// MarshalText writes the size in the largest whole binary unit.
func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

func (s Size) String() string {
	switch {
	case s == 0:
		return "off"
	case s%(1<<30) == 0:
		return fmt.Sprintf("%dGiB", s>>30)
	case s%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", s>>20)
	case s%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", s>>10)
	}
	return fmt.Sprintf("%dB", int64(s))
}
