package auth

import (
	"errors"
	"strings"
	"testing"
)

func TestPassword(t *testing.T) {
	h, err := HashPassword("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=65536,t=3,p=2$") {
		t.Fatalf("hash %q is not argon2id in PHC format", h)
	}
	if err := CheckPassword(h, "correct horse"); err != nil {
		t.Fatal(err)
	}
	if err := CheckPassword(h, "correct horsE"); !errors.Is(err, ErrBadPassword) {
		t.Fatalf("wrong password: %v", err)
	}
	if _, err := HashPassword("short"); !errors.Is(err, ErrWeakPassword) {
		t.Fatalf("short password: %v", err)
	}
	h2, _ := HashPassword("correct horse")
	if h == h2 {
		t.Fatal("two hashes of one password are equal: no salt")
	}
}

func TestClaimCode(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		c := NewClaimCode()
		if len(c) != 14 || c[4] != '-' || c[9] != '-' {
			t.Fatalf("code %q is not XXXX-XXXX-XXXX", c)
		}
		for _, r := range strings.ReplaceAll(c, "-", "") {
			if !strings.ContainsRune(claimAlphabet, r) {
				t.Fatalf("code %q has %q, outside the alphabet", c, r)
			}
		}
		if seen[c] {
			t.Fatalf("code %q repeated", c)
		}
		seen[c] = true
	}
	tests := []struct{ typed, want string }{
		{"k7qf m3xp r9ta", "K7QF-M3XP-R9TA"},
		{"K7QF-M3XP-R9TA", "K7QF-M3XP-R9TA"},
		{" k7qfm3xpr9ta ", "K7QF-M3XP-R9TA"},
	}
	for _, tt := range tests {
		if got := NormalizeClaimCode(tt.typed); got != tt.want {
			t.Fatalf("NormalizeClaimCode(%q) = %q, want %q", tt.typed, got, tt.want)
		}
	}
}
