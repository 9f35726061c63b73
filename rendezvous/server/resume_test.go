package server

import (
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/peercam/peercam/internal/wsconn"
	"github.com/peercam/peercam/proto"
)

// inbox reads a socket in the background, so a test can wait for a message
// with a timeout (a gorilla read deadline breaks the conn for good); claim
// messages, which come when they come, are left out.
func inbox(t *testing.T, ws *websocket.Conn) <-chan proto.Message {
	ch := make(chan proto.Message, 256)
	go func() {
		defer close(ch)
		for {
			_, b, err := ws.ReadMessage()
			if err != nil {
				return
			}
			m, err := proto.Decode(b)
			if err != nil {
				t.Errorf("undecodable message: %v", err)
				return
			}
			switch m.(type) {
			case *proto.ClaimCode, *proto.Claimed:
				continue
			}
			ch <- m
		}
	}()
	return ch
}

// next is the next message within d, or nil.
func next(in <-chan proto.Message, d time.Duration) (proto.Message, time.Duration) {
	start := time.Now()
	select {
	case m := <-in:
		return m, time.Since(start)
	case <-time.After(d):
		return nil, d
	}
}

// offered opens a share's session and offers on it; the device gets the
// offer.
func offered(t *testing.T, s *testServer, d *device, dev <-chan proto.Message) (*websocket.Conn, *proto.Session, string) {
	t.Helper()
	sh, v, sess := watchShare(t, s, d)
	send(t, v, &proto.Offer{Session: sess.Session, SDP: "v=0\r\n"})
	if m, _ := next(dev, 5*time.Second); m == nil || m.(*proto.Offer).Session != sess.Session {
		t.Fatalf("device got %#v, want the offer", m)
	}
	return v, sess, sh.Token
}

// nextBye waits up to within for the device's next message and wants a bye
// or nothing.
func nextBye(t *testing.T, dev <-chan proto.Message, within time.Duration) (*proto.Bye, time.Duration) {
	t.Helper()
	m, after := next(dev, within)
	if m == nil {
		return nil, after
	}
	bye, ok := m.(*proto.Bye)
	if !ok {
		t.Fatalf("device got %#v, want a bye or nothing", m)
	}
	return bye, after
}

// A viewer's socket that drops without a close (a phone changing network,
// a proxy restarting) does not end its sessions: the page takes them to a
// new socket within the grace, and the picture, peer to peer, never
// stops. A page that closes its socket ends them at once, so a reload of
// a share capped at one viewer is not refused for the grace.
func TestViewerSocketDropGrace(t *testing.T) {
	const grace = time.Second
	s := startWith(t, func(c *Config) { c.ResumeGrace = grace })
	d := onlineDevice(t, s)
	dev := inbox(t, d.ws)

	t.Run("dropped and resumed within the grace", func(t *testing.T) {
		v, sess, tok := offered(t, s, d, dev)
		v.UnderlyingConn().Close() // no close frame
		time.Sleep(grace / 4)
		v2 := dial(t, s, "/ws/viewer", nil)
		send(t, v2, &proto.Open{Device: d.id, Camera: "1", Token: tok, Resume: sess.Session})
		if m, ok := recv(t, v2).(*proto.Session); !ok || m.Session != sess.Session {
			t.Fatalf("resume: got %#v", m)
		}
		if bye, _ := nextBye(t, dev, 2*grace); bye != nil {
			t.Fatalf("the resumed session was ended: %#v", bye)
		}
		// It is still the viewer's: its bye reaches the device.
		send(t, v2, &proto.Bye{Session: sess.Session})
		if bye, _ := nextBye(t, dev, 2*time.Second); bye == nil || bye.Session != sess.Session {
			t.Fatalf("bye after resume: got %#v", bye)
		}
	})
	t.Run("dropped and not resumed: ended after the grace", func(t *testing.T) {
		v, sess, _ := offered(t, s, d, dev)
		v.UnderlyingConn().Close()
		bye, after := nextBye(t, dev, 3*grace)
		if bye == nil || bye.Session != sess.Session {
			t.Fatalf("no bye for the abandoned session within %v", 3*grace)
		}
		if after < grace*3/4 {
			t.Fatalf("ended after %v, before the %v grace", after, grace)
		}
	})
	t.Run("closed on purpose: ended at once, its slot free", func(t *testing.T) {
		v, sess, tok := offered(t, s, d, dev)
		_ = v.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, ""), time.Now().Add(time.Second))
		bye, after := nextBye(t, dev, 2*time.Second)
		if bye == nil || bye.Session != sess.Session || after > grace/2 {
			t.Fatalf("bye %#v after %v, want one at once", bye, after)
		}
		// The share allows one viewer: the reloaded page gets it.
		v2 := dial(t, s, "/ws/viewer", nil)
		send(t, v2, &proto.Open{Device: d.id, Camera: "1", Token: tok})
		if m, ok := recv(t, v2).(*proto.Session); !ok {
			t.Fatalf("reload refused: %#v", m)
		}
	})
}

