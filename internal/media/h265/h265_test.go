package h265

import (
	"os"
	"strconv"
	"testing"
)

func loadClip(t *testing.T) [][][]byte {
	t.Helper()
	raw, err := os.ReadFile("../../../firmware-sim/camera/clips/ch1-main.h265")
	if err != nil {
		t.Fatal(err)
	}
	aus, err := SplitAccessUnits(raw)
	if err != nil {
		t.Fatal(err)
	}
	return aus
}

// The embedded clip: 8 s at 25 fps, a keyframe every 4 s, parameter sets in
// front of each, Main profile 1280×720.
func TestSplitClip(t *testing.T) {
	aus := loadClip(t)
	if len(aus) != 200 {
		t.Fatalf("%d access units, want 200 (8 s at 25 fps)", len(aus))
	}
	keys := 0
	for i, au := range aus {
		if IsKeyframe(au) {
			keys++
			if v, s, p := ParamSets(au); v == nil || s == nil || p == nil {
				t.Fatalf("keyframe %d without VPS/SPS/PPS", i)
			}
			if i%100 != 0 {
				t.Fatalf("keyframe at frame %d, want every 100", i)
			}
		}
	}
	if keys != 2 {
		t.Fatalf("%d keyframes, want 2", keys)
	}
	_, sps, _ := ParamSets(aus[0])
	p, err := ParseSPS(sps)
	if err != nil {
		t.Fatal(err)
	}
	if p.Width != 1280 || p.Height != 720 || p.ProfileID != 1 || p.TierFlag != 0 || p.LevelID == 0 {
		t.Fatalf("SPS %+v, want 1280×720 Main, main tier", p)
	}
	if got := p.Fmtp(); got != "level-id="+strconv.Itoa(p.LevelID)+";profile-id=1;tier-flag=0;tx-mode=SRST" {
		t.Fatalf("fmtp %q", got)
	}
}

func TestWithParamSets(t *testing.T) {
	vps, sps, pps := []byte{32 << 1, 1}, []byte{33 << 1, 1}, []byte{34 << 1, 1}
	idr := []byte{19 << 1, 1, 0x80}
	trail := []byte{1 << 1, 1, 0x80}
	for _, tt := range []struct {
		name string
		in   [][]byte
		want int
	}{
		{"bare IDR gets all three", [][]byte{idr}, 4},
		{"CRA gets them too", [][]byte{{21 << 1, 1, 0x80}}, 4},
		{"IDR that has them is left alone", [][]byte{vps, sps, pps, idr}, 4},
		{"non-IRAP frame unchanged", [][]byte{trail}, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out := WithParamSets(tt.in, vps, sps, pps)
			if len(out) != tt.want {
				t.Fatalf("%d NAL units, want %d", len(out), tt.want)
			}
			if tt.want == 4 && NALType(out[0]) != TypeVPS {
				t.Fatal("VPS is not first")
			}
		})
	}
}

// The splitter is fed garbage and must not panic.
func FuzzSplitAccessUnits(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 0x40, 1, 0x0c, 0, 0, 1, 0x26, 1, 0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		aus, err := SplitAccessUnits(b)
		if err != nil {
			return
		}
		for _, au := range aus {
			IsKeyframe(au)
			ParamSets(au)
		}
	})
}
