package metrics

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestServe(t *testing.T) {
	m := New(func() int { return 3 })
	m.ForStream("1", "main").BytesOut.Add(1200)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go m.Serve(ln)
	base := "http://" + ln.Addr().String()
	get := func(method, path string) (int, string) {
		req, _ := http.NewRequest(method, base+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	st, body := get("GET", "/metrics")
	if st != 200 || !strings.Contains(body, "peercam_agent_viewers 3\n") ||
		!strings.Contains(body, `peercam_agent_bytes_out_total{camera="1",stream="main"} 1200`) || !strings.Contains(body, "go_goroutines") {
		t.Fatalf("GET /metrics: %d\n%s", st, body)
	}
	if st, _ := get("GET", "/"); st != 404 {
		t.Fatalf("GET /: %d, want 404", st)
	}
	if st, _ := get("POST", "/metrics"); st != 405 {
		t.Fatalf("POST /metrics: %d, want 405", st)
	}
	if st, body := get("HEAD", "/metrics"); st != 200 || body != "" {
		t.Fatalf("HEAD /metrics: %d %q", st, body)
	}
	// A client that sends nothing is cut off, and does not hold the others.
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if st, _ := get("GET", "/metrics"); st != 200 {
		t.Fatal("a silent client held the endpoint")
	}
	_ = c.SetReadDeadline(time.Now().Add(7 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("a silent client got an answer")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("a silent client was not cut off within 5 s")
	}
}
