package wsconn

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/peercam/peercam/proto"
)

// pair returns a Conn on the server side and the raw client socket.
func pair(t *testing.T) (*Conn, *websocket.Conn) { return pairVia(t, false) }

// pairVia is pair, the server's socket through Hijacking when hijack is set
// (as a rendezvous takes an agent's link).
func pairVia(t *testing.T, hijack bool) (*Conn, *websocket.Conn) {
	t.Helper()
	got := make(chan *Conn, 1)
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hijack {
			up.ReadBufferSize, w = 256, Hijacking(w)
		}
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			t.Error(err)
			return
		}
		got <- New(ws)
	}))
	t.Cleanup(srv.Close)
	cl, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return <-got, cl
}

// Messages arrive in order; an error sent just before Close still reaches
// the peer, and the socket closes after it.
func TestSendThenClose(t *testing.T) {
	c, cl := pair(t)
	for i := range 3 {
		if err := c.Send(&proto.Bye{Session: string(rune('a' + i))}); err != nil {
			t.Fatal(err)
		}
	}
	c.SendError("", proto.CodeBadMessage, "last words")
	c.Close(errors.New("done"))
	_ = cl.SetReadDeadline(time.Now().Add(5 * time.Second))
	var got []string
	for {
		_, b, err := cl.ReadMessage()
		if err != nil {
			break
		}
		got = append(got, string(b))
	}
	if len(got) != 4 || !strings.Contains(got[0], `"a"`) || !strings.Contains(got[2], `"c"`) || !strings.Contains(got[3], "last words") {
		t.Fatalf("peer got %q", got)
	}
	if err := c.Send(&proto.Bye{Session: "x"}); err == nil {
		t.Fatal("send after close succeeded")
	}
	if c.Err() == nil || c.Err().Error() != "done" {
		t.Fatalf("err %v", c.Err())
	}
}

// A peer that stops reading fills the queue; the conn closes rather than
// holding memory.
func TestQueueFullCloses(t *testing.T) {
	c, _ := pair(t)
	big := &proto.Offer{Session: "s", SDP: strings.Repeat("x", 60000)}
	var err error
	for i := 0; i < 10000 && err == nil; i++ {
		err = c.Send(big)
	}
	if !errors.Is(err, ErrQueueFull) && (err == nil || err.Error() != "wsconn: closed") {
		t.Fatalf("a peer that never reads: %v", err)
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("conn not closed")
	}
}

// A peer that answers no ping is dropped after three intervals; one that
// answers stays, however long it sends nothing else.
func TestSilentPeer(t *testing.T) {
	old := pingEvery
	pingEvery = 30 * time.Millisecond
	t.Cleanup(func() { pingEvery = old })

	quiet, _ := pair(t) // its client never reads, so never answers a ping
	select {
	case <-quiet.Done():
		if !errors.Is(quiet.Err(), ErrSilent) {
			t.Fatalf("a silent peer's conn closed for %v, want ErrSilent", quiet.Err())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a peer that answers no ping is still connected")
	}

	alive, cl := pair(t)
	go func() { // pongs are seen by a reader, as in the hub
		for {
			if _, err := alive.Read(); err != nil {
				return
			}
		}
	}()
	go func() {
		for {
			if _, _, err := cl.ReadMessage(); err != nil { // answers pings
				return
			}
		}
	}()
	select {
	case <-alive.Done():
		t.Fatalf("a peer answering pings was dropped: %v", alive.Err())
	case <-time.After(20 * pingEvery):
	}
}

// Read reuses its buffer: a message read earlier must not change when the
// next one lands where it was.
func TestReadKeepsEarlierMessages(t *testing.T) {
	c, cl := pair(t)
	var got []*proto.Offer
	for _, x := range []string{"a", "b", "c"} {
		sdp := strings.Repeat(x, 3000)
		if err := cl.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, `{"v":1,"type":"offer","session":"s-%s","sdp":%q}`, x, sdp)); err != nil {
			t.Fatal(err)
		}
		m, err := c.Read()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, m.(*proto.Offer))
	}
	for i, x := range []string{"a", "b", "c"} {
		if got[i].Session != "s-"+x || got[i].SDP != strings.Repeat(x, 3000) {
			t.Fatalf("message %d changed after later reads: session %q, sdp %.10q…", i, got[i].Session, got[i].SDP)
		}
	}
}
