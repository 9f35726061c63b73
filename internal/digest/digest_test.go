package digest

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// RFC 2617 section 3.5's worked example.
func TestRFCExample(t *testing.T) {
	c, ok := ParseChallenge(`Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"`)
	if !ok {
		t.Fatal("challenge not accepted")
	}
	got := params(strings.TrimPrefix(c.authorization("GET", "/dir/index.html", "Mufasa", "Circle Of Life", "0a4f113b", "00000001"), "Digest "))
	if got["response"] != "6629fae49393a05397450978507c4ef1" || got["opaque"] != "5ccc069c403ebaf9f0171e9517f40e41" || got["uri"] != "/dir/index.html" {
		t.Fatalf("answer %v", got)
	}
}

func TestParseChallengeRefuses(t *testing.T) {
	for _, h := range []string{`Basic realm="x"`, `Digest realm="x"`, `Digest realm="x", nonce="n", algorithm=SHA-256`, `Digest nonce="n", qop="auth-int"`, ``} {
		if _, ok := ParseChallenge(h); ok {
			t.Errorf("%q accepted", h)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	s := Server{Realm: "IP Camera", User: "admin", Pass: "secret"}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.Check(r) {
			s.Challenge(w)
			return
		}
		w.Write([]byte("ok"))
	}))
	defer srv.Close()
	for _, tc := range []struct {
		pass string
		want int
	}{{"secret", 200}, {"wrong", 401}} {
		req, _ := http.NewRequest("PUT", srv.URL+"/ISAPI/Streaming/channels/101/requestKeyFrame?x=1", nil)
		resp, err := Do(srv.Client(), req, "admin", tc.pass)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("password %q: %d, want %d", tc.pass, resp.StatusCode, tc.want)
		}
	}
	// An answer replayed for another URI is refused.
	req, _ := http.NewRequest("PUT", srv.URL+"/a", nil)
	c := Challenge{Realm: s.Realm, Nonce: "n", QOP: "auth"}
	req.Header.Set("Authorization", c.Authorization("PUT", "/b", "admin", "secret"))
	if resp, err := srv.Client().Do(req); err != nil || resp.StatusCode != 401 {
		t.Fatalf("replayed for another URI: %v %v", resp.StatusCode, err)
	}
}
