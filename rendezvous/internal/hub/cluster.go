package hub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"

	"github.com/peercam/peercam/proto"
)

// Several rendezvous nodes share one store (PostgreSQL) and route signaling
// to each other through NATS. A device's WebSocket lands on any node, which
// subscribes to the device's subject; a viewer on another node reaches the
// device through it, and the device's messages come back to the viewer's
// node. Nothing here carries media.
//
// Subjects (prefix peercam.):
//
//	dev.<device>  held by the node the device is connected to: "locate"
//	              requests (is it here, with which cameras) and "msg"
//	              envelopes for the device
//	node.<node>   a node's inbox: the device's messages for sessions whose
//	              viewer is there
//	all           every node: a device taking over its subject elsewhere
//	              or going offline, revocations, ended sign-ins, claims and
//	              removals, and rate-limit spending
//
// Each device connection has a generation (node and counter); a session is
// pinned to the generation it talks to, so two connections of one device
// (a stale one and its successor) never mix their answers in one session.
type cluster struct {
	h    *Hub
	nc   *nats.Conn
	node string
	// next numbers this node's device connections.
	next atomic.Uint64
	// limits hears rate-limit spending by other nodes.
	limits atomic.Pointer[func(name, key string, forget bool)]
	// barriers are this node's barrier broadcasts not yet heard back, by
	// ID, each with the channel closed when it is (see barrier).
	barriers   sync.Map
	barrierSeq atomic.Uint64

	// inbox carries the device subjects' messages to shards workers, a
	// device's always to the same one (its messages stay in order); a
	// callback subscription would cost a goroutine per device.
	inbox []chan *nats.Msg

	mu sync.Mutex // guards subs and routes
	// subs are the device subjects this node holds, by device ID.
	subs map[string]*nats.Subscription
	// routes are the viewer nodes of sessions of this node's devices whose
	// viewers are elsewhere, by session ID.
	routes map[string]route
}

type route struct {
	device string
	node   string
}

// pin is the device connection a session talks to.
type pin struct {
	node string
	gen  string
	// since is when that connection was made (unix ns): of two, the
	// later one is the device's.
	since int64
}

// envelope is every cluster message.
type envelope struct {
	Op string `json:"op"`
	// Type is Msg's message type, so a node relaying it need not decode it.
	Type    string         `json:"type,omitempty"`
	Node    string         `json:"node,omitempty"`
	Device  string         `json:"device,omitempty"`
	Gen     string         `json:"gen,omitempty"`
	Since   int64          `json:"since,omitempty"`
	Session string         `json:"session,omitempty"`
	ID      string         `json:"id,omitempty"`
	Key     string         `json:"key,omitempty"`
	Forget  bool           `json:"forget,omitempty"`
	Cameras []proto.Camera `json:"cameras,omitempty"`
	// Msg is a message as proto.Encode wrote it (compact, valid JSON).
	Msg json.RawMessage `json:"msg,omitempty"`
}

// encode is json.Marshal(e), byte for byte, written by hand when e carries
// no cameras: json.Marshal would walk e by reflection and scan Msg (an
// offer's SDP, encoded already) again to compact it, a tenth of a node's
// CPU when it relays sessions through NATS.
func (e *envelope) encode() ([]byte, error) {
	if len(e.Cameras) > 0 {
		return json.Marshal(e)
	}
	b := make([]byte, 0, 160+len(e.Msg))
	b = append(b, `{"op":`...)
	b = proto.AppendString(b, e.Op)
	str := func(key, v string) {
		if v != "" {
			b = append(append(append(b, `,"`...), key...), `":`...)
			b = proto.AppendString(b, v)
		}
	}
	str("type", e.Type)
	str("node", e.Node)
	str("device", e.Device)
	str("gen", e.Gen)
	if e.Since != 0 {
		b = strconv.AppendInt(append(b, `,"since":`...), e.Since, 10)
	}
	str("session", e.Session)
	str("id", e.ID)
	str("key", e.Key)
	if e.Forget {
		b = append(b, `,"forget":true`...)
	}
	if len(e.Msg) > 0 {
		b = append(append(b, `,"msg":`...), e.Msg...) // compact already: proto.Encode's
	}
	return append(b, '}'), nil
}

// decode is json.Unmarshal(b, e). An envelope of the shape encode (and
// json.Marshal) writes, with plain strings and numbers, is read in one
// pass that only matches the message's braces rather than parsing it: the
// message is taken as it is (another node wrote it with proto.Encode, and
// the device or viewer it goes to decodes it strictly). Any other shape
// goes to json.Unmarshal.
func (e *envelope) decode(b []byte) error {
	if e.decodeFlat(b) {
		return nil
	}
	*e = envelope{}
	return json.Unmarshal(b, e)
}

