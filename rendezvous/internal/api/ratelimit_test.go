package api

import (
	"context"
	"testing"
	"time"
)

// IPv6 clients are limited per /64, IPv4-mapped addresses as IPv4.
func TestAttackIPv6PerPrefix(t *testing.T) {
	for _, tt := range []struct{ name, a, b string }{
		{"same /64", "2001:db8:1:2::1", "2001:db8:1:2:ffff::9"},
		{"IPv4-mapped", "::ffff:192.0.2.1", "192.0.2.1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if addrKey(tt.a) != addrKey(tt.b) {
				t.Fatalf("%s and %s have different rate-limit keys", tt.a, tt.b)
			}
		})
	}
	if addrKey("2001:db8:1:2::1") == addrKey("2001:db8:1:3::1") {
		t.Fatal("two /64s share a key")
	}
}

// One caller per key at a time: the second waits until the first is done,
// gives up after its wait, and a key nobody holds or waits for is gone.
func TestTurns(t *testing.T) {
	var tr turns
	ctx := context.Background()
	done, ok := tr.take(ctx, "a", time.Second)
	if !ok {
		t.Fatal("a free key's turn was refused")
	}
	if _, ok := tr.take(ctx, "a", 20*time.Millisecond); ok {
		t.Fatal("a second caller got a key's turn while it was held")
	}
	other, ok := tr.take(ctx, "b", time.Second)
	if !ok {
		t.Fatal("one key held another")
	}
	other()
	got := make(chan func())
	go func() {
		d, ok := tr.take(ctx, "a", 5*time.Second)
		if !ok {
			d = nil
		}
		got <- d
	}()
	time.Sleep(20 * time.Millisecond)
	done()
	d := <-got
	if d == nil {
		t.Fatal("the waiting caller did not get the turn when it was given up")
	}
	d()
	tr.mu.Lock()
	n := len(tr.keys)
	tr.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d keys kept with nobody on them", n)
	}
}
