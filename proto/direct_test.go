package proto

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// directCases builds every message appendDirect writes from a few strings,
// in the shapes that change its output: fields empty or set, pointers nil
// or not, lists nil, empty or full.
func directCases(a, b, c string, n uint16, flag bool) []Message {
	mid := b
	t := flag
	servers := []ICEServer{{URLs: []string{a, b}, Username: c, Credential: a}, {URLs: nil}, {URLs: []string{}}}
	return []Message{
		&Offer{Session: a, SDP: b, Camera: c, Stream: a, Token: b, Trickle: &t, ICEServers: servers},
		&Offer{Session: a, SDP: b},
		&Offer{Session: a, SDP: b, ICEServers: []ICEServer{}},
		&Answer{Session: a, SDP: b},
		&Answer{Session: a, SDP: b, Served: &Served{Stream: c, Codec: a, Width: int(n), Height: -int(n), Note: b, Audio: c}},
		&Candidate{Session: a, Candidate: b},
		&Candidate{Session: a, Candidate: b, SDPMid: &mid, SDPMLineIndex: &n},
		&Bye{Session: a, Reason: b},
		&Bye{Session: a},
		&Open{Device: a, Camera: b, Stream: c, Token: a, Resume: b, Ref: c},
		&Open{Device: a, Camera: b},
		&Session{Session: a, ICEServers: servers, Ref: c},
		&Session{Session: a},
		&Session{Session: a, ICEServers: []ICEServer{}},
	}
}

// What appendDirect writes is byte for byte what json.Marshal writes,
// whatever the strings hold: quotes, backslashes, control characters,
// HTML's <>&, U+2028, bytes that are not UTF-8.
func FuzzEncodeDirect(f *testing.F) {
	f.Add("s", "v=0\r\na=x\t\"q\" \\ / é", "<&>", uint16(0), true)
	f.Add("\x00\x01\x1f\x7f", "\u2028\u2029", "\xff\xfe\xc3", uint16(65535), false)
	f.Add("\b\f", "💡", "\xed\xa0\x80", uint16(1), true)
	f.Fuzz(func(t *testing.T, a, b, c string, n uint16, flag bool) {
		for _, m := range directCases(a, b, c, n, flag) {
			h := m.envelope()
			h.V, h.Type = ProtocolVersion, m.MessageType()
			got, ok := appendDirect(nil, m)
			if !ok {
				t.Fatalf("appendDirect does not write %T", m)
			}
			want, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%T:\n direct %s\n   json %s", m, got, want)
			}
		}
	})
}

// Encode goes the direct way once EncodeDirect was called, and gives what
// it gave before; types it does not write still go through encoding/json.
func TestEncodeDirect(t *testing.T) {
	var msgs []Message
	var before [][]byte
	for _, m := range append(directCases("main", strings.Repeat("a=x\r\n", 100), "sub", 3, true),
		&Hello{DeviceID: "d", PublicKey: make([]byte, 32)}, &Error{Code: CodeBadMessage, Message: "m"}) {
		if b, err := Encode(m); err == nil { // some shapes are not valid messages
			msgs, before = append(msgs, m), append(before, b)
		}
	}
	if len(msgs) < 12 {
		t.Fatalf("only %d of the cases are valid messages", len(msgs))
	}
	EncodeDirect()
	t.Cleanup(func() { direct = nil })
	for i, m := range msgs {
		b, err := Encode(m)
		if err != nil || !bytes.Equal(b, before[i]) {
			t.Fatalf("%T: direct %s, %v; want %s", m, b, err, before[i])
		}
	}
	if _, ok := appendDirect(nil, &Hello{}); ok {
		t.Fatal("appendDirect claims to write a hello")
	}
}

func BenchmarkEncodeOffer(b *testing.B) {
	sdp := strings.Repeat("a=candidate:1 1 udp 2130706431 192.168.1.20 50000 typ host\r\n", 50)
	t := true
	m := &Offer{Session: "0123456789abcdef", SDP: sdp, Camera: "1", Token: strings.Repeat("t", 300), Trickle: &t,
		ICEServers: []ICEServer{{URLs: []string{"stun:rv.example:3478"}}, {URLs: []string{"turn:rv.example:3478"}, Username: "u", Credential: "c"}}}
	for _, mode := range []string{"json", "direct"} {
		b.Run(mode, func(b *testing.B) {
			if mode == "direct" {
				EncodeDirect()
				defer func() { direct = nil }()
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Encode(m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