// A viewer socket flooding signaling messages has them dropped with a
// rate_limited error and stays open; another viewer's session is not
// touched.
func TestSignalingRateLimit(t *testing.T) {
	s := startWith(t, func(c *Config) { c.ViewerMsgs = wsconn.Limits{Rate: 5, Burst: 10} })
	d := onlineDevice(t, s)
	dev := inbox(t, d.ws)
	other, otherSess, _ := offered(t, s, d, dev)

	flood := dial(t, s, "/ws/viewer", nil)
	replies := inbox(t, flood)
	for i := 0; i < 40; i++ {
		send(t, flood, &proto.Bye{Session: "nosuchsession"})
	}
	limited := 0
	for m, _ := next(replies, time.Second); m != nil; m, _ = next(replies, 300*time.Millisecond) {
		if e, ok := m.(*proto.Error); ok && e.Code == proto.CodeRateLimited {
			limited++
		}
	}
	// 10 at once, and about 5 a second after: most of the 40 are dropped.
	if limited < 20 || limited > 30 {
		t.Fatalf("%d of 40 messages at once were rate-limited, want about 30", limited)
	}
	// The socket is still open and, after a pause, heard again.
	time.Sleep(time.Second)
	send(t, flood, &proto.Open{Device: d.id, Camera: "9"})
	if m, _ := next(replies, 2*time.Second); m == nil || m.(*proto.Error).Code == proto.CodeRateLimited {
		t.Fatalf("after a pause: got %#v, want an answer to the open", m)
	}
	// The other viewer's session works on.
	send(t, other, &proto.Bye{Session: otherSess.Session})
	if bye, _ := nextBye(t, dev, 2*time.Second); bye == nil || bye.Session != otherSess.Session {
		t.Fatalf("the other viewer's bye did not arrive: %#v", bye)
	}
}

// A page that stays open opens and ends many sessions on one socket; the
// rendezvous keeps its list of them to the live ones, and closing the
// socket still ends the one that stayed live through it all.
func TestViewerSocketManySessions(t *testing.T) {
	s := startWith(t, func(c *Config) { c.OpenBurst = 1000 })
	d := onlineDevice(t, s)
	c := s.client(t)
	c.login("alice", "alice-password")
	v := dial(t, s, "/ws/viewer", http.Header{"Cookie": {cookieOf(t, c)}})
	send(t, v, &proto.Open{Device: d.id, Camera: "1"})
	live, ok := recv(t, v).(*proto.Session)
	if !ok {
		t.Fatal("the first open was refused")
	}
	for i := range 130 { // past two prunings (at 64 and 128)
		send(t, v, &proto.Open{Device: d.id, Camera: "1"})
		sess, ok := recv(t, v).(*proto.Session)
		if !ok {
			t.Fatalf("open %d refused", i)
		}
		send(t, v, &proto.Bye{Session: sess.Session})
	}
	_ = v.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, ""), time.Now().Add(time.Second))
	recvUntil(t, d.ws, "bye for the live session", func(m proto.Message) bool {
		b, ok := m.(*proto.Bye)
		return ok && b.Session == live.Session
	})
}
