// Package stun answers STUN Binding requests (RFC 8489) so that agents and
// viewers learn their public address from the rendezvous they already trust.
// Message parsing and building is pion's; this package only runs the loop.
package stun

import (
	"errors"
	"log/slog"
	"net"
	"sync/atomic"

	"github.com/pion/stun/v4"
)

// Server answers Binding requests on one PacketConn.
type Server struct {
	conn net.PacketConn
	log  *slog.Logger
	// answered and dropped count requests; read them with Stats.
	answered, dropped atomic.Uint64
}

// New serves STUN on conn until conn is closed.
func New(conn net.PacketConn, log *slog.Logger) *Server {
	return &Server{conn: conn, log: log.With("component", "stun")}
}

// Stats returns how many requests were answered and how many packets were not
// STUN Binding requests.
func (s *Server) Stats() (answered, dropped uint64) { return s.answered.Load(), s.dropped.Load() }

// Serve runs until the conn is closed.
func (s *Server) Serve() error {
	buf := make([]byte, 1500)
	for {
		n, addr, err := s.conn.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		if err := s.answer(buf[:n], addr); err != nil {
			s.dropped.Add(1)
		}
	}
}

func (s *Server) answer(b []byte, addr net.Addr) error {
	if !stun.IsMessage(b) {
		return errors.New("not STUN")
	}
	req := &stun.Message{Raw: append([]byte(nil), b...)}
	if err := req.Decode(); err != nil {
		return err
	}
	if req.Type != stun.BindingRequest {
		return errors.New("not a Binding request")
	}
	udp, ok := addr.(*net.UDPAddr)
	if !ok {
		return errors.New("not UDP")
	}
	resp, err := stun.Build(stun.NewTransactionIDSetter(req.TransactionID), stun.BindingSuccess,
		&stun.XORMappedAddress{IP: udp.IP, Port: udp.Port}, stun.NewSoftware("peercam-rendezvous"), stun.Fingerprint)
	if err != nil {
		return err
	}
	s.answered.Add(1)
	_, err = s.conn.WriteTo(resp.Raw, addr)
	return err
}
