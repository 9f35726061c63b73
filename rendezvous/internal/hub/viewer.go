package hub

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/peercam/peercam/internal/viewertoken"
	"github.com/peercam/peercam/internal/wsconn"
	"github.com/peercam/peercam/proto"
)

// wsViewer is a viewer on a signaling WebSocket.
type wsViewer struct{ conn *wsconn.Conn }

func (w *wsViewer) deliver(m proto.Message) { _ = w.conn.Send(m) }

// TokenParser checks a viewer token presented in open.token.
type TokenParser func(token string) (*viewertoken.Claims, error)

// ViewerConn is what the HTTP side knows of a viewer socket.
type ViewerConn struct {
	// Viewer is who the connection's cookie says it is (zero when
	// anonymous); open.token can carry a viewer token instead.
	Viewer Viewer
	// Parse checks open.token.
	Parse TokenParser
	// AllowOpen spends one open of the viewer's budget (per address, and
	// per token ID when there is one); ErrRateLimited when it is spent.
	AllowOpen func(tokenID string) error
	Remote    string
}

// ServeViewer runs one viewer connection until it ends.
func (h *Hub) ServeViewer(ctx context.Context, c *wsconn.Conn, vc ViewerConn) {
	defer h.track(c)()
	v, parse := vc.Viewer, vc.Parse
	ep := &wsViewer{conn: c}
	log := h.log.With("remote", vc.Remote)
	var mine []string
	var readErr error
	for {
		m, err := c.Read()
		var de *wsconn.DecodeError
		if errors.As(err, &de) {
			h.refused(de)
			continue // already answered with an error message
		}
		if err != nil {
			readErr = err
			break
		}
		h.cfg.Metrics.Messages.WithLabelValues("viewer").Inc()
		switch m := m.(type) {
		case *proto.Open:
			s, err := h.openFromViewer(ctx, v, parse, vc.AllowOpen, m, ep)
			if err != nil {
				log.Info("open refused", "device", m.Device, "camera", m.Camera, "err", err)
				h.sendErr(c, &proto.Error{Code: CodeOf(err), Message: Sentence(err), Ref: m.Ref})
				continue
			}
			mine = append(mine, s.id)
			if n := len(mine); n >= 64 && n&(n-1) == 0 {
				// A page that stays for days opens thousands: keep the
				// list to the sessions still this socket's.
				mine = h.ownedBy(ep, mine)
			}
			_ = c.Send(&proto.Session{Session: s.id, ICEServers: h.cfg.ICEServers(), Ref: m.Ref})
		case *proto.Offer:
			fwd, err := h.offerFor(ep, m.Session, m.SDP, true)
			if err == nil {
				err = h.toDevice(ep, m.Session, fwd)
			}
			if err != nil {
				h.sendErr(c, proto.NewError(m.Session, CodeOf(err), Sentence(err)))
			}
		case *proto.Candidate:
			if err := h.toDevice(ep, m.Session, m); err != nil {
				h.sendErr(c, proto.NewError(m.Session, CodeOf(err), Sentence(err)))
			}
		case *proto.Bye:
			_ = h.toDevice(ep, m.Session, m)
		default:
			h.sendErr(c, proto.NewError("", proto.CodeBadMessage, fmt.Sprintf("a viewer may not send %s", m.MessageType())))
		}
	}
	h.mu.Lock()
	closing := h.closing
	h.mu.Unlock()
	if closing {
		// The server is stopping, not the viewer leaving: the sessions go on
		// peer to peer, and the viewer resumes them on the next server.
		return
	}
	if wsconn.ClosedOnPurpose(readErr) {
		// Closed on purpose (the page went away): its sessions end now, and
		// their viewer slots are free for the next page at once.
		for _, sid := range mine {
			h.close(ep, sid, "viewer left")
		}
		return
	}
	// The socket dropped: the picture goes on peer to peer, and the page
	// moves its sessions to a new socket (resume), which makes them no
	// longer ep's; those it did not take end after the grace.
	time.AfterFunc(h.cfg.ResumeGrace, func() {
		for _, sid := range mine {
			h.close(ep, sid, "viewer gone")
		}
	})
}

// ownedBy is the part of ids that are live sessions of ep: what closing
// ep would end (Hub.close does nothing for the rest).
func (h *Hub) ownedBy(ep endpoint, ids []string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	kept := ids[:0]
	for _, id := range ids {
		if s := h.sessions[id]; s != nil && s.viewer == ep {
			kept = append(kept, id)
		}
	}
	return kept
}

func (h *Hub) openFromViewer(ctx context.Context, v Viewer, parse TokenParser, allow func(string) error, m *proto.Open, ep endpoint) (*session, error) {
	if m.Token != "" {
		claims, err := parse(m.Token)
		if errors.Is(err, ErrRateLimited) {
			return nil, err
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrUnauthorized, err)
		}
		v = Viewer{Token: claims, RawToken: m.Token}
	}
	if allow != nil {
		id := ""
		if v.Token != nil {
			id = v.Token.ID
		}
		if err := allow(id); err != nil {
			return nil, err
		}
	}
	if m.Resume != "" {
		return h.resume(ctx, v, m, ep)
	}
	return h.open(ctx, v, m.Device, m.Camera, m.Stream, ep)
}