func (e *envelope) decodeFlat(b []byte) bool {
	n := len(b)
	if n < 2 || b[0] != '{' || b[n-1] != '}' {
		return false
	}
	for i := 1; ; {
		key, rest, ok := plainString(b[i:])
		if !ok || len(rest) == 0 || rest[0] != ':' {
			return false
		}
		i = n - len(rest) + 1
		switch key {
		case "msg":
			end := objectEnd(b[i:])
			if end < 0 {
				return false
			}
			e.Msg, i = b[i:i+end], i+end
		case "since":
			j := i
			for j < n && (b[j] == '-' || '0' <= b[j] && b[j] <= '9') {
				j++
			}
			v, err := strconv.ParseInt(string(b[i:j]), 10, 64)
			if digits := strings.TrimPrefix(string(b[i:j]), "-"); err != nil || (digits[0] == '0' && len(digits) > 1) {
				return false
			}
			e.Since, i = v, j
		case "forget":
			switch {
			case bytes.HasPrefix(b[i:], []byte("true")):
				e.Forget, i = true, i+4
			case bytes.HasPrefix(b[i:], []byte("false")):
				e.Forget, i = false, i+5
			default:
				return false
			}
		default:
			dst := e.stringField(key)
			v, rest, ok := plainString(b[i:])
			if dst == nil || !ok {
				return false
			}
			*dst, i = v, n-len(rest)
		}
		switch {
		case i < n-1 && b[i] == ',':
			i++
		case i == n-1:
			return true
		default:
			return false
		}
	}
}

// objectEnd is the length of the JSON object at the start of b, found by
// matching braces outside strings (not a validation: the node that wrote it
// used proto.Encode); -1 if b does not start with a whole object.
func objectEnd(b []byte) int {
	if len(b) == 0 || b[0] != '{' {
		return -1
	}
	depth := 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '{', '[':
			depth++
		case '}', ']':
			if depth--; depth == 0 {
				return i + 1
			}
		case '"':
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
		}
	}
	return -1
}

// stringField is e's string field of that JSON name, or nil.
func (e *envelope) stringField(key string) *string {
	switch key {
	case "op":
		return &e.Op
	case "type":
		return &e.Type
	case "node":
		return &e.Node
	case "device":
		return &e.Device
	case "gen":
		return &e.Gen
	case "session":
		return &e.Session
	case "id":
		return &e.ID
	case "key":
		return &e.Key
	}
	return nil
}

// plainString reads a JSON string at the start of b that needs no
// unescaping: printable, valid UTF-8, no backslash.
func plainString(b []byte) (s string, rest []byte, ok bool) {
	if len(b) < 2 || b[0] != '"' {
		return "", nil, false
	}
	j := bytes.IndexByte(b[1:], '"')
	if j < 0 {
		return "", nil, false
	}
	v := b[1 : 1+j]
	for _, c := range v {
		if c < 0x20 || c == '\\' {
			return "", nil, false
		}
	}
	if !utf8.Valid(v) {
		return "", nil, false
	}
	return string(v), b[2+j:], true
}

const (
	subjAll = "peercam.all"
	// locateTimeout bounds the wait for a device's node; NATS answers at
	// once when nobody holds the subject.
	locateTimeout = 2 * time.Second
)

// subjWHEPClose asks every node for the WHEP session a DELETE names; the
// one holding it answers.
const subjWHEPClose = "peercam.whep.close"

func subjDevice(id string) string { return "peercam.dev." + id }
func subjNode(id string) string   { return "peercam.node." + id }

// shards is how many goroutines serve the device subjects.
const shards = 4

func newCluster(h *Hub, nc *nats.Conn, node string) (*cluster, error) {
	c := &cluster{h: h, nc: nc, node: node, subs: map[string]*nats.Subscription{}, routes: map[string]route{}}
	for range shards {
		ch := make(chan *nats.Msg, 4096)
		c.inbox = append(c.inbox, ch)
		go func() {
			for m := range ch {
				c.onDevice(strings.TrimPrefix(m.Subject, "peercam.dev."), m)
			}
		}()
	}
	if _, err := nc.Subscribe(subjNode(node), c.onNode); err != nil {
		return nil, fmt.Errorf("hub: nats: %w", err)
	}
	if _, err := nc.Subscribe(subjAll, c.onAll); err != nil {
		return nil, fmt.Errorf("hub: nats: %w", err)
	}
	if _, err := nc.Subscribe(subjWHEPClose, c.onWHEPClose); err != nil {
		return nil, fmt.Errorf("hub: nats: %w", err)
	}
	if err := nc.Flush(); err != nil {
		return nil, fmt.Errorf("hub: nats: %w", err)
	}
	return c, nil
}

