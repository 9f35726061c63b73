// Package redact hides secrets in what is logged.
package redact

import "net/url"

// URL is raw with its password, if it has one, replaced by xxxxx: a
// camera's RTSP URL, a database URL. What does not parse is returned as
// it is.
func URL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}
