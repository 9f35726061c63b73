package onvif

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"
)

// WS-Security UsernameToken Profile 1.0, section 3.1: the digest of the
// example's nonce, created and password.
func TestDigest(t *testing.T) {
	nonce, _ := base64.StdEncoding.DecodeString("LKqI6G/AikKCQrN0zqZFlg==")
	if got := Digest(nonce, "2010-09-16T07:50:45Z", "userpassword"); got != "tuOSpGlFlIXsozq4HFNeeGeFLEI=" {
		t.Fatalf("digest %s", got)
	}
}

func TestTokenCheck(t *testing.T) {
	now := time.Now()
	env := Envelope(securityHeader("admin", "pw", now), `<tds:GetDeviceInformation/>`)
	r, err := ParseRequest([]byte(env))
	if err != nil || r.Action != "GetDeviceInformation" || r.Token == nil {
		t.Fatalf("parse: %+v %v", r, err)
	}
	for _, tt := range []struct {
		name, user, pass string
		at               time.Time
		ok               bool
	}{
		{"right", "admin", "pw", now, true},
		{"wrong password", "admin", "x", now, false},
		{"wrong user", "root", "pw", now, false},
		{"replayed an hour later", "admin", "pw", now.Add(time.Hour), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := r.Token.Check(tt.user, tt.pass, tt.at, 5*time.Minute); got != tt.ok {
				t.Fatalf("Check = %v, want %v", got, tt.ok)
			}
		})
	}
	var none *Token
	if none.Check("admin", "pw", now, time.Minute) {
		t.Fatal("no token passed")
	}
}

func TestProbeRoundTrip(t *testing.T) {
	msg, id := ProbeMessage()
	got, ok := ParseProbe(msg)
	if !ok || !strings.HasSuffix(got, id) {
		t.Fatalf("probe %q %v, want id %s", got, ok, id)
	}
	ans := ProbeMatches(got, ProbeMatch{Address: "urn:uuid:x", XAddrs: []string{"http://10.0.0.1/onvif/device_service"}, Scopes: []string{"a", "b"}})
	ms, ok := ParseProbeMatches(ans, id)
	if !ok || len(ms) != 1 || ms[0].XAddrs[0] != "http://10.0.0.1/onvif/device_service" || len(ms[0].Scopes) != 2 {
		t.Fatalf("matches %+v %v", ms, ok)
	}
	if _, ok := ParseProbeMatches(ans, "another-probe"); ok {
		t.Fatal("an answer to another probe was taken")
	}
}

// Whatever arrives on UDP 3702 or the SOAP endpoint, parsing returns.
func FuzzParse(f *testing.F) {
	msg, _ := ProbeMessage()
	f.Add(msg)
	f.Add([]byte(Envelope(securityHeader("a", "b", time.Now()), `<trt:GetStreamUri><trt:ProfileToken>x</trt:ProfileToken></trt:GetStreamUri>`)))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = ParseProbe(b)
		_, _ = ParseProbeMatches(b, "x")
		if r, err := ParseRequest(b); err == nil {
			_ = r.Token.Check("a", "b", time.Now(), time.Minute)
		}
	})
}
