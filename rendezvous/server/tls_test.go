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
	req, _ := http.NewRequest("POST", s.URL()+"/api/login", strings.NewReader(`{"name":"alice","password":"alice-password"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", s.URL()) // a same-site Origin stands in for the CSRF header
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	ck := resp.Header.Get("Set-Cookie")
	if resp.StatusCode != 200 || !strings.Contains(ck, "Secure") || !strings.Contains(ck, "HttpOnly") {
		t.Fatalf("login over TLS: %d, cookie %q; want Secure and HttpOnly", resp.StatusCode, ck)
	}
}
