// Package h264 holds the few H.264 bitstream facts the agent and the simulator
// need beyond what mediacommon offers: splitting a raw stream into access units,
// telling keyframes and B-slices apart, putting parameter sets before keyframes,
// and the SDP profile-level-id of a real SPS (RFC 6184 section 8.1).
package h264

import (
	"errors"
	"fmt"

	mch264 "github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
)

// NAL unit types used here (ITU-T H.264 table 7-1).
const (
	TypeNonIDR = 1
	TypeIDR    = 5
	TypeSEI    = 6
	TypeSPS    = 7
	TypePPS    = 8
	TypeAUD    = 9
)

// Slice types, modulo 5 (ITU-T H.264 table 7-6).
const (
	SliceP  = 0
	SliceB  = 1
	SliceI  = 2
	SliceSP = 3
	SliceSI = 4
)

// ErrTruncated means a NAL unit ended before the field being read.
var ErrTruncated = errors.New("h264: truncated NAL unit")

// NALType returns the type of a NAL unit, or 0 for an empty one.
func NALType(nalu []byte) int {
	if len(nalu) == 0 {
		return 0
	}
	return int(nalu[0] & 0x1f)
}

func isVCL(t int) bool { return t >= 1 && t <= 5 }

// IsKeyframe tells whether an access unit holds an IDR slice.
func IsKeyframe(au [][]byte) bool {
	for _, n := range au {
		if NALType(n) == TypeIDR {
			return true
		}
	}
	return false
}

// SplitAccessUnits parses a raw Annex-B stream into access units: lists of
// NAL units without start codes.
func SplitAccessUnits(stream []byte) ([][][]byte, error) {
	var nalus mch264.AnnexB
	if err := nalus.Unmarshal(stream); err != nil {
		return nil, fmt.Errorf("h264: annex-b: %w", err)
	}
	var aus [][][]byte
	var cur [][]byte
	curHasVCL := false
	for _, n := range nalus {
		t := NALType(n)
		newAU := false
		switch {
		case t == TypeAUD || t == TypeSPS || t == TypePPS || t == TypeSEI:
			newAU = curHasVCL
		case isVCL(t):
			// first_mb_in_slice == 0 (the first bit after the header is 1)
			// starts a new picture.
			newAU = curHasVCL && len(n) > 1 && n[1]&0x80 != 0
		}
		if newAU {
			aus = append(aus, cur)
			cur, curHasVCL = nil, false
		}
		if t == TypeAUD {
			continue
		}
		cur = append(cur, n)
		if isVCL(t) {
			curHasVCL = true
		}
	}
	if curHasVCL {
		aus = append(aus, cur)
	}
	return aus, nil
}

// bitReader reads the Exp-Golomb coded fields at the start of a slice header.
type bitReader struct {
	buf []byte
	pos int
}

func (r *bitReader) bit() (uint32, error) {
	if r.pos/8 >= len(r.buf) {
		return 0, ErrTruncated
	}
	b := (r.buf[r.pos/8] >> (7 - r.pos%8)) & 1
	r.pos++
	return uint32(b), nil
}

func (r *bitReader) ue() (uint32, error) {
	zeros := 0
	for {
		b, err := r.bit()
		if err != nil {
			return 0, err
		}
		if b == 1 {
			break
		}
		zeros++
		if zeros > 31 {
			return 0, fmt.Errorf("h264: exp-golomb code too long")
		}
	}
	var v uint32
	for i := 0; i < zeros; i++ {
		b, err := r.bit()
		if err != nil {
			return 0, err
		}
		v = v<<1 | b
	}
	return (1<<zeros - 1) + v, nil
}

// SliceType returns a VCL NAL unit's slice type modulo 5 (SliceP … SliceSI).
func SliceType(nalu []byte) (int, error) {
	if !isVCL(NALType(nalu)) {
		return 0, fmt.Errorf("h264: NAL type %d is not a slice", NALType(nalu))
	}
	// Only the first few bytes are needed; remove emulation prevention there.
	head := nalu[1:]
	if len(head) > 16 {
		head = head[:16]
	}
	r := bitReader{buf: mch264.EmulationPreventionRemove(head)}
	if _, err := r.ue(); err != nil { // first_mb_in_slice
		return 0, err
	}
	st, err := r.ue()
	if err != nil {
		return 0, err
	}
	if st > 9 {
		return 0, fmt.Errorf("h264: invalid slice_type %d", st)
	}
	return int(st % 5), nil
}

// HasBSlice tells whether an access unit holds a B-slice.
func HasBSlice(au [][]byte) bool {
	for _, n := range au {
		if isVCL(NALType(n)) {
			if st, err := SliceType(n); err == nil && st == SliceB {
				return true
			}
		}
	}
	return false
}

// ParamSets returns the SPS and PPS in an access unit, if any.
func ParamSets(au [][]byte) (sps, pps []byte) {
	for _, n := range au {
		switch NALType(n) {
		case TypeSPS:
			sps = n
		case TypePPS:
			pps = n
		}
	}
	return sps, pps
}

// WithParamSets returns a keyframe access unit with sps and pps before its
// slices when it lacks them, so that a decoder can start from it. Other access
// units come back unchanged.
func WithParamSets(au [][]byte, sps, pps []byte) [][]byte {
	if sps == nil || pps == nil || !IsKeyframe(au) {
		return au
	}
	hasSPS, hasPPS := ParamSets(au)
	if hasSPS != nil && hasPPS != nil {
		return au
	}
	out := make([][]byte, 0, len(au)+2)
	out = append(out, sps, pps)
	for _, n := range au {
		if t := NALType(n); t != TypeSPS && t != TypePPS {
			out = append(out, n)
		}
	}
	return out
}

// ProfileLevelID is the SDP profile-level-id (RFC 6184 section 8.1) of an SPS:
// profile_idc, the constraint flags and level_idc as six hex digits.
func ProfileLevelID(sps []byte) (string, error) {
	if NALType(sps) != TypeSPS || len(sps) < 4 {
		return "", fmt.Errorf("h264: not an SPS")
	}
	return fmt.Sprintf("%02x%02x%02x", sps[1], sps[2], sps[3]), nil
}

// Size returns the picture size an SPS describes.
func Size(sps []byte) (width, height int, err error) {
	var s mch264.SPS
	if err := s.Unmarshal(sps); err != nil {
		return 0, 0, fmt.Errorf("h264: sps: %w", err)
	}
	return s.Width(), s.Height(), nil
}
