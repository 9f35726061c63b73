package turnrest

import (
	"testing"
	"time"
)

// Golden values computed independently with
// printf %s "1700000600:peercam" | openssl dgst -sha1 -hmac s3cret -binary | base64
func TestCredentials(t *testing.T) {
	user, pass := Credentials([]byte("s3cret"), "peercam", time.Unix(1700000000, 0), 10*time.Minute)
	if user != "1700000600:peercam" {
		t.Fatalf("username %q", user)
	}
	if pass != "XHBvlL8FwKxGTdFBSqND7NTouFA=" {
		t.Fatalf("password %q", pass)
	}
}
