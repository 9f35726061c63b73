package api

import "testing"

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
