package server

import (
	"crypto/tls"
	"net/http"
	"strings"
	"testing"

	"github.com/peercam/peercam/internal/testutil"
)

// Under TLS the session cookie is Secure, so it never travels in clear.
func TestTLSSecureCookie(t *testing.T) {
	certFile, keyFile, pool := testutil.SelfSigned(t)
	s := startWith(t, func(c *Config) {
		c.STUNAddr = "off"
		c.TLSCert, c.TLSKey = certFile, keyFile
	})
	if !strings.HasPrefix(s.URL(), "https://") {
		t.Fatalf("public URL %q under TLS", s.URL())
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := c.Post(s.URL()+"/api/login", "application/json", strings.NewReader(`{"name":"alice","password":"alice-password"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	ck := resp.Header.Get("Set-Cookie")
	if resp.StatusCode != 200 || !strings.Contains(ck, "Secure") || !strings.Contains(ck, "HttpOnly") {
		t.Fatalf("login over TLS: %d, cookie %q; want Secure and HttpOnly", resp.StatusCode, ck)
	}
}
