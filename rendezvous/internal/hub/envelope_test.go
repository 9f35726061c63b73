package hub

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/peercam/peercam/proto"
)

// envelope.encode writes what json.Marshal writes, whatever the fields hold.
func FuzzEnvelopeEncode(f *testing.F) {
	f.Add("msg", "offer", "node-A", "dev", "A:1", int64(1764000000000000000), "sess", "", "", false, "v=0\r\n<&>\u2028")
	f.Add("", "", "", "", "", int64(0), "", "id\x00\xff", "key\"\\", true, "")
	f.Fuzz(func(t *testing.T, op, typ, node, device, gen string, since int64, session, id, key string, forget bool, sdp string) {
		e := envelope{Op: op, Type: typ, Node: node, Device: device, Gen: gen, Since: since, Session: session, ID: id, Key: key, Forget: forget}
		if sdp != "" {
			b, err := proto.Encode(&proto.Answer{Session: "s", SDP: sdp})
			if err != nil {
				t.Fatal(err)
			}
			e.Msg = b
		}
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
