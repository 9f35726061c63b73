//go:build unix

package wsconn

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"syscall"

	"github.com/gorilla/websocket"
)

// A rendezvous holds tens of thousands of agents' links, idle nearly
// always. Blocked in gorilla's ReadMessage, each link's reader goroutine
// keeps a stack of about 8 KiB (the chain from the reader through bufio to
// the poller, on top of what the handshake grew), which is two thirds of
// what an idle device costs and most of the garbage collector's work.
//
// idleConn lets an idle link wait for its next message in a shallow frame
// instead (syscall.RawConn.Read), where the stack shrinks to 2 KiB. Two
// things make that safe. Reads through idleConn stop at the end of the
// current WebSocket frame, so once gorilla has returned a message its
// buffer holds nothing of the next one and waiting on the socket cannot
// strand a message already read. And a ping or pong, the only traffic of an
// idle link, is taken off the socket and answered by gorilla's own
// handlers while waiting, so it does not pull the reader into gorilla's
// deep wait until the next message. Everything else, the rules of framing
// included, is gorilla's: idleConn only finds where frames end.
type idleConn struct {
	net.Conn
	raw syscall.RawConn
	// left is what remains of the frame being read; 0 at a frame boundary.
	left int64
	// peekOnce as a func value, made once; p is what it found.
	peekOnce func(uintptr) bool
	p        peeked
	// peek holds a frame header, or a whole control frame, peeked at.
	peek [maxHeader + maxControl]byte
}

const (
	maxHeader  = 2 + 8 + 4 // RFC 6455 §5.2: fixed part, 64-bit length, mask key
	maxControl = 125
)

// Hijacking wraps an HTTP response about to be upgraded to a WebSocket by a
// server: the connection gorilla hijacks from it is an idleConn when it is
// a plain TCP socket (a rendezvous behind a TLS-terminating load balancer).
// A TLS socket, whose records the TLS layer buffers, is left as it is.
func Hijacking(w http.ResponseWriter) http.ResponseWriter {
	if _, ok := w.(http.Hijacker); !ok {
		return w
	}
	return hijacker{w}
}

type hijacker struct{ http.ResponseWriter }

func (h hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := h.ResponseWriter.(http.Hijacker).Hijack()
	if err != nil || brw.Reader.Buffered() > 0 {
		return c, brw, err // gorilla refuses data sent before the handshake
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c, brw, nil
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return c, brw, nil
	}
	ic := &idleConn{Conn: tc, raw: raw}
	ic.peekOnce = ic.look
	// gorilla reads through the HTTP server's reader when that is large
	// and the upgrader sets no buffer size; a minimal one over ic makes it
	// read through ic always.
	return ic, bufio.NewReadWriter(bufio.NewReaderSize(ic, 16), brw.Writer), nil
}

// frame reads a frame header: its length and the payload's, and whether it is a well-formed client control frame (final, masked, no
// reserved bits, at most 125 bytes). ok is false while the header is
// incomplete.
func frame(b []byte) (header int, payload int64, control, ok bool) {
	if len(b) < 2 {
		return 0, 0, false, false
	}
	header, payload = 2, int64(b[1]&0x7f)
	switch payload {
	case 126:
		header = 4
	case 127:
		header = 10
	}
	if b[1]&0x80 != 0 {
		header += 4
	}
	if len(b) < header {
		return 0, 0, false, false
	}
	switch payload {
	case 126:
		payload = int64(binary.BigEndian.Uint16(b[2:]))
	case 127:
		if u := binary.BigEndian.Uint64(b[2:]); u <= math.MaxInt64-maxHeader {
			payload = int64(u)
		} else {
			payload = math.MaxInt64 - maxHeader // gorilla refuses it
		}
	}
	op := b[0] & 0x0f
	control = (op == websocket.PingMessage || op == websocket.PongMessage) &&
		b[0]&0xf0 == 0x80 && b[1]&0x80 != 0 && payload <= maxControl
	return header, payload, control, true
}

// errStop ends a peek with the read error it met (or io.EOF), which the
// read that follows reports.
var errStop = errors.New("stop")

// peekFrame waits until a frame header is on the socket, or, when whole is
// set and the frame is a ping or pong, the whole frame; it returns the
// header's facts. A socket error (the peer gone, the read deadline) is
// returned as it is; errStop means the socket has an error or EOF to
// report to a read.
func (c *idleConn) peekFrame(whole bool) (header int, payload int64, control bool, err error) {
	c.p = peeked{whole: whole}
	if err := c.raw.Read(c.peekOnce); err != nil {
		return 0, 0, false, err
	}
	return c.p.header, c.p.payload, c.p.control, c.p.err
}

// peeked is what peekOnce found; it lives in the idleConn so that a wait
// allocates nothing.
type peeked struct {
	whole, control bool
	header         int
	payload        int64
	err            error
}

// look is peekFrame's look at the socket: false to wait for more.
func (c *idleConn) look(fd uintptr) bool {
	n, _, err := syscall.Recvfrom(int(fd), c.peek[:], syscall.MSG_PEEK)
	if err == syscall.EAGAIN || err == syscall.EINTR {
		return false
	}
	if err != nil || n == 0 {
		c.p.err = errStop
		return true
	}
	var ok bool
	c.p.header, c.p.payload, c.p.control, ok = frame(c.peek[:n])
	if !ok {
		return false // the rest of the header is on its way
	}
	return !c.p.whole || !c.p.control || int64(n) >= int64(c.p.header)+c.p.payload
}

// Read hands on at most the rest of the current frame.
func (c *idleConn) Read(p []byte) (int, error) {
	if c.left == 0 {
		h, n, _, err := c.peekFrame(false)
		if err == errStop {
			return c.Conn.Read(p) // reports the error or EOF
		}
		if err != nil {
			return 0, err
		}
		c.left = int64(h) + n
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.Conn.Read(p)
	c.left -= int64(n)
	return n, err
}

// wait returns when a message (or anything but a ping or pong) has begun to
// arrive on ws, whose socket c is, answering pings and pongs meanwhile with
// ws's handlers. It returns at once in the middle of a frame. Its error is
// a handler's or the socket's (a read deadline passed, the peer gone).
func (c *idleConn) wait(ws *websocket.Conn) error {
	for c.left == 0 {
		h, n, control, err := c.peekFrame(true)
		if err == errStop {
			return nil // gorilla's read reports it
		}
		if err == nil && !control {
			c.left = int64(h) + n // Read need not peek at it again
			return nil
		}
		if err != nil {
			return err
		}
		// The whole frame is on the socket (it was peeked): take it off.
		b := c.peek[:h+int(n)]
		if _, err := io.ReadFull(c.Conn, b); err != nil {
			return err
		}
		payload := b[h:]
		key := b[h-4 : h]
		for i := range payload {
			payload[i] ^= key[i&3]
		}
		handle := ws.PongHandler()
		if b[0]&0x0f == websocket.PingMessage {
			handle = ws.PingHandler()
		}
		if err := handle(string(payload)); err != nil {
			return err
		}
	}
	return nil
}
