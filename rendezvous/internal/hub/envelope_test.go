package hub

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/peercam/peercam/proto"
)

// envelope.encode writes what json.Marshal writes, whatever the fields hold.
func FuzzEnvelopeEncode(f *testing.F) {
	f.Add("msg", "offer", "node-A", "dev", "A:1", int64(1764000000000000000), "sess", "", "", false, "v=0\r\n<&>\u2028")
	f.Add("", "", "", "", "", int64(0), "", "id\x00\xff", "key\"\\", true, "")
	f.Fuzz(func(t *testing.T, op, typ, node, device, gen string, since int64, session, id, key string, forget bool, sdp string) {
		e := envelope{Op: op, Type: typ, Node: node, Device: device, Gen: gen, Since: since, Session: session, ID: id, Key: key, Forget: forget}
		e.Msg = answerMsg(t, sdp)
		got, err := e.encode()
		if err != nil {
			t.Fatal(err)
		}
		want, err := json.Marshal(&e)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("encode %s\n  json %s", got, want)
		}
	})
}

// decode reads what encode writes as json.Unmarshal does; for any other
// input, what its one pass accepts json.Unmarshal reads the same.
func FuzzEnvelopeDecode(f *testing.F) {
	f.Add("msg", "offer", "node-A", "dev", "A:1", int64(-12), "sess", "id", "", true, "v=0\r\n", []byte(`{"op":"here","cameras":[{"id":"1"}]}`))
	f.Add("", "", "", "", "", int64(0), "", "", "k\u00e9", false, "", []byte(`{"op":"x","since":01}`))
	f.Add("a\"b", "", "\xff", "", "", int64(9), "", "", "", false, "", []byte(`{"OP":"x"}`))
	// Keys in another order (a map marshalled), the message not last.
	f.Add("", "", "", "", "", int64(0), "", "", "", false, "", []byte(`{"device":"d","msg":{"v":1,"type":"bye","session":"s\"}"},"node":"X","op":"msg"}`))
	f.Fuzz(func(t *testing.T, op, typ, node, device, gen string, since int64, session, id, key string, forget bool, sdp string, raw []byte) {
		e := envelope{Op: op, Type: typ, Node: node, Device: device, Gen: gen, Since: since, Session: session, ID: id, Key: key, Forget: forget}
		e.Msg = answerMsg(t, sdp)
		for _, b := range [][]byte{must(e.encode()), raw} {
			var got, want envelope
			gotErr, wantErr := got.decode(b), json.Unmarshal(b, &want)
			flat := (&envelope{}).decodeFlat(b)
			if flat && wantErr == nil && !json.Valid(b) {
				continue // an invalid msg, taken as it is
			}
			if (gotErr == nil) != (wantErr == nil) && !(flat && !json.Valid(b)) {
				t.Fatalf("%q: decode error %v, json %v", b, gotErr, wantErr)
			}
			if wantErr == nil && !equalEnvelopes(got, want) {
				t.Fatalf("%q:\n decode %+v\n   json %+v", b, got, want)
			}
		}
	})
}

// answerMsg is an encoded answer carrying sdp, or nil for none.
func answerMsg(t *testing.T, sdp string) []byte {
	if sdp == "" {
		return nil
	}
	return must(proto.Encode(&proto.Answer{Session: "s", SDP: sdp}))
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

func equalEnvelopes(a, b envelope) bool { return reflect.DeepEqual(a, b) }

// What the nodes relay most takes the one pass.
func TestEnvelopeDecodeFlat(t *testing.T) {
	msg := must(proto.Encode(&proto.Offer{Session: "s1", SDP: "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n"}))
	for _, e := range []envelope{
		{Op: "msg", Node: "B", Device: "dev1", Gen: "A:7", Since: 1764000000123456789, Session: "s1", Type: "offer", Msg: msg},
		{Op: "viewer", Node: "A", Device: "dev1", Gen: "A:7", Session: "s1", Msg: msg},
		{Op: "gone", Node: "A", Device: "dev1", Gen: "A:7", Session: "s1"},
		{Op: "limit", Node: "A", ID: "login", Key: "203.0.113.9", Forget: true},
	} {
		b := must(e.encode())
		var got envelope
		if !got.decodeFlat(b) || !equalEnvelopes(got, e) {
			t.Fatalf("%s: one pass %v, %+v", b, got.decodeFlat(b), got)
		}
	}
}
