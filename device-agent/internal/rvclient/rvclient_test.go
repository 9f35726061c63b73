package rvclient

import (
	"context"
	"crypto/ed25519"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/peercam/peercam/proto"
)

// attempts runs a client against a rendezvous that refuses every link with
// 503 (and retryAfter, when set) for d, and counts its dials.
func attempts(t *testing.T, retryAfter string, d time.Duration) int64 {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		n.Add(1)
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		http.Error(w, "busy", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	_, key, _ := ed25519.GenerateKey(nil)
	c := New(Config{URL: srv.URL, DeviceID: "dev", Key: key, Handle: func(proto.Message) {}, Logger: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	_ = c.Run(ctx)
	return n.Load()
}

// A rendezvous that says "busy, retry after 2 s" (its admission control in
// a reconnect storm) is not dialled again sooner; without the header the
// agent's own backoff (250 ms, doubling) applies.
func TestBusyRetryAfter(t *testing.T) {
	if n := attempts(t, "2", 1500*time.Millisecond); n != 1 {
		t.Fatalf("%d dials within 1.5 s of a Retry-After of 2 s, want 1", n)
	}
	if n := attempts(t, "", 1500*time.Millisecond); n < 3 {
		t.Fatalf("%d dials within 1.5 s without Retry-After, want the backoff's 3 or more", n)
	}
}
