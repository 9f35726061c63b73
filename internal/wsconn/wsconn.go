// Package wsconn is one signaling WebSocket, as both ends use it: a bounded
// outgoing queue drained by one writer goroutine (so a slow peer never blocks
// the hub or the agent), keepalive pings, the proto size limit on reads and
// strict decoding of every frame.
package wsconn

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/time/rate"

	"github.com/peercam/peercam/proto"
)

const (
	// QueueSize bounds messages waiting to be written.
	QueueSize = 128
	// PingInterval is how often a ping is sent; a peer silent for
	// 3×PingInterval is gone.
	PingInterval = 15 * time.Second
	writeWait    = 10 * time.Second
)

// ErrRateLimited means a message was dropped: the peer sends faster than
// its Limits allow. The conn stays open.
var ErrRateLimited = errors.New("wsconn: rate limited")

// ErrQueueFull means the peer does not read fast enough; the conn is closed.
var ErrQueueFull = errors.New("wsconn: peer too slow, send queue full")

// Limits bound what the peer may send on one conn.
type Limits struct {
	// MaxMessage is the largest frame read, in bytes; a larger one ends the
	// conn (close 1009). Zero or over proto.MaxMessageSize means that.
	MaxMessage int64
	// Rate is how many messages a second the peer may send after a burst
	// of Burst; a message over it is dropped and answered with a
	// rate_limited error, and the conn stays open. Zero: no limit.
	Rate  float64
	Burst int
}

// Conn is a signaling WebSocket.
type Conn struct {
	ws *websocket.Conn
	// idle is the socket under ws when it came through Hijacking; Read
	// waits on it between messages. An interface, so that a program that
	// never calls Hijacking (the agent) links none of it.
	idle idleWaiter
	// lim is nil without a rate limit; only Read uses it.
	lim *rate.Limiter
	// queue holds encoded messages for the writer. The writer is a
	// goroutine started when the queue fills and gone when it is empty,
	// and pings come from a timer: an idle conn (thousands of agents on a
	// rendezvous) costs no goroutine but its reader, and no queue.
	mu      sync.Mutex // guards queue, writing and closed
	queue   [][]byte
	writing bool
	closed  bool
	ping    *time.Timer
	// heard is when the peer last sent anything (a message or a pong), in
	// Unix nanoseconds.
	heard atomic.Int64
	done  chan struct{}
	once  sync.Once
	// err is why the conn closed; written once inside once.Do.
	err error
}

// New wraps ws, with the protocol's size limit and no rate limit.
func New(ws *websocket.Conn) *Conn { return NewLimited(ws, Limits{}) }

// NewLimited is New with the peer held to l.
func NewLimited(ws *websocket.Conn, l Limits) *Conn {
	c := &Conn{ws: ws, done: make(chan struct{})}
	c.idle, _ = ws.NetConn().(idleWaiter)
	if l.MaxMessage <= 0 || l.MaxMessage > proto.MaxMessageSize {
		l.MaxMessage = proto.MaxMessageSize
	}
	if l.Rate > 0 {
		c.lim = rate.NewLimiter(rate.Limit(l.Rate), max(l.Burst, 1))
	}
	ws.SetReadLimit(l.MaxMessage)
	c.heard.Store(time.Now().UnixNano())
	ws.SetPongHandler(func(string) error {
		c.heard.Store(time.Now().UnixNano())
		return nil
	})
	c.ping = time.AfterFunc(pingEvery, c.sendPing)
	return c
}

// idleWaiter is idleConn's wait.
type idleWaiter interface{ wait(*websocket.Conn) error }

// pingEvery is PingInterval, shorter in tests.
var pingEvery = PingInterval

// ErrSilent means the peer sent nothing, not even a pong, for three ping
// intervals; the conn was closed.
var ErrSilent = errors.New("wsconn: peer silent for three ping intervals")

// sendPing keeps the link alive and ends it when the peer has gone quiet;
// gorilla lets a control frame go beside a writer's messages. The check is
// here rather than a read deadline, which would be a second timer per link
// and one more timer change per pong (on a rendezvous with tens of
// thousands of agents, a measurable share of its CPU).
func (c *Conn) sendPing() {
	select {
	case <-c.done:
		return
	default:
	}
	if time.Since(time.Unix(0, c.heard.Load())) > 3*pingEvery {
		c.Close(ErrSilent)
		return
	}
	if err := c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(writeWait)); err != nil {
		c.Close(err)
		return
	}
	c.ping.Reset(pingEvery)
}

