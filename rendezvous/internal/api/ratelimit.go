package api

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiter is a token bucket per key (an address or an account), for calls an
// attacker would repeat: login, setup, claim.
type limiter struct {
	mu sync.Mutex // guards buckets
	// buckets maps a key to its bucket; idle ones are swept.
	buckets map[string]*bucket
	every   time.Duration
	burst   int
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

func newLimiter() *limiter {
	return &limiter{buckets: map[string]*bucket{}, every: 3 * time.Second, burst: 10}
}

// allow answers 429 with Retry-After and returns false when key is over its
// budget.
func (l *limiter) allow(w http.ResponseWriter, key string) bool {
	delay := l.take(key)
	if delay <= 0 {
		return true
	}
	w.Header().Set("Retry-After", strconv.Itoa(int(delay/time.Second)+1))
	writeErr(w, http.StatusTooManyRequests, "rate_limited", "Too many attempts. Wait a little and try again.")
	return false
}

// take spends one attempt of key's budget; a positive result is how long to
// wait instead, and nothing was spent.
func (l *limiter) take(key string) time.Duration {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bucket(key, now)
	r := b.lim.ReserveN(now, 1)
	delay := r.DelayFrom(now)
	if delay > 0 {
		r.CancelAt(now)
	}
	return delay
}

// exhausted tells whether key has no attempt left now, without spending one.
func (l *limiter) exhausted(key string) bool {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.bucket(key, now).lim.TokensAt(now) < 1
}

func (l *limiter) bucket(key string, now time.Time) *bucket {
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) > 10000 {
			for k, v := range l.buckets {
				if now.Sub(v.seen) > time.Duration(l.burst)*l.every {
					delete(l.buckets, k)
				}
			}
		}
		b = &bucket{lim: rate.NewLimiter(rate.Every(l.every), l.burst)}
		l.buckets[key] = b
	}
	b.seen = now
	return b
}
