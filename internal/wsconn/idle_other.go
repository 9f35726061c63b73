//go:build !unix

package wsconn

import (
	"net/http"

	"github.com/gorilla/websocket"
)

// Hijacking returns w: the shallow idle wait needs a Unix socket.
func Hijacking(w http.ResponseWriter) http.ResponseWriter { return w }

type idleConn struct{}

func (*idleConn) wait(*websocket.Conn) error { return nil }

func idleOf(*websocket.Conn) *idleConn { return nil }
