package rtspsource

import (
	"encoding/binary"
	"testing"

	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/pion/rtp"

	"github.com/peercam/peercam/internal/media/h264"
	"github.com/peercam/peercam/internal/media/h265"
)

// packets splits fuzz input into RTP packets: each is a 2-byte length and
// that many bytes of a marshalled packet (header and payload as a camera,
// or a broken one, would send them).
func packets(data []byte) []*rtp.Packet {
	var out []*rtp.Packet
	for len(data) >= 2 {
		n := int(binary.BigEndian.Uint16(data))
		data = data[2:]
		if n > len(data) {
			n = len(data)
		}
		var p rtp.Packet
		if p.Unmarshal(data[:n]) == nil {
			out = append(out, &p)
		}
		data = data[n:]
	}
	return out
}

func frame(t testing.TB, pkts ...*rtp.Packet) []byte {
	var out []byte
	for _, p := range pkts {
		b, err := p.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		out = binary.BigEndian.AppendUint16(out, uint16(len(b)))
		out = append(out, b...)
	}
	return out
}

// Whatever packets a camera sends, the video path neither panics nor hands
// on an empty access unit or NAL unit, and what it hands on is safe for
// the fanout's parsers.
func FuzzVideoPackets(f *testing.F) {
	sps := []byte{0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10}
	idr := []byte{0x65, 0x88, 0x84, 0x00, 0x33, 0xff}
	hdr := rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: 1, Timestamp: 90000, Marker: true}
	single := &rtp.Packet{Header: hdr, Payload: idr}
	stapA := &rtp.Packet{Header: hdr, Payload: append(append([]byte{24, 0, byte(len(sps))}, sps...), append([]byte{0, byte(len(idr))}, idr...)...)}
	fuA1 := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: 2, Timestamp: 93600}, Payload: []byte{28, 0x85, 0x88, 0x84}}
	fuA2 := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: 3, Timestamp: 93600, Marker: true}, Payload: []byte{28, 0x45, 0x00, 0x33}}
	for _, codec := range []byte{0, 1} {
		f.Add(codec, frame(f, single))
		f.Add(codec, frame(f, stapA, fuA1, fuA2))
		f.Add(codec, frame(f, fuA2, fuA1))
		f.Add(codec, frame(f, &rtp.Packet{Header: hdr, Payload: []byte{49 << 1, 1, 0x80 | 19, 0xaf}}))
		f.Add(codec, frame(f, &rtp.Packet{Header: hdr, Payload: []byte{48 << 1, 1, 0, 2, 0x40, 1}}))
	}
	f.Fuzz(func(t *testing.T, codec byte, data []byte) {
		var fm format.Format = &format.H264{PayloadTyp: 96, PacketizationMode: 1}
		if codec%2 == 1 {
			fm = &format.H265{PayloadTyp: 96}
		}
		h := Handler{
			OnBad: func(what string) {
				if what == "" {
					t.Fatal("a bad packet without a word for the summary")
				}
			},
			OnVideo: func(au [][]byte, _ uint32) {
				if len(au) == 0 {
					t.Fatal("empty access unit handed on")
				}
				for _, n := range au {
					if len(n) == 0 {
						t.Fatal("empty NAL unit handed on")
					}
				}
				if codec%2 == 1 {
					h265.IsKeyframe(au)
					_, s, _ := h265.ParamSets(au)
					if s != nil {
						_, _ = h265.ParseSPS(s)
					}
					return
				}
				h264.IsKeyframe(au)
				if s, _ := h264.ParamSets(au); s != nil {
					_, _, _ = h264.Size(s)
				}
				for _, n := range au {
					h264.SliceType(n)
				}
			},
		}
		onVideo, err := videoPackets(fm, h)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range packets(data) {
			onVideo(p)
		}
	})
}
