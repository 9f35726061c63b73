//go:build unix

package wsconn

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/peercam/peercam/proto"
)

// idlePair is a server Conn whose socket came through Hijacking, as a
// rendezvous takes an agent's link, and the client's raw socket to write
// hand-made frames on; pongs counts the pongs the client got.
func idlePair(t *testing.T) (c *Conn, raw net.Conn, pongs func() int) {
	t.Helper()
	c, cl := pairVia(t, true)
	if c.idle == nil {
		t.Fatal("the hijacked socket is not an idleConn")
	}
	var mu sync.Mutex
	n := 0
	cl.SetPongHandler(func(string) error { mu.Lock(); n++; mu.Unlock(); return nil })
	go func() {
		for {
			if _, _, err := cl.ReadMessage(); err != nil {
				return
			}
		}
	}()
	return c, cl.NetConn(), func() int { mu.Lock(); defer mu.Unlock(); return n }
}

// wsFrame is a masked client frame, as RFC 6455 §5.2 lays it out.
func wsFrame(op byte, fin bool, payload []byte) []byte {
	b := []byte{op, 0x80}
	if fin {
		b[0] |= 0x80
	}
	switch n := len(payload); {
	case n < 126:
		b[1] |= byte(n)
	case n < 1<<16:
		b[1] |= 126
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b[1] |= 127
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	key := [4]byte{byte(rand.Uint32()), 0x5a, byte(rand.Uint32()), 0xa5}
	b = append(b, key[:]...)
	for i, x := range payload {
		b = append(b, x^key[i&3])
	}
	return b
}

func bye(id string) []byte { return []byte(fmt.Sprintf(`{"v":1,"type":"bye","session":%q}`, id)) }

// readBye reads one message within a few seconds; it must be the bye for id.
func readBye(t *testing.T, c *Conn, id string) {
	t.Helper()
	type result struct {
		m   proto.Message
		err error
	}
	r := make(chan result, 1)
	go func() { m, err := c.Read(); r <- result{m, err} }()
	select {
	case got := <-r:
		if b, ok := got.m.(*proto.Bye); got.err != nil || !ok || b.Session != id {
			t.Fatalf("read %#v, %v; want the bye for %q", got.m, got.err, id)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("the bye for %q was never read: a message left waiting behind the idle wait", id)
	}
}

// Whatever way the bytes arrive, every message is read when it is whole,
// none waits for the next bytes, and pings between messages or between a
// message's fragments are answered.
func TestIdleFrames(t *testing.T) {
	c, raw, pongs := idlePair(t)
	write := func(parts ...[]byte) {
		t.Helper()
		if _, err := raw.Write(bytes.Join(parts, nil)); err != nil {
			t.Fatal(err)
		}
	}

	// Two messages in one segment: the second is in gorilla's view at
	// once, not stranded behind a wait on the socket.
	write(wsFrame(websocket.TextMessage, true, bye("a")), wsFrame(websocket.TextMessage, true, bye("b")))
	readBye(t, c, "a")
	readBye(t, c, "b")

	// A ping trickling in a byte at a time, then a message in the same
	// segment as the ping's last byte.
	ping := wsFrame(websocket.PingMessage, true, []byte("are you there"))
	for _, x := range ping[:len(ping)-1] {
		write([]byte{x})
		time.Sleep(2 * time.Millisecond)
	}
	write(ping[len(ping)-1:], wsFrame(websocket.TextMessage, true, bye("c")))
	readBye(t, c, "c")

	// Unsolicited pongs and empty pings before a message, and a ping
	// between the fragments of another.
	msg := bye("d")
	write(wsFrame(websocket.PongMessage, true, nil), wsFrame(websocket.PingMessage, true, nil),
		wsFrame(websocket.TextMessage, false, msg[:10]), wsFrame(websocket.PingMessage, true, []byte("mid")),
		wsFrame(0, true, msg[10:]))
	readBye(t, c, "d")

	// A message larger than the read buffer, with a 16-bit length, cut at
	// odd places.
	big := fmt.Appendf(nil, `{"v":1,"type":"offer","session":"e","sdp":%q}`, strings.Repeat("a=x\r\n", 8000))
	f := wsFrame(websocket.TextMessage, true, big)
	write(f[:1])
	time.Sleep(5 * time.Millisecond)
	write(f[1:3000])
	time.Sleep(5 * time.Millisecond)
	write(f[3000:], wsFrame(websocket.TextMessage, true, bye("f")))
	if m, err := c.Read(); err != nil || m.(*proto.Offer).Session != "e" {
		t.Fatalf("big offer: %#v, %v", m, err)
	}
	readBye(t, c, "f")

	deadline := time.Now().Add(5 * time.Second)
	for pongs() < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := pongs(); n != 3 {
		t.Fatalf("the client got %d pongs for its 3 pings", n)
	}

	// A frame over the size limit still ends the link, as gorilla rules.
	write(wsFrame(websocket.TextMessage, true, make([]byte, proto.MaxMessageSize+1)))
	if _, err := c.Read(); err == nil {
		t.Fatal("an oversize frame was read")
	}
}

// An idle wait ends at the read deadline, as gorilla's wait would, and a
// peer that goes away ends it too.
func TestIdleDeadlineAndClose(t *testing.T) {
	c, _, _ := idlePair(t)
	_ = c.ws.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	done := make(chan error, 1)
	go func() { _, err := c.Read(); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("idle read past its deadline: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the idle wait ignored the read deadline")
	}

	c, raw, _ := idlePair(t)
	go func() { _, err := c.Read(); done <- err }()
	time.Sleep(20 * time.Millisecond)
	raw.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("read from a closed peer succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the idle wait did not see the peer go")
	}
}

// What an idle link's reader costs in stack, with and without Hijacking,
// after a handshake-deep start: the point of idleConn.
func TestIdleStack(t *testing.T) {
	const links = 300
	perLink := func(hijack bool) int {
		up := websocket.Upgrader{ReadBufferSize: 256}
		var wg, parked sync.WaitGroup
		parked.Add(links)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if hijack {
				w = Hijacking(w)
			}
			ws, err := up.Upgrade(w, r, nil)
			if err != nil {
				t.Error(err)
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := New(ws)
				deep(16)
				parked.Done()
				for {
					if _, err := c.Read(); err != nil {
						var de *DecodeError
						if !errors.As(err, &de) {
							return
						}
					}
				}
			}()
		}))
		defer srv.Close()
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		var cls []*websocket.Conn
		for range links {
			cl, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
			if err != nil {
				t.Fatal(err)
			}
			cls = append(cls, cl)
		}
		parked.Wait()
		time.Sleep(50 * time.Millisecond)
		for range 6 { // each cycle may halve a stack
			runtime.GC()
		}
		runtime.ReadMemStats(&after)
		for _, cl := range cls {
			cl.Close()
		}
		wg.Wait()
		return int(after.StackInuse-before.StackInuse) / links
	}
	plain, hijacked := perLink(false), perLink(true)
	t.Logf("stack per idle link: %d B in gorilla's wait, %d B in idleConn's", plain, hijacked)
	// The runtime halves a parked stack only while what it uses, plus 800
	// bytes kept for runtime calls, is under a quarter of it: the poller's
	// chain under idleConn's wait gets an 8 KiB stack to 4 KiB, gorilla's
	// deeper one does not.
	if hijacked > 4*1024+512 {
		t.Fatalf("an idle link through idleConn keeps %d B of stack, want at most 4 KiB", hijacked)
	}
}

// deep grows the calling goroutine's stack as a handshake does.
//
//go:noinline
func deep(n int) byte {
	var b [400]byte
	b[n] = byte(n)
	if n == 0 {
		return b[0]
	}
	return deep(n-1) + b[n]
}
