package proto

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func ptr[T any](v T) *T { return &v }

var key32 = bytes.Repeat([]byte{7}, 32)

func TestEncodeGolden(t *testing.T) {
	tests := []struct {
		name   string
		msg    Message
		golden string
	}{
		{"hello", &Hello{DeviceID: "abc", PublicKey: key32, AgentVersion: "1.0", Cameras: []Camera{{ID: "1", Name: "Door", HasSub: true}}},
			`{"v":1,"type":"hello","device_id":"abc","public_key":"BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=","agent_version":"1.0","cameras":[{"id":"1","name":"Door","has_sub":true}]}`},
		{"challenge", &Challenge{Nonce: key32},
			`{"v":1,"type":"challenge","nonce":"BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc="}`},
		{"claim_code", &ClaimCode{Code: "ABCD-EFGH", Expires: time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC), URL: "http://h/#claim=ABCD-EFGH"},
			`{"v":1,"type":"claim_code","code":"ABCD-EFGH","expires":"2026-11-21T10:00:00Z","url":"http://h/#claim=ABCD-EFGH"}`},
		{"open", &Open{Device: "d", Camera: "1", Stream: "sub"},
			`{"v":1,"type":"open","device":"d","camera":"1","stream":"sub"}`},
		{"offer to agent", &Offer{Session: "s", SDP: "v=0", Camera: "1", Stream: "main", Token: "t", Trickle: ptr(false)},
			`{"v":1,"type":"offer","session":"s","sdp":"v=0","camera":"1","stream":"main","token":"t","trickle":false}`},
		{"candidate", &Candidate{Session: "s", Candidate: "candidate:1 1 udp 1 127.0.0.1 5000 typ host", SDPMid: ptr("0"), SDPMLineIndex: ptr(uint16(0))},
			`{"v":1,"type":"candidate","session":"s","candidate":"candidate:1 1 udp 1 127.0.0.1 5000 typ host","sdp_mid":"0","sdp_mline_index":0}`},
		{"end of candidates", &Candidate{Session: "s"},
			`{"v":1,"type":"candidate","session":"s","candidate":""}`},
		{"bye", &Bye{Session: "s", Reason: "viewer left"},
			`{"v":1,"type":"bye","session":"s","reason":"viewer left"}`},
		{"path", &Path{Session: "s", Relayed: false, Local: "host", Remote: "prflx"},
			`{"v":1,"type":"path","session":"s","relayed":false,"local":"host","remote":"prflx"}`},
		{"error", NewError("s", CodeDeviceOffline, "the device is offline"),
			`{"v":1,"type":"error","session":"s","code":"device_offline","message":"the device is offline"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Encode(tt.msg)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.golden {
				t.Fatalf("encode:\n got %s\nwant %s", b, tt.golden)
			}
			m, err := Decode([]byte(tt.golden))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(m, tt.msg) {
				t.Fatalf("round trip: got %#v want %#v", m, tt.msg)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		code Code
		says string
	}{
		{"not json", `hello`, CodeBadMessage, "invalid character"},
		{"array", `[1]`, CodeBadMessage, "must be a JSON object"},
		{"missing v", `{"type":"bye","session":"s"}`, CodeUnsupportedVersion, `"v" is missing`},
		{"future v", `{"v":2,"type":"bye","session":"s"}`, CodeUnsupportedVersion, "v=2"},
		{"v as string", `{"v":"1","type":"bye","session":"s"}`, CodeBadMessage, `field "v" must be int`},
		{"missing type", `{"v":1,"session":"s"}`, CodeBadMessage, `"type" is missing`},
		{"unknown type", `{"v":1,"type":"teleport"}`, CodeUnknownType, "teleport"},
		{"unknown field", `{"v":1,"type":"bye","session":"s","admin":true}`, CodeBadMessage, `unknown field "admin"`},
		{"field of another type", `{"v":1,"type":"bye","session":"s","sdp":"v=0"}`, CodeBadMessage, `unknown field "sdp"`},
		{"wrong field type", `{"v":1,"type":"open","device":"d","camera":1}`, CodeBadMessage, `field "camera" must be string`},
		{"missing required", `{"v":1,"type":"offer","session":"s"}`, CodeBadMessage, "sdp is required"},
		{"bad stream", `{"v":1,"type":"open","device":"d","camera":"1","stream":"hd"}`, CodeBadMessage, "stream must be"},
		{"short key", `{"v":1,"type":"hello","device_id":"d","public_key":"AAAA","cameras":[]}`, CodeBadMessage, "public_key must be 32 bytes"},
		{"trailing data", `{"v":1,"type":"bye","session":"s"}{}`, CodeBadMessage, "after top-level value"},
		{"too large", `{"v":1,"type":"offer","session":"s","sdp":"` + strings.Repeat("a", MaxMessageSize) + `"}`, CodeTooLarge, "limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Decode([]byte(tt.in))
			if err == nil {
				t.Fatalf("decoded %#v, want error", m)
			}
			if got := CodeOf(err); got != tt.code {
				t.Fatalf("code %q, want %q (err %v)", got, tt.code, err)
			}
			if !strings.Contains(err.Error(), tt.says) {
				t.Fatalf("error %q does not say %q", err, tt.says)
			}
		})
	}
}

// Every prefix of a valid frame is an error, never a panic or a half message.
func TestDecodePrefixes(t *testing.T) {
	full := `{"v":1,"type":"candidate","session":"s","candidate":"candidate:1 1 udp 1 1.2.3.4 5 typ host","sdp_mid":"0"}`
	for i := 0; i < len(full); i++ {
		if _, err := Decode([]byte(full[:i])); err == nil {
			t.Fatalf("prefix %q decoded", full[:i])
		}
	}
	if _, err := Decode([]byte(full)); err != nil {
		t.Fatal(err)
	}
}

func TestEncodeRefusesInvalid(t *testing.T) {
	_, err := Encode(&Offer{Session: "s"})
	if !errors.Is(err, ErrBadMessage) {
		t.Fatalf("err %v, want ErrBadMessage", err)
	}
}

func TestDeviceIDAndAuth(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	id := DeviceID(pub)
	if len(id) != 26 || strings.ToLower(id) != id {
		t.Fatalf("device id %q: want 26 lower-case characters", id)
	}
	pub2, _, _ := ed25519.GenerateKey(nil)
	if DeviceID(pub2) == id {
		t.Fatal("two keys gave one device id")
	}
	nonce := key32
	sig := ed25519.Sign(priv, AuthPayload(nonce, id))
	if !ed25519.Verify(pub, AuthPayload(nonce, id), sig) {
		t.Fatal("signature does not verify")
	}
	if ed25519.Verify(pub, AuthPayload(nonce, DeviceID(pub2)), sig) {
		t.Fatal("signature verifies for another device id")
	}
}

func FuzzDecode(f *testing.F) {
	DecodeOnePass()
	f.Add([]byte(`{"v":1,"type":"open","device":"d","camera":"1"}`))
	f.Add([]byte(`{"v":1,"type":"candidate","session":"s","candidate":"","sdp_mline_index":0}`))
	f.Add([]byte(`{"v":1,"type":"hello","device_id":"d","public_key":"BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=","cameras":[{"id":"1","name":"x"}]}`))
	f.Add([]byte(`{"v":1,"type":"offer","type":"answer","session":"s","sdp":"x"}`))
	f.Add([]byte(`{"v":2,"type":"bye","session":"s"}`))
	// What decodeFlat takes, and what it must leave to the strict path.
	f.Add([]byte(`{"v":1,"type":"offer","session":"s","sdp":"v=0\r\na=x\t\"q\" \\ \/ é","trickle":true}`))
	f.Add([]byte(`{"v":1,"type":"candidate","session":"s","candidate":"c","sdp_mid":"0","sdp_mline_index":65535}`))
	f.Add([]byte(` {"type":"answer" , "v":1,"session":"s","sdp":"\u0041"} `))
	f.Add([]byte(`{"v":1,"type":"bye","session":"s","SESSION":"t"}`))
	f.Add([]byte(`{"v":01,"type":"bye","session":"s"}`))
	f.Add([]byte("{\"v\":1,\"type\":\"bye\",\"session\":\"\xff\"}"))
	f.Add([]byte(`{"v":1,"type":"candidate","session":"s","candidate":"c","sdp_mid":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		// The fast path accepts only what the strict one does, the same.
		if fast := decodeFast(b); fast != nil {
			slow, err := decodeSlow(b)
			if err != nil || !reflect.DeepEqual(fast, slow) {
				t.Fatalf("fast decode %#v, slow %#v %v", fast, slow, err)
			}
		}
		m, err := Decode(b)
		if err != nil {
			if CodeOf(err) == CodeInternal {
				t.Fatalf("decode error without a wire code: %v", err)
			}
			return
		}
		// Whatever decodes must encode again and decode to the same message.
		out, err := Encode(m)
		if err != nil {
			t.Fatalf("decoded %#v but cannot encode it: %v", m, err)
		}
		m2, err := Decode(out)
		if err != nil {
			t.Fatalf("re-decode of %s: %v", out, err)
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip changed %#v into %#v", m, m2)
		}
	})
}

