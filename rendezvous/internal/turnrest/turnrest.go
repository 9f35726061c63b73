// Package turnrest mints short-lived TURN credentials with the shared-secret
// scheme of the TURN REST API draft (draft-uberti-behave-turn-rest-00), the
// one coturn implements with use-auth-secret: the username is the expiry
// time in Unix seconds, a colon and a label, and the password is the
// base64 HMAC-SHA1 of the username under the secret. The rendezvous and the
// relay share only the secret; no per-user state, and a leaked credential
// dies on its own within the TTL.
package turnrest

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"strconv"
	"time"
)

// Credentials returns a username and password for label, valid until
// now+ttl on a relay configured with secret.
func Credentials(secret []byte, label string, now time.Time, ttl time.Duration) (username, password string) {
	username = strconv.FormatInt(now.Add(ttl).Unix(), 10) + ":" + label
	mac := hmac.New(sha1.New, secret)
	mac.Write([]byte(username))
	return username, base64.StdEncoding.EncodeToString(mac.Sum(nil))
}