// resume moves a live session to the viewer's new connection, after its
// network changed, if the same viewer is still allowed to watch. Anything
// else is "not found": session IDs are not to be probed.
func (h *Hub) resume(ctx context.Context, v Viewer, m *proto.Open, ep endpoint) (*session, error) {
	g, err := h.authorize(ctx, v, m.Device, m.Camera)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	s := h.sessions[m.Resume]
	if s == nil {
		h.mu.Unlock()
		if !adoptable(m.Resume) {
			return nil, fmt.Errorf("session %s: %w", m.Resume, ErrNotFound)
		}
		// Not on record here: this server restarted (or the viewer reached
		// another one). The agent may still serve the session peer to peer;
		// it is taken back on record for this viewer, who was just
		// authorized. The agent lets only the same token subject restart it.
		return h.openAs(ctx, v, m.Device, m.Camera, m.Stream, ep, m.Resume)
	}
	defer h.mu.Unlock()
	same := s.deviceID == m.Device && s.camera == m.Camera && s.claim == g.rec.ClaimID && s.who == v.who()
	if !same {
		return nil, fmt.Errorf("session %s: %w", m.Resume, ErrNotFound)
	}
	s.viewer, s.token = ep, g.token
	if v.LoginID != "" {
		s.loginID = v.LoginID
	}
	return s, nil
}

// offerFor builds the offer the device receives for a session.
func (h *Hub) offerFor(ep endpoint, sid, sdp string, trickle bool) (*proto.Offer, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.sessions[sid]
	if s == nil || s.viewer != ep {
		return nil, fmt.Errorf("session %s: %w", sid, ErrNotFound)
	}
	return &proto.Offer{Session: sid, SDP: sdp, Camera: s.camera, Stream: s.stream, Token: s.token, Trickle: &trickle,
		ICEServers: h.cfg.ICEServers()}, nil
}

// whepViewer waits for the device's answer to a WHEP offer.
type whepViewer struct {
	once sync.Once
	// got receives the first answer or error.
	got chan proto.Message
}

func (w *whepViewer) deliver(m proto.Message) {
	switch m.(type) {
	case *proto.Answer, *proto.Error, *proto.Bye:
		w.once.Do(func() { w.got <- m })
	}
}

// WHEPSession is an open WHEP session.
type WHEPSession struct {
	ID     string
	Answer string
	// Served is which stream the agent chose for this player, and why.
	Served *proto.Served
	ep     endpoint
}

// OpenWHEP forwards a WHEP offer (RFC 9725) to the device and waits for an
// answer that carries all the device's candidates.
func (h *Hub) OpenWHEP(ctx context.Context, v Viewer, devID, camera, stream, sdp string) (*WHEPSession, error) {
	ep := &whepViewer{got: make(chan proto.Message, 1)}
	s, err := h.open(ctx, v, devID, camera, stream, ep)
	if err != nil {
		return nil, err
	}
	fwd, err := h.offerFor(ep, s.id, sdp, false)
	if err == nil {
		err = h.toDevice(ep, s.id, fwd)
	}
	if err != nil {
		h.drop(s.id)
		return nil, err
	}
	t := time.NewTimer(h.cfg.AnswerTimeout)
	defer t.Stop()
	select {
	case m := <-ep.got:
		switch m := m.(type) {
		case *proto.Answer:
			return &WHEPSession{ID: s.id, Answer: m.SDP, Served: m.Served, ep: ep}, nil
		case *proto.Error:
			return nil, &PeerError{Code: m.Code, Message: m.Message}
		default:
			return nil, &PeerError{Code: proto.CodeInternal, Message: "the device ended the session"}
		}
	case <-t.C:
		h.close(ep, s.id, "no answer in time")
		return nil, ErrTimeout
	case <-ctx.Done():
		h.close(ep, s.id, "viewer left")
		return nil, ctx.Err()
	}
}

// CloseWHEP ends a WHEP session; only the identity that opened it (the same
// token, or the same owner) may, at the device and camera it was opened for.
// Anyone else gets "not found", as if the URL were wrong.
func (h *Hub) CloseWHEP(v Viewer, devID, camera, sid string) error {
	err := h.closeWHEPHere(v.who(), devID, camera, sid)
	if errors.Is(err, ErrNotFound) && h.cl != nil {
		// A load balancer may send the DELETE to another node than the
		// POST: the node holding the session checks and ends it.
		return h.cl.closeWHEP(v.who(), devID, camera, sid)
	}
	return err
}

func (h *Hub) closeWHEPHere(who, devID, camera, sid string) error {
	h.mu.Lock()
	s := h.sessions[sid]
	h.mu.Unlock()
	if s == nil || s.deviceID != devID || s.camera != camera || s.who == "" || s.who != who {
		return fmt.Errorf("session %s: %w", sid, ErrNotFound)
	}
	if _, ok := s.viewer.(*whepViewer); !ok {
		return fmt.Errorf("session %s: %w", sid, ErrNotFound)
	}
	h.close(s.viewer, sid, "WHEP DELETE")
	return nil
}

func (h *Hub) drop(sid string) {
	h.mu.Lock()
	h.forgetLocked(sid)
	h.mu.Unlock()
}