// write runs while there is something to write, then ends; once the conn
// is closed it writes what is left, briefly (a final error on its way to
// the peer), and closes the socket.
func (c *Conn) write() {
	for {
		c.mu.Lock()
		q, closed := c.queue, c.closed
		c.queue = nil
		if len(q) == 0 {
			c.writing = false
			c.mu.Unlock()
			if closed {
				_ = c.ws.Close()
			}
			return
		}
		c.mu.Unlock()
		wait := writeWait
		if closed {
			wait = time.Second
		}
		// One deadline for what was queued, not one per message: each
		// would be another change to the runtime's timers.
		_ = c.ws.SetWriteDeadline(time.Now().Add(wait))
		for _, b := range q {
			if err := c.ws.WriteMessage(websocket.TextMessage, b); err != nil {
				c.Close(err)
				c.mu.Lock()
				c.queue, c.writing = nil, false
				c.mu.Unlock()
				_ = c.ws.Close()
				return
			}
		}
	}
}

// Send queues m without blocking. When the queue is full the conn is closed:
// a peer that stopped reading must not hold memory or other peers hostage.
func (c *Conn) Send(m proto.Message) error {
	b, err := proto.Encode(m)
	if err != nil {
		return err
	}
	return c.SendEncoded(b)
}

// SendEncoded is Send for a message already encoded by proto.Encode (one
// relayed from another rendezvous node), which is not encoded again.
func (c *Conn) SendEncoded(b []byte) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return errors.New("wsconn: closed")
	}
	if len(c.queue) >= QueueSize {
		c.mu.Unlock()
		c.Close(ErrQueueFull)
		return ErrQueueFull
	}
	c.queue = append(c.queue, b)
	start := !c.writing
	c.writing = true
	c.mu.Unlock()
	if start {
		go c.write()
	}
	return nil
}

// SendError sends an error message.
func (c *Conn) SendError(session string, code proto.Code, msg string) {
	_ = c.Send(proto.NewError(session, code, msg))
}

// Read returns the next message. A frame that does not decode is answered with
// an error message and reported as a *DecodeError, after which reading may go
// on; an oversize frame (gorilla closes it with code 1009) or a transport
// error ends the conn.
func (c *Conn) Read() (proto.Message, error) {
	// The wait is outside read so that an idle link's stack holds only
	// this small frame above the poller.
	if c.idle != nil {
		if err := c.idle.wait(c.ws); err != nil {
			c.Close(err)
			return nil, err
		}
	}
	return c.read()
}

//go:noinline
func (c *Conn) read() (proto.Message, error) {
	typ, r, err := c.ws.NextReader()
	var b []byte
	if err == nil {
		// The frame goes into a pooled buffer rather than a new one grown
		// from 512 bytes (gorilla's ReadMessage): proto.Decode copies what
		// it keeps, so the buffer is free again once it returns.
		bp := readBufs.Get().(*[]byte)
		defer func() {
			if cap(b) <= 64<<10 {
				*bp = b[:0]
				readBufs.Put(bp)
			}
		}()
		b, err = readAll(r, (*bp)[:0])
	}
	if err != nil {
		c.Close(err)
		return nil, err
	}
	c.heard.Store(time.Now().UnixNano())
	if c.lim != nil && !c.lim.Allow() {
		// Dropped before decoding, so a flood costs little; its sender hears
		// why (and a sender that floods on regardless fills its own queue
		// of these errors and is disconnected).
		c.SendError("", proto.CodeRateLimited, fmt.Sprintf("Too many signaling messages: at most %g a second; this one was dropped.", float64(c.lim.Limit())))
		return nil, &DecodeError{Err: fmt.Errorf("%w: over %g messages a second", ErrRateLimited, float64(c.lim.Limit()))}
	}
	if typ != websocket.TextMessage {
		c.SendError("", proto.CodeBadMessage, "signaling frames must be text")
		return nil, &DecodeError{Err: fmt.Errorf("%w: binary frame", proto.ErrBadMessage)}
	}
	m, err := proto.Decode(b)
	if err != nil {
		c.SendError("", proto.CodeOf(err), err.Error())
		return nil, &DecodeError{Err: err}
	}
	return m, nil
}

var readBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// readAll is io.ReadAll into b.
func readAll(r io.Reader, b []byte) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

// ClosedOnPurpose tells whether Read's error is the peer's close frame
// (normal, going away, or no status, as a browser's ws.close() sends), as
// opposed to a dropped connection or a timeout.
func ClosedOnPurpose(err error) bool {
	return websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway, websocket.CloseNoStatusReceived)
}

// DecodeError is a frame that was not a valid message; the conn stays open.
type DecodeError struct{ Err error }

func (e *DecodeError) Error() string { return e.Err.Error() }
func (e *DecodeError) Unwrap() error { return e.Err }

// Close ends the conn, recording why: what is queued is still written,
// briefly, then the socket closes. (Not inlined: each inlined copy would
// bring its own copy of the closure, and the agent counts its bytes.)
//
//go:noinline
func (c *Conn) Close(why error) {
	c.once.Do(func() {
		c.err = why
		close(c.done)
		c.ping.Stop()
		c.mu.Lock()
		c.closed = true
		start := !c.writing
		c.writing = true
		c.mu.Unlock()
		if start {
			go c.write()
		}
	})
}

// Done is closed when the conn is.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err tells why the conn closed; call it after Done is closed.
func (c *Conn) Err() error {
	<-c.done
	return c.err
}
