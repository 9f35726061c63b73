package udpbatch

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"
)

func listen(t *testing.T, network, addr string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// newConn is a batching socket on loopback; this kernel (4.18+) has GSO
// and the tests below are about using it.
func newConn(t *testing.T) *Conn {
	t.Helper()
	c := New(listen(t, "udp4", "127.0.0.1:0"), slog.New(slog.DiscardHandler))
	if !c.GSO() {
		t.Fatal("this kernel has UDP GSO (4.18+), but it was not found, or its probe failed")
	}
	return c
}

// packets is what a viewer's frame looks like: equal-sized fragments, a
// shorter last one, and the odd small packet (a sender report) between.
func packets() [][]byte {
	var out [][]byte
	add := func(n int) {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(len(out) + i)
		}
		out = append(out, p)
	}
	for range 7 {
		add(1200)
	}
	add(700)
	add(80)
	for range 3 {
		add(1200)
	}
	add(1300) // longer than the run: starts a new one
	add(1300)
	return out
}

func receive(t *testing.T, c *net.UDPConn, want [][]byte) {
	t.Helper()
	buf := make([]byte, 65536)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for i, w := range want {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
		if !bytes.Equal(buf[:n], w) {
			t.Fatalf("datagram %d: got %d bytes, want %d (%x…)", i, n, len(w), w[:4])
		}
	}
}

// TestBatch sends a batch over loopback and checks that every datagram
// arrives whole, in order, as if sent one by one.
func TestBatch(t *testing.T) {
	for _, tc := range []struct{ network, send, recv string }{
		{"udp4", "127.0.0.1:0", "127.0.0.1:0"},
		{"udp", "[::]:0", "127.0.0.1:0"}, // a dual-stack socket, as ":port" gives
	} {
		t.Run(tc.network, func(t *testing.T) {
			c := New(listen(t, tc.network, tc.send), slog.New(slog.DiscardHandler))
			if !c.GSO() {
				t.Fatal("this kernel has UDP GSO (4.18+), but it was not found")
			}
			r := listen(t, "udp4", tc.recv)
			to := r.LocalAddr().(*net.UDPAddr).AddrPort()
			want := packets()
			c.Begin(to)
			for _, p := range want {
				if _, err := c.WriteToAddrPort(p, to); err != nil {
					t.Fatal(err)
				}
			}
			// Nothing has gone out before Flush.
			_ = r.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			if n, _, err := r.ReadFrom(make([]byte, 2000)); err == nil {
				t.Fatalf("a %d-byte datagram came before Flush", n)
			}
			if err := c.Flush(to); err != nil {
				t.Fatal(err)
			}
			receive(t, r, want)
			// With no batch open, a write goes at once.
			if _, err := c.WriteToAddrPort([]byte("direct"), to); err != nil {
				t.Fatal(err)
			}
			receive(t, r, [][]byte{[]byte("direct")})
		})
	}
}

// TestBatchNested: an inner Flush does not send; the outer one does.
func TestBatchNested(t *testing.T) {
	c := newConn(t)
	r := listen(t, "udp4", "127.0.0.1:0")
	to := r.LocalAddr().(*net.UDPAddr).AddrPort()
	c.Begin(to)
	c.Begin(to)
	want := packets()
	for _, p := range want {
		_, _ = c.WriteToAddrPort(p, to)
	}
	_ = c.Flush(to)
	_ = r.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, _, err := r.ReadFrom(make([]byte, 2000)); err == nil {
		t.Fatal("the inner Flush sent the batch")
	}
	_ = c.Flush(to)
	receive(t, r, want)
}

// TestBatchOthersUnaffected: a batch open for one viewer holds nothing
// back from another.
func TestBatchOthersUnaffected(t *testing.T) {
	c := newConn(t)
	a, b := listen(t, "udp4", "127.0.0.1:0"), listen(t, "udp4", "127.0.0.1:0")
	toA, toB := a.LocalAddr().(*net.UDPAddr).AddrPort(), b.LocalAddr().(*net.UDPAddr).AddrPort()
	c.Begin(toA)
	_, _ = c.WriteToAddrPort([]byte("held"), toA)
	_, _ = c.WriteToAddrPort([]byte("now"), toB)
	receive(t, b, [][]byte{[]byte("now")})
	_ = c.Flush(toA)
	receive(t, a, [][]byte{[]byte("held")})
}

// TestBatchGSOFails: when the kernel refuses a segmented send (EIO from a
// device without checksum offload), the batch still arrives whole, one
// datagram a call, and after a few such refusals GSO is turned off.
func TestBatchGSOFails(t *testing.T) {
	c := newConn(t)
	c.refuseGSO = true
	// A send the plain way refuses too (here to port 0, EINVAL) says
	// nothing about GSO.
	nowhere := netip.MustParseAddrPort("127.0.0.1:0")
	c.Begin(nowhere)
	for _, p := range packets() {
		_, _ = c.WriteToAddrPort(p, nowhere)
	}
	if err := c.Flush(nowhere); err == nil {
		t.Fatal("a send to port 0 went through")
	}
	if n := c.failed.Load(); n != 0 || !c.GSO() {
		t.Fatalf("a send that failed both ways counted against GSO (%d, GSO %v)", n, c.GSO())
	}
	r := listen(t, "udp4", "127.0.0.1:0")
	to := r.LocalAddr().(*net.UDPAddr).AddrPort()
	for i := 0; c.GSO(); i++ {
		if i == 10 {
			t.Fatalf("GSO still on after %d refused sends", c.failed.Load())
		}
		want := packets()
		c.Begin(to)
		for _, p := range want {
			_, _ = c.WriteToAddrPort(p, to)
		}
		if err := c.Flush(to); err != nil {
			t.Fatalf("flush after the fallback: %v", err)
		}
		receive(t, r, want)
	}
	if n := c.failed.Load(); n != gsoFailures {
		t.Fatalf("%d refused sends before GSO went off, want %d", n, gsoFailures)
	}
	// Off: Begin gathers nothing, a write goes at once.
	c.Begin(to)
	_, _ = c.WriteToAddrPort([]byte("now"), to)
	receive(t, r, [][]byte{[]byte("now")})
	_ = c.Flush(to)
}

func BenchmarkFrame(b *testing.B) {
	for _, batched := range []bool{false, true} {
		b.Run(fmt.Sprintf("batched=%v", batched), func(b *testing.B) {
			send, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				b.Fatal(err)
			}
			defer send.Close()
			r, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			go func() {
				buf := make([]byte, 65536)
				for {
					if _, err := r.Read(buf); err != nil {
						return
					}
				}
			}()
			c := New(send, slog.New(slog.DiscardHandler))
			to := r.LocalAddr().(*net.UDPAddr).AddrPort()
			frame := packets()[:8]
			b.SetBytes(int64(7*1200 + 700))
			for b.Loop() {
				if batched {
					c.Begin(to)
				}
				for _, p := range frame {
					_, _ = c.WriteToAddrPort(p, to)
				}
				if batched {
					_ = c.Flush(to)
				}
			}
		})
	}
}