func BenchmarkDecodeOffer(b *testing.B) {
	DecodeOnePass()
	in, _ := Encode(&Offer{Session: "0123456789abcdef01234567", SDP: strings.Repeat("a=candidate:1 1 udp 2130706431 192.168.1.20 8189 typ host\r\n", 60)})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(in); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeCandidate(b *testing.B) {
	DecodeOnePass()
	in := []byte(`{"v":1,"type":"candidate","session":"0123456789abcdef","candidate":"candidate:1 1 udp 2130706431 192.168.1.20 8189 typ host","sdp_mid":"0","sdp_mline_index":0}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(in); err != nil {
			b.Fatal(err)
		}
	}
}

// TestDecodeFlat: the frames a rendezvous relays most take the one-pass
// path; what it is not sure of goes the strict way (and decodes the same,
// or fails the same: FuzzDecode).
func TestDecodeFlat(t *testing.T) {
	mid, idx, yes := "0", uint16(1), true
	for _, m := range []Message{
		&Offer{Session: "s", SDP: "v=0\r\na=fingerprint:sha-256 AB:CD\r\n\"é\"", Trickle: &yes},
		&Answer{Session: "s", SDP: "v=0\r\n"},
		&Candidate{Session: "s", Candidate: "candidate:1 1 udp 1 10.0.0.1 9 typ host", SDPMid: &mid, SDPMLineIndex: &idx},
		&Open{Device: "d", Camera: "1", Ref: "r"},
		&Bye{Session: "s", Reason: "viewer left"},
	} {
		b, err := Encode(m)
		if err != nil {
			t.Fatal(err)
		}
		got := constructors[m.MessageType()]()
		if !decodeFlat(b, m.MessageType(), got) {
			t.Errorf("%s did not take the one-pass path: %s", m.MessageType(), b)
			continue
		}
		if !reflect.DeepEqual(got, m) {
			t.Errorf("one-pass decode of %s: %#v, want %#v", b, got, m)
		}
	}
	for _, b := range []string{
		`{"v":1,"type":"answer","session":"s","sdp":"\u0041"}`,        // \u escape
		`{"v":1,"type":"bye","session":"s","Session":"t"}`,            // a key as json matches it, not as written
		`{"v":1,"type":"bye","session":"s","session":"t"}`,            // twice
		`{"v":1,"type":"answer","session":"s","sdp":"x","served":{}}`, // an object
		`{"v":1,"type":"bye","session":"s"} x`,                        // after the object
		"{\"v\":1,\"type\":\"bye\",\"session\":\"\xff\"}",             // not UTF-8
		`{"v":1.0,"type":"bye","session":"s"}`,                        // not an integer
	} {
		if decodeFlat([]byte(b), "bye", &Bye{}) || decodeFlat([]byte(b), "answer", &Answer{}) {
			t.Errorf("%s took the one-pass path", b)
		}
	}
}
