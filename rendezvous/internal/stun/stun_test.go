package stun

import (
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

func TestBinding(t *testing.T) {
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := New(conn, slog.New(slog.DiscardHandler))
	done := make(chan error, 1)
	go func() { done <- srv.Serve() }()
	defer func() {
		conn.Close()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}()

	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Garbage first: it must be dropped without stopping the server.
	if _, err := c.WriteTo([]byte("hello"), conn.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	req := stun.MustBuild(stun.TransactionID, stun.BindingRequest)
	if _, err := c.WriteTo(req.Raw, conn.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1500)
	n, _, err := c.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	resp := &stun.Message{Raw: buf[:n]}
	if err := resp.Decode(); err != nil {
		t.Fatal(err)
	}
	if resp.Type != stun.BindingSuccess || resp.TransactionID != req.TransactionID {
		t.Fatalf("response %v", resp)
	}
	var xor stun.XORMappedAddress
	if err := xor.GetFrom(resp); err != nil {
		t.Fatal(err)
	}
	if want := c.LocalAddr().(*net.UDPAddr); !xor.IP.Equal(want.IP) || xor.Port != want.Port {
		t.Fatalf("mapped %v, want %v", xor, want)
	}
	if a, d := srv.Stats(); a != 1 || d != 1 {
		t.Fatalf("stats answered=%d dropped=%d, want 1 and 1", a, d)
	}
}
