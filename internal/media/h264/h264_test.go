package h264

import (
	"os"
	"testing"
)

const clips = "../../../firmware-sim/camera/clips/"

func TestSplitClip(t *testing.T) {
	tests := []struct {
		name          string
		file          string
		frames, gop   int
		plid          string
		width, height int
		bframes       bool
	}{
		{"main stream", "ch1-main.h264", 200, 100, "64001f", 1280, 720, false},
		{"sub stream", "ch1-sub.h264", 120, 30, "4d401e", 640, 360, false},
		{"camera with B-frames", "bframes.h264", 60, 30, "", 640, 360, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, err := os.ReadFile(clips + tt.file)
			if err != nil {
				t.Fatal(err)
			}
			aus, err := SplitAccessUnits(raw)
			if err != nil {
				t.Fatal(err)
			}
			if len(aus) != tt.frames {
				t.Fatalf("%d access units, want %d", len(aus), tt.frames)
			}
			sawB := false
			for i, au := range aus {
				if got, want := IsKeyframe(au), i%tt.gop == 0; got != want {
					t.Fatalf("frame %d keyframe=%v, want %v", i, got, want)
				}
				sawB = sawB || HasBSlice(au)
			}
			if sawB != tt.bframes {
				t.Fatalf("B-slices seen=%v, want %v", sawB, tt.bframes)
			}
			sps, pps := ParamSets(aus[0])
			if sps == nil || pps == nil {
				t.Fatal("first access unit has no parameter sets")
			}
			if tt.plid != "" {
				if got, _ := ProfileLevelID(sps); got != tt.plid {
					t.Fatalf("profile-level-id %s, want %s", got, tt.plid)
				}
			}
			w, h, err := Size(sps)
			if err != nil || w != tt.width || h != tt.height {
				t.Fatalf("size %dx%d (%v), want %dx%d", w, h, err, tt.width, tt.height)
			}
		})
	}
}

func TestSliceType(t *testing.T) {
	tests := []struct {
		name  string
		nalu  []byte
		want  int
		fails bool
	}{
		// first_mb_in_slice=0 ("1"), slice_type=7 ("0001000") → I.
		{"I slice", []byte{0x65, 0b1000_1000, 0}, SliceI, false},
		// slice_type=5 ("00110") → P.
		{"P slice", []byte{0x41, 0b1001_1000}, SliceP, false},
		// slice_type=1 ("010") → B.
		{"B slice", []byte{0x01, 0b1010_0000}, SliceB, false},
		{"first_mb=1, slice_type=6 (B)", []byte{0x01, 0b0100_0111, 0b0000_0000}, SliceB, false},
		{"truncated", []byte{0x41}, 0, true},
		{"not a slice", []byte{0x67, 0x64}, 0, true},
		{"invalid slice_type", []byte{0x41, 0b1000_0101, 0b1000_0000}, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := SliceType(tt.nalu)
			if (err != nil) != tt.fails {
				t.Fatalf("err %v, want failure=%v", err, tt.fails)
			}
			if err == nil && got != tt.want {
				t.Fatalf("slice type %d, want %d", got, tt.want)
			}
		})
	}
}

func TestWithParamSets(t *testing.T) {
	sps, pps := []byte{0x67, 1}, []byte{0x68, 2}
	idr := [][]byte{{0x65, 0x88}}
	got := WithParamSets(idr, sps, pps)
	if len(got) != 3 || NALType(got[0]) != TypeSPS || NALType(got[1]) != TypePPS {
		t.Fatalf("keyframe without parameter sets: got %x", got)
	}
	p := [][]byte{{0x41, 0x9a}}
	if got := WithParamSets(p, sps, pps); len(got) != 1 {
		t.Fatalf("P frame changed: %x", got)
	}
	full := [][]byte{sps, pps, {0x65, 0x88}}
	if got := WithParamSets(full, sps, pps); len(got) != 3 {
		t.Fatalf("keyframe with parameter sets changed: %x", got)
	}
}

func FuzzSliceType(f *testing.F) {
	f.Add([]byte{0x65, 0x88, 0x84})
	f.Add([]byte{0x41, 0x9a, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := SliceType(b)
		if err == nil && (st < 0 || st > 4) {
			t.Fatalf("slice type %d out of range", st)
		}
	})
}

func FuzzSplitAccessUnits(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 0x67, 0x64, 0, 0x1f, 0, 0, 0, 1, 0x65, 0x88})
	f.Fuzz(func(t *testing.T, b []byte) {
		aus, err := SplitAccessUnits(b)
		if err != nil {
			return
		}
		for _, au := range aus {
			IsKeyframe(au)
			HasBSlice(au)
		}
	})
}

func BenchmarkHasBSlice(b *testing.B) {
	raw, err := os.ReadFile(clips + "ch1-main.h264")
	if err != nil {
		b.Fatal(err)
	}
	aus, _ := SplitAccessUnits(raw)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		HasBSlice(aus[i%len(aus)])
	}
}