func (c *cluster) publish(subj string, e envelope) {
	e.Node = c.node
	b, err := e.encode()
	if err == nil {
		err = c.nc.Publish(subj, b)
	}
	if err != nil {
		c.h.log.Warn("cluster publish", "subject", subj, "op", e.Op, "err", err)
	}
}

func (c *cluster) broadcast(e envelope) { c.publish(subjAll, e) }

// newGen names a device connection of this node.
func (c *cluster) newGen() string { return c.node + ":" + strconv.FormatUint(c.next.Add(1), 10) }

// attach makes this node the device's: it takes the device's subject, and
// every node learns it (the node holding an older connection drops it).
func (c *cluster) attach(d *device) error {
	h := fnv.New32a()
	h.Write([]byte(d.id))
	sub, err := c.nc.ChanSubscribe(subjDevice(d.id), c.inbox[h.Sum32()%shards])
	if err != nil {
		return err
	}
	c.mu.Lock()
	if old := c.subs[d.id]; old != nil {
		_ = old.Unsubscribe()
	}
	c.subs[d.id] = sub
	c.mu.Unlock()
	c.broadcast(envelope{Op: "takeover", Device: d.id, Gen: d.gen, Since: d.since})
	return nil
}

// detach gives the device's subject up when its connection d ended, unless
// a newer connection on this node holds it (newerHere); offline tells the
// others that the device is gone (not when it moved to another node or the
// node stops).
func (c *cluster) detach(d *device, newerHere, offline bool) {
	c.mu.Lock()
	if !newerHere {
		if sub := c.subs[d.id]; sub != nil {
			_ = sub.Unsubscribe()
			delete(c.subs, d.id)
		}
	}
	for sid, r := range c.routes {
		if r.device == d.id {
			delete(c.routes, sid)
		}
	}
	c.mu.Unlock()
	if offline {
		c.broadcast(envelope{Op: "offline", Device: d.id, Gen: d.gen})
	}
}

// located is where a device was found.
type located struct {
	pin     pin
	cameras []proto.Camera
}

// locate asks the cluster which node holds a device; ok false means none.
func (c *cluster) locate(ctx context.Context, id string) (located, bool) {
	b, _ := json.Marshal(envelope{Op: "locate", Node: c.node})
	ctx, cancel := context.WithTimeout(ctx, locateTimeout)
	defer cancel()
	m, err := c.nc.RequestWithContext(ctx, subjDevice(id), b)
	if err != nil {
		if !errors.Is(err, nats.ErrNoResponders) {
			c.h.log.Warn("cluster locate", "device", id, "err", err)
		}
		return located{}, false
	}
	var e envelope
	if e.decode(m.Data) != nil || e.Gen == "" {
		return located{}, false
	}
	return located{pin: pin{node: e.Node, gen: e.Gen, since: e.Since}, cameras: e.Cameras}, true
}

// toDevice sends a viewer's message for session sid to the device's node.
func (c *cluster) toDevice(devID string, p pin, sid string, m proto.Message) error {
	b, err := proto.Encode(m)
	if err != nil {
		return err
	}
	c.publish(subjDevice(devID), envelope{Op: "msg", Device: devID, Gen: p.gen, Since: p.since, Session: sid, Type: m.MessageType(), Msg: b})
	return nil
}

// onDevice serves a device subject this node holds.
func (c *cluster) onDevice(devID string, nm *nats.Msg) {
	var e envelope
	if e.decode(nm.Data) != nil {
		return
	}
	h := c.h
	h.mu.Lock()
	d := h.devices[devID]
	h.mu.Unlock()
	switch e.Op {
	case "locate":
		if d == nil || nm.Reply == "" {
			return
		}
		b, _ := json.Marshal(envelope{Op: "here", Node: c.node, Device: devID, Gen: d.gen, Since: d.since, Cameras: d.cameras})
		_ = nm.Respond(b)
	case "msg":
		// The viewer's node decoded and checked the message and encoded it
		// (proto.Encode): it goes to the device as it came.
		switch {
		case d == nil:
			// The session talks to a connection that is gone: its viewer
			// hears so and may open again (the device may be back).
			c.sendViewer(e.Node, envelope{Op: "gone", Device: devID, Gen: e.Gen, Session: e.Session})
			return
		case d.gen == e.Gen:
		case e.Since < d.since || (e.Since == d.since && e.Gen < d.gen):
			// Pinned to an older connection of the device: this one took
			// over, and the viewer's node, which re-pins the session on
			// hearing so, sent this first. It is the session's now.
		default:
			// Pinned to a newer connection on another node, which holds
			// the subject too while this older one is dropped, and takes it.
			return
		}
		c.mu.Lock()
		if e.Type == "bye" {
			delete(c.routes, e.Session)
		} else {
			c.routes[e.Session] = route{device: devID, node: e.Node}
		}
		c.mu.Unlock()
		_ = d.conn.SendEncoded(e.Msg)
	}
}

