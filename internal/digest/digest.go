// Package digest is HTTP Digest access authentication (RFC 7616, MD5 with
// qop=auth, as cameras and recorders speak it): the client side answers a
// 401's challenge, the server side (the simulator's) issues and checks
// them. Hikvision's ISAPI and most cameras' web APIs accept nothing else
// by default.
package digest

import (
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Challenge is a parsed WWW-Authenticate: Digest header.
type Challenge struct {
	Realm, Nonce, Opaque, Algorithm, QOP string
}

// ParseChallenge reads a WWW-Authenticate header value; ok is false when
// it is not a Digest challenge this package can answer (MD5, qop auth or
// none).
func ParseChallenge(h string) (c Challenge, ok bool) {
	scheme, rest, _ := strings.Cut(strings.TrimSpace(h), " ")
	if !strings.EqualFold(scheme, "Digest") {
		return c, false
	}
	p := params(rest)
	c = Challenge{Realm: p["realm"], Nonce: p["nonce"], Opaque: p["opaque"], Algorithm: p["algorithm"], QOP: p["qop"]}
	if c.Nonce == "" || (c.Algorithm != "" && !strings.EqualFold(c.Algorithm, "MD5")) {
		return c, false
	}
	if c.QOP != "" {
		if !hasToken(c.QOP, "auth") {
			return c, false
		}
		c.QOP = "auth"
	}
	return c, true
}

// Authorization is the Authorization header value answering c for a
// request of method to uri (the request target, e.g. "/ISAPI/…").
func (c Challenge) Authorization(method, uri, user, pass string) string {
	cnonce := make([]byte, 8)
	_, _ = rand.Read(cnonce)
	return c.authorization(method, uri, user, pass, hex.EncodeToString(cnonce), "00000001")
}

func (c Challenge) authorization(method, uri, user, pass, cnonce, nc string) string {
	ha1 := hash(user + ":" + c.Realm + ":" + pass)
	ha2 := hash(method + ":" + uri)
	var b strings.Builder
	fmt.Fprintf(&b, `Digest username=%q, realm=%q, nonce=%q, uri=%q`, user, c.Realm, c.Nonce, uri)
	if c.QOP == "auth" {
		fmt.Fprintf(&b, `, qop=auth, nc=%s, cnonce=%q, response=%q`, nc, cnonce, hash(ha1+":"+c.Nonce+":"+nc+":"+cnonce+":auth:"+ha2))
	} else {
		fmt.Fprintf(&b, `, response=%q`, hash(ha1+":"+c.Nonce+":"+ha2))
	}
	if c.Opaque != "" {
		fmt.Fprintf(&b, `, opaque=%q`, c.Opaque)
	}
	if c.Algorithm != "" {
		b.WriteString(", algorithm=MD5")
	}
	return b.String()
}

// Do sends req with client, answering one Digest challenge if the server
// asks for it. req must have no body or a replayable one (GetBody).
func Do(client *http.Client, req *http.Request, user, pass string) (*http.Response, error) {
	resp, err := client.Do(req)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	c, ok := ParseChallenge(resp.Header.Get("WWW-Authenticate"))
	if !ok {
		return resp, nil
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	again := req.Clone(req.Context())
	if req.GetBody != nil {
		if again.Body, err = req.GetBody(); err != nil {
			return nil, err
		}
	}
	again.Header.Set("Authorization", c.Authorization(req.Method, req.URL.RequestURI(), user, pass))
	return client.Do(again)
}

// Server issues challenges and checks answers for one realm and one
// user. Nonces are random per challenge and not tracked: enough for a
// simulator, not for a product's login.
type Server struct {
	Realm, User, Pass string
}

// Check reports whether r carries a correct Digest answer for s's user.
func (s Server) Check(r *http.Request) bool {
	scheme, rest, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Digest") {
		return false
	}
	p := params(rest)
	if p["username"] != s.User || p["realm"] != s.Realm || p["uri"] != r.URL.RequestURI() {
		return false
	}
	c := Challenge{Realm: s.Realm, Nonce: p["nonce"], Opaque: p["opaque"], QOP: p["qop"]}
	want := params(strings.TrimPrefix(c.authorization(r.Method, p["uri"], s.User, s.Pass, p["cnonce"], p["nc"]), "Digest "))["response"]
	return p["response"] != "" && p["response"] == want
}

// Challenge writes a 401 with a fresh Digest challenge.
func (s Server) Challenge(w http.ResponseWriter) {
	nonce := make([]byte, 16)
	_, _ = rand.Read(nonce)
	w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Digest realm=%q, qop="auth", nonce=%q`, s.Realm, hex.EncodeToString(nonce)))
	http.Error(w, "401 Unauthorized", http.StatusUnauthorized)
}

func hash(s string) string {
	h := md5.Sum([]byte(s))
	return hex.EncodeToString(h[:])
}

// params splits `a="x, y", b=z` into a map; quoted values keep commas.
func params(s string) map[string]string {
	out := map[string]string{}
	for s = strings.TrimSpace(s); s != ""; {
		k, rest, ok := strings.Cut(s, "=")
		if !ok {
			break
		}
		k = strings.ToLower(strings.TrimSpace(k))
		var v string
		if strings.HasPrefix(rest, `"`) {
			end := strings.IndexByte(rest[1:], '"')
			if end < 0 {
				v, rest = rest[1:], ""
			} else {
				v, rest = rest[1:1+end], rest[2+end:]
			}
		} else {
			v, rest, _ = strings.Cut(rest, ",")
			v = strings.TrimSpace(v)
			rest = "," + rest
		}
		out[k] = v
		_, rest, _ = strings.Cut(rest, ",")
		s = strings.TrimSpace(rest)
	}
	return out
}

func hasToken(list, tok string) bool {
	for _, f := range strings.Split(list, ",") {
		if strings.EqualFold(strings.TrimSpace(f), tok) {
			return true
		}
	}
	return false
}
