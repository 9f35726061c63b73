package proto

import (
	"strconv"
	"unicode/utf8"
)

// EncodeDirect makes Encode write the frames a relay sends most (offers,
// answers, candidates, byes, opens, sessions) field by field, where
// encoding/json walks each message by reflection. The output is byte for
// byte what json.Marshal writes (FuzzEncodeDirect holds it to that). The
// rendezvous turns it on; the agent leaves it off, and the linker leaves it
// out. Call it before encoding starts.
func EncodeDirect() { direct = appendDirect }

// direct is appendDirect once EncodeDirect was called.
var direct func(b []byte, m Message) ([]byte, bool)

// appendDirect appends m as JSON to b (nil: a buffer about m's size);
// false for a type it does not write.
func appendDirect(b []byte, m Message) ([]byte, bool) {
	if b == nil {
		b = make([]byte, 0, sizeHint(m))
	}
	switch m := m.(type) {
	case *Offer:
		b = head(b, &m.Header)
		b = field(b, "session", m.Session, false)
		b = field(b, "sdp", m.SDP, false)
		b = field(b, "camera", m.Camera, true)
		b = field(b, "stream", m.Stream, true)
		b = field(b, "token", m.Token, true)
		if m.Trickle != nil {
			b = append(b, `,"trickle":`...)
			b = strconv.AppendBool(b, *m.Trickle)
		}
		if len(m.ICEServers) > 0 {
			b = iceServers(append(b, `,"ice_servers":`...), m.ICEServers)
		}
	case *Answer:
		b = head(b, &m.Header)
		b = field(b, "session", m.Session, false)
		b = field(b, "sdp", m.SDP, false)
		if s := m.Served; s != nil {
			b = append(b, `,"served":{"stream":`...)
			b = appendString(b, s.Stream)
			b = field(b, "codec", s.Codec, false)
			b = number(b, "width", s.Width)
			b = number(b, "height", s.Height)
			b = field(b, "note", s.Note, true)
			b = field(b, "audio", s.Audio, true)
			b = append(b, '}')
		}
	case *Candidate:
		b = head(b, &m.Header)
		b = field(b, "session", m.Session, false)
		b = field(b, "candidate", m.Candidate, false)
		if m.SDPMid != nil {
			b = field(b, "sdp_mid", *m.SDPMid, false)
		}
		if m.SDPMLineIndex != nil {
			b = append(b, `,"sdp_mline_index":`...)
			b = strconv.AppendUint(b, uint64(*m.SDPMLineIndex), 10)
		}
	case *Bye:
		b = head(b, &m.Header)
		b = field(b, "session", m.Session, false)
		b = field(b, "reason", m.Reason, true)
	case *Open:
		b = head(b, &m.Header)
		b = field(b, "device", m.Device, false)
		b = field(b, "camera", m.Camera, false)
		b = field(b, "stream", m.Stream, true)
		b = field(b, "token", m.Token, true)
		b = field(b, "resume", m.Resume, true)
		b = field(b, "ref", m.Ref, true)
	case *Session:
		b = head(b, &m.Header)
		b = field(b, "session", m.Session, false)
		b = iceServers(append(b, `,"ice_servers":`...), m.ICEServers)
		b = field(b, "ref", m.Ref, true)
	default:
		return b, false
	}
	return append(b, '}'), true
}

// sizeHint is about what appendDirect writes for m.
func sizeHint(m Message) int {
	switch m := m.(type) {
	case *Offer:
		return 256 + len(m.SDP)*17/16 + 256*len(m.ICEServers)
	case *Answer:
		return 256 + len(m.SDP)*17/16
	case *Session:
		return 128 + 256*len(m.ICEServers)
	}
	return 256
}

func head(b []byte, h *Header) []byte {
	b = append(b, `{"v":`...)
	b = strconv.AppendInt(b, int64(h.V), 10)
	return field(b, "type", h.Type, false)
}

// field appends ,"key":"v" (key needs no escaping); none when omitEmpty
// and v is empty.
func field(b []byte, key, v string, omitEmpty bool) []byte {
	if omitEmpty && v == "" {
		return b
	}
	b = append(append(append(b, `,"`...), key...), `":`...)
	return appendString(b, v)
}

// number appends ,"key":n, none for 0 (every int here is omitempty).
func number(b []byte, key string, n int) []byte {
	if n == 0 {
		return b
	}
	b = append(append(append(b, `,"`...), key...), `":`...)
	return strconv.AppendInt(b, int64(n), 10)
}

func iceServers(b []byte, list []ICEServer) []byte {
	if list == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, s := range list {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"urls":`...)
		if s.URLs == nil {
			b = append(b, "null"...)
		} else {
			b = append(b, '[')
			for j, u := range s.URLs {
				if j > 0 {
					b = append(b, ',')
				}
				b = appendString(b, u)
			}
			b = append(b, ']')
		}
		b = field(b, "username", s.Username, true)
		b = field(b, "credential", s.Credential, true)
		b = append(b, '}')
	}
	return append(b, ']')
}

// AppendString appends s as a JSON string, quoted as encoding/json quotes it
// (for encoders of other JSON that must match json.Marshal's output).
func AppendString(b []byte, s string) []byte { return appendString(b, s) }

const hexDigits = "0123456789abcdef"

// plain holds the bytes a JSON string takes as they are: printable ASCII
// but for ", \ and HTML's <, > and &.
var plain = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

// appendString quotes s as encoding/json does by default: HTML's <, > and
// & escaped, U+2028 and U+2029 escaped, bytes that are not UTF-8 as
// U+FFFD.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if plain[c] {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(append(b, s[start:i]...), `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(append(b, s[start:i]...), '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	return append(append(b, s[start:]...), '"')
}
