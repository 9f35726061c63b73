package api

import (
	"context"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiter is a token bucket per key (an address or an account), for calls an
// attacker would repeat: login, setup, claim, session opens.
type limiter struct {
	mu sync.Mutex // guards buckets
	// buckets maps a key to its bucket; idle ones are swept.
	buckets map[string]*bucket
	every   time.Duration
	burst   int
	// hit, when set, hears of each refusal by allow.
	hit func()
	// share, when set, tells the other rendezvous nodes of each attempt
	// spent (forget false) or budget reset (true), so a limit holds across
	// a cluster; they apply it with applyShared.
	share func(key string, forget bool)
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

func newLimiter(every time.Duration, burst int) *limiter {
	return &limiter{buckets: map[string]*bucket{}, every: every, burst: burst}
}

// allow answers 429 with Retry-After and returns false when key is over its
// budget.
func (l *limiter) allow(w http.ResponseWriter, key string) bool {
	delay := l.take(key)
	if delay <= 0 {
		return true
	}
	if l.hit != nil {
		l.hit()
	}
	tooMany(w, delay, "Too many attempts. Wait a little and try again.")
	return false
}

// tooMany is the package's tooMany, counted in the metrics.
func (a *API) tooMany(w http.ResponseWriter, delay time.Duration, msg string) {
	a.cfg.Metrics.RateLimited.WithLabelValues("http").Inc()
	tooMany(w, delay, msg)
}

// tooMany answers 429 with Retry-After in whole seconds, rounded up.
func tooMany(w http.ResponseWriter, delay time.Duration, msg string) {
	w.Header().Set("Retry-After", strconv.Itoa(int(delay/time.Second)+1))
	writeErr(w, http.StatusTooManyRequests, "rate_limited", msg)
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
	} else if l.share != nil {
		l.share(key, false)
	}
	return delay
}

// applyShared applies another node's spending (or reset) of key.
func (l *limiter) applyShared(key string, forget bool) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if forget {
		delete(l.buckets, key)
		return
	}
	l.bucket(key, now).lim.AllowN(now, 1)
}

// wait tells how long until key has an attempt, without spending one; zero
// when it has one now.
func (l *limiter) wait(key string) time.Duration {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	lim := l.bucket(key, now).lim
	if tok := lim.TokensAt(now); tok < 1 {
		return time.Duration((1 - tok) * float64(l.every))
	}
	return 0
}

// exhausted tells whether key has no attempt left now, without spending one.
func (l *limiter) exhausted(key string) bool { return l.wait(key) > 0 }

// spent tells whether key has used any of its budget recently (its bucket
// is not full), without creating one.
func (l *limiter) spent(key string) bool {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	return b != nil && b.lim.TokensAt(now) < float64(l.burst)
}

// forget drops key's bucket: its budget is full again.
func (l *limiter) forget(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.buckets, key)
	if l.share != nil {
		l.share(key, true)
	}
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

// addrKey is the rate-limit identity of a client address: the address for
// IPv4, its /64 for IPv6, since one home or phone gets a whole /64 and could
// otherwise rotate through it.
func addrKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	a = a.Unmap()
	if a.Is4() {
		return a.String()
	}
	p, _ := a.Prefix(64)
	return p.String()
}

// connCounter caps concurrent connections per address key.
type connCounter struct {
	mu sync.Mutex // guards n
	n  map[string]int
}

// acquire counts one more connection for key unless it has max already.
func (c *connCounter) acquire(key string, max int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	if c.n[key] >= max {
		return false
	}
	c.n[key]++
	return true
}

func (c *connCounter) release(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[key]--; c.n[key] <= 0 {
		delete(c.n, key)
	}
}

// turns lets one caller per key work at a time; the others wait their turn.
// A key is held only while somebody uses or waits for it.
type turns struct {
	mu sync.Mutex // guards keys
	// keys maps a key to its turn: a one-place channel, full while it is
	// somebody's, and how many hold or wait for it.
	keys map[string]*turn
}

type turn struct {
	ch    chan struct{}
	users int
}

// take waits, at most wait, for key's turn; done ends it. ok is false
// when the wait (or ctx) ran out first.
func (t *turns) take(ctx context.Context, key string, wait time.Duration) (done func(), ok bool) {
	t.mu.Lock()
	if t.keys == nil {
		t.keys = map[string]*turn{}
	}
	k := t.keys[key]
	if k == nil {
		k = &turn{ch: make(chan struct{}, 1)}
		t.keys[key] = k
	}
	k.users++
	t.mu.Unlock()
	leave := func() {
		t.mu.Lock()
		if k.users--; k.users == 0 {
			delete(t.keys, key)
		}
		t.mu.Unlock()
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case k.ch <- struct{}{}:
		return func() { <-k.ch; leave() }, true
	case <-timer.C:
	case <-ctx.Done():
	}
	leave()
	return nil, false
}
