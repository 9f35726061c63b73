// Package h265 holds the H.265 (HEVC) bitstream facts the agent and the
// simulator need beyond what mediacommon offers: splitting a raw stream into
// access units, telling IRAP keyframes apart, putting VPS/SPS/PPS before
// them, and the SDP fmtp of a real SPS (RFC 7798 section 7.1, with the
// tx-mode of draft-ietf-avtcore-hevc-webrtc).
package h265

import (
	"errors"
	"fmt"

	mch264 "github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	mch265 "github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
)

// NAL unit types used here (ITU-T H.265 table 7-1).
const (
	TypeIRAPFirst = 16 // BLA_W_LP
	TypeIRAPLast  = 21 // CRA_NUT; 22 and 23 are reserved IRAP types
	TypeVPS       = 32
	TypeSPS       = 33
	TypePPS       = 34
	TypeAUD       = 35
	TypePrefixSEI = 39
)

// ErrNoParamSets means a stream carried no VPS, SPS and PPS to describe it.
var ErrNoParamSets = errors.New("h265: no VPS/SPS/PPS")

// NALType returns the type of a NAL unit, or -1 for one too short to have a
// header.
func NALType(nalu []byte) int {
	if len(nalu) < 2 {
		return -1
	}
	return int(nalu[0]>>1) & 0x3f
}

func isVCL(t int) bool { return t >= 0 && t < 32 }

// IsKeyframe tells whether an access unit holds an IRAP picture (types
// 16–21: BLA, IDR, CRA), from which a decoder can start.
func IsKeyframe(au [][]byte) bool {
	for _, n := range au {
		if t := NALType(n); t >= TypeIRAPFirst && t <= TypeIRAPLast {
			return true
		}
	}
	return false
}

// firstSlice tells whether a VCL NAL unit starts a new picture
// (first_slice_segment_in_pic_flag, the first bit after the 2-byte header).
func firstSlice(nalu []byte) bool { return len(nalu) > 2 && nalu[2]&0x80 != 0 }

// SplitAccessUnits parses a raw Annex-B stream into access units: lists of
// NAL units without start codes. A new access unit starts at an AUD, a
// parameter set or prefix SEI after the previous picture's slices, or a
// slice that is the first of its picture (ITU-T H.265 section 7.4.2.4.4).
func SplitAccessUnits(stream []byte) ([][][]byte, error) {
	var nalus mch264.AnnexB // Annex B framing is the same for both codecs
	if err := nalus.Unmarshal(stream); err != nil {
		return nil, fmt.Errorf("h265: %w", err)
	}
	var aus [][][]byte
	var cur [][]byte
	seenVCL := false
	for _, n := range nalus {
		t := NALType(n)
		if t < 0 {
			continue
		}
		starts := false
		switch {
		case isVCL(t):
			starts = seenVCL && firstSlice(n)
		case t == TypeAUD, t == TypeVPS, t == TypeSPS, t == TypePPS, t == TypePrefixSEI, t >= 41 && t <= 44:
			starts = seenVCL
		}
		if starts {
			aus = append(aus, cur)
			cur, seenVCL = nil, false
		}
		cur = append(cur, n)
		if isVCL(t) {
			seenVCL = true
		}
	}
	if len(cur) > 0 {
		aus = append(aus, cur)
	}
	return aus, nil
}

// ParamSets returns the VPS, SPS and PPS in an access unit, if any.
func ParamSets(au [][]byte) (vps, sps, pps []byte) {
	for _, n := range au {
		switch NALType(n) {
		case TypeVPS:
			vps = n
		case TypeSPS:
			sps = n
		case TypePPS:
			pps = n
		}
	}
	return vps, sps, pps
}

// WithParamSets returns a keyframe access unit with vps, sps and pps before
// its slices when it lacks them, so that a decoder can start from it. Other
// access units come back unchanged.
func WithParamSets(au [][]byte, vps, sps, pps []byte) [][]byte {
	if !IsKeyframe(au) || vps == nil || sps == nil || pps == nil {
		return au
	}
	if v, s, p := ParamSets(au); v != nil && s != nil && p != nil {
		return au
	}
	out := make([][]byte, 0, len(au)+3)
	out = append(out, vps, sps, pps)
	for _, n := range au {
		switch NALType(n) {
		case TypeVPS, TypeSPS, TypePPS:
			continue
		}
		out = append(out, n)
	}
	return out
}

// Params is what an SPS says that an SDP offer/answer needs.
type Params struct {
	Width, Height int
	// ProfileID is general_profile_idc: 1 Main, 2 Main 10.
	ProfileID int
	// TierFlag is general_tier_flag: 0 Main tier, 1 High tier.
	TierFlag int
	// LevelID is general_level_idc, 30 × the level (level 4.1 is 123).
	LevelID int
}

// ParseSPS reads the picture size, profile, tier and level of an SPS.
func ParseSPS(sps []byte) (Params, error) {
	var s mch265.SPS
	if err := s.Unmarshal(sps); err != nil {
		return Params{}, fmt.Errorf("h265: SPS: %w", err)
	}
	ptl := s.ProfileTierLevel
	return Params{Width: s.Width(), Height: s.Height(), ProfileID: int(ptl.GeneralProfileIdc),
		TierFlag: int(ptl.GeneralTierFlag), LevelID: int(ptl.GeneralLevelIdc)}, nil
}

// Fmtp is the SDP fmtp line of the stream (RFC 7798 section 7.1):
// profile-id, tier-flag, level-id and tx-mode=SRST (one RTP stream).
func (p Params) Fmtp() string {
	return fmt.Sprintf("level-id=%d;profile-id=%d;tier-flag=%d;tx-mode=SRST", p.LevelID, p.ProfileID, p.TierFlag)
}