func (c *cluster) sendViewer(node string, e envelope) {
	if node == "" {
		c.broadcast(e)
		return
	}
	c.publish(subjNode(node), e)
}

// fromDevice forwards a device's message for a session this node has no
// record of to the node of its viewer (every node when the route is not
// known here: the device moved to this node during the session).
func (c *cluster) fromDevice(d *device, sid string, m proto.Message) {
	b, err := proto.Encode(m)
	if err != nil {
		return
	}
	c.mu.Lock()
	r, ok := c.routes[sid]
	if ok && r.device != d.id {
		ok = false
	}
	switch m.(type) {
	case *proto.Bye, *proto.Error:
		delete(c.routes, sid)
	}
	c.mu.Unlock()
	e := envelope{Op: "viewer", Device: d.id, Gen: d.gen, Session: sid, Msg: b}
	if ok {
		c.sendViewer(r.node, e)
		return
	}
	c.broadcast(e)
}

// onNode serves this node's inbox.
func (c *cluster) onNode(nm *nats.Msg) {
	var e envelope
	if e.decode(nm.Data) == nil {
		c.fromPeer(e)
	}
}

// fromPeer handles what another node sent to this one or to all.
func (c *cluster) fromPeer(e envelope) {
	h := c.h
	switch e.Op {
	case "viewer":
		if m, err := proto.Decode(e.Msg); err == nil {
			h.toViewer(e.Device, e.Gen, e.Session, m)
		}
	case "gone":
		h.deviceGone(e.Device, e.Gen, e.Session)
	}
}

// barrier returns once this node has heard back a broadcast of its own
// (at most within timeout): NATS delivers a subject's messages to a
// connection in the order the server took them, and onAll handles them in
// that order, so by then this node has handled every broadcast the server
// took before it. Another node's broadcast flushed before this call is one
// of them when both nodes use the same NATS server; across a NATS cluster's
// routes it may still be on its way.
func (c *cluster) barrier(timeout time.Duration) {
	id := strconv.FormatUint(c.barrierSeq.Add(1), 10)
	heard := make(chan struct{})
	c.barriers.Store(id, heard)
	defer c.barriers.Delete(id)
	c.broadcast(envelope{Op: "barrier", ID: id})
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-heard:
	case <-t.C:
	}
}

// onAll serves the broadcasts.
func (c *cluster) onAll(nm *nats.Msg) {
	var e envelope
	if e.decode(nm.Data) != nil {
		return
	}
	if e.Op == "barrier" { // other nodes' are not for this one
		if e.Node != c.node {
			return
		}
		if ch, ok := c.barriers.LoadAndDelete(e.ID); ok {
			close(ch.(chan struct{}))
		}
		return
	}
	if e.Node == c.node {
		return
	}
	h := c.h
	switch e.Op {
	case "viewer", "gone":
		c.fromPeer(e)
	case "takeover":
		h.tookOver(e.Device, pin{node: e.Node, gen: e.Gen, since: e.Since}, e.Since)
	case "offline":
		h.deviceGone(e.Device, e.Gen, "")
	case "revoke":
		h.revokeTokenHere(e.ID)
	case "endlogin":
		h.endLoginHere(e.ID)
	case "sync":
		// Only a node with the device or a session of it reads the record.
		h.forgetDevice(e.Device)
		if h.involves(e.Device) {
			if rec, err := h.cfg.Store.Device(context.Background(), e.Device); err == nil {
				h.syncHere(rec)
			}
		}
	case "limit":
		if f := c.limits.Load(); f != nil {
			(*f)(e.ID, e.Key, e.Forget)
		}
	}
}

// closeWHEP asks the node holding a WHEP session to end it for who.
func (c *cluster) closeWHEP(who, devID, camera, sid string) error {
	b, _ := json.Marshal(envelope{Op: "whep-close", Node: c.node, ID: who, Device: devID, Key: camera, Session: sid})
	m, err := c.nc.Request(subjWHEPClose, b, time.Second)
	if err != nil || string(m.Data) != "ok" {
		return fmt.Errorf("session %s: %w", sid, ErrNotFound)
	}
	return nil
}

// onWHEPClose ends a WHEP session of this node's for a DELETE another node
// got; it answers only when it holds the session, so a wrong identity or
// an unknown session times out as "not found", as on one node.
func (c *cluster) onWHEPClose(nm *nats.Msg) {
	var e envelope
	if e.decode(nm.Data) != nil || e.Node == c.node {
		return
	}
	if c.h.closeWHEPHere(e.ID, e.Device, e.Key, e.Session) == nil {
		_ = nm.Respond([]byte("ok"))
	}
}
