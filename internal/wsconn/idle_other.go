//go:build !unix

package wsconn

import "net/http"

// Hijacking returns w: the shallow idle wait needs a Unix socket.
func Hijacking(w http.ResponseWriter) http.ResponseWriter { return w }
