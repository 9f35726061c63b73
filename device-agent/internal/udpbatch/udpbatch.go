// Package udpbatch sends what the agent writes to one viewer between Begin
// and Flush in as few system calls as the kernel allows: equal-sized
// datagrams go out in one sendmsg with UDP generic segmentation offload
// (UDP_SEGMENT, Linux 4.18 and later), so a frame of eight packets costs
// one trip through the system call and the IP stack instead of eight.
//
// It sits under pion's UDP mux as its socket. Writes to an address with no
// batch open, and every write on a kernel without UDP GSO, go straight to
// the socket as before: Begin and Flush then do nothing.
package udpbatch

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

const (
	solUDP     = 17  // SOL_UDP
	udpSegment = 103 // UDP_SEGMENT
	soDomain   = 39  // SO_DOMAIN
	// maxSegments is the kernel's UDP_MAX_SEGMENTS; maxBytes keeps a
	// batch inside one IP datagram's 64 KiB.
	maxSegments = 64
	maxBytes    = 65000
	// gsoFailures turns GSO off after this many failed sends: a device
	// without checksum offload refuses it every time (EIO).
	gsoFailures = 3
)

// Conn is a UDP socket with per-address batches.
type Conn struct {
	c      *net.UDPConn
	raw    syscall.RawConn
	inet6  bool
	gso    atomic.Bool
	failed atomic.Int32
	log    *slog.Logger

	// refuseGSO makes sendGSO fail as a device without checksum offload
	// does (tests).
	refuseGSO bool

	open    atomic.Int32 // len(batches), read without the lock
	mu      sync.Mutex
	batches map[netip.AddrPort]*batch
	pool    sync.Pool
}

type batch struct {
	depth int
	buf   []byte
	sizes []int
}

// New wraps c. GSO is used when the kernel has it; log says once if it
// turns out to fail.
func New(c *net.UDPConn, log *slog.Logger) *Conn {
	bc := &Conn{c: c, log: log, batches: map[netip.AddrPort]*batch{}}
	raw, err := c.SyscallConn()
	if err != nil {
		return bc
	}
	bc.raw = raw
	var domain int
	var gsoErr, domErr error
	_ = raw.Control(func(fd uintptr) {
		_, gsoErr = syscall.GetsockoptInt(int(fd), solUDP, udpSegment)
		domain, domErr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, soDomain)
	})
	bc.inet6 = domain == syscall.AF_INET6
	bc.gso.Store(gsoErr == nil && domErr == nil && bc.probe())
	return bc
}

// probe sends one segmented datagram to a loopback socket of its own and
// tells whether it arrived as the two it should be. A kernel that has the
// option but mishandles it, or an emulator between the agent and the
// kernel (qemu-user passes the control message's bytes through, so a
// big-endian guest's segment size reaches a little-endian kernel swapped),
// would send one large datagram to every viewer instead.
func (c *Conn) probe() bool {
	r, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return false
	}
	sa, ok := c.sockaddr(r.LocalAddr().(*net.UDPAddr).AddrPort())
	n := 0
	if ok && c.sendGSO(make([]byte, 300), 200, sa) == nil {
		_ = r.SetReadDeadline(time.Now().Add(time.Second))
		n, _ = r.Read(make([]byte, 512)) // 300 bytes if the size was not taken
	}
	r.Close()
	return n == 200
}

// ReadFrom, WriteTo, Close, LocalAddr and the deadlines are the socket's
// own: a net.PacketConn.
func (c *Conn) ReadFrom(b []byte) (int, net.Addr, error)     { return c.c.ReadFrom(b) }
func (c *Conn) WriteTo(b []byte, addr net.Addr) (int, error) { return c.c.WriteTo(b, addr) }
func (c *Conn) Close() error                                 { return c.c.Close() }
func (c *Conn) LocalAddr() net.Addr                          { return c.c.LocalAddr() }
func (c *Conn) SetDeadline(t time.Time) error                { return c.c.SetDeadline(t) }
func (c *Conn) SetReadDeadline(t time.Time) error            { return c.c.SetReadDeadline(t) }
func (c *Conn) SetWriteDeadline(t time.Time) error           { return c.c.SetWriteDeadline(t) }

// GSO reports whether batches go out with UDP segmentation offload.
func (c *Conn) GSO() bool { return c.gso.Load() }

// ReadFromAddrPort and WriteToAddrPort are what pion's mux uses on a
// socket that has them (ice.AddrPortReaderWriter).
func (c *Conn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	return c.c.ReadFromUDPAddrPort(b)
}

// WriteToAddrPort adds b to addr's open batch, or sends it.
func (c *Conn) WriteToAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	if c.open.Load() > 0 {
		c.mu.Lock()
		if bt := c.batches[addr]; bt != nil {
			bt.buf = append(bt.buf, b...)
			bt.sizes = append(bt.sizes, len(b))
			c.mu.Unlock()
			return len(b), nil
		}
		c.mu.Unlock()
	}
	return c.c.WriteToUDPAddrPort(b, addr)
}

// Begin opens a batch for addr: writes to it wait for Flush. Calls nest.
func (c *Conn) Begin(addr netip.AddrPort) {
	if !c.gso.Load() {
		return
	}
	c.mu.Lock()
	bt := c.batches[addr]
	if bt == nil {
		if bt, _ = c.pool.Get().(*batch); bt == nil {
			bt = &batch{}
		}
		c.batches[addr] = bt
		c.open.Add(1)
	}
	bt.depth++
	c.mu.Unlock()
}

// Flush sends addr's batch (at its outermost Flush).
func (c *Conn) Flush(addr netip.AddrPort) error {
	c.mu.Lock()
	bt := c.batches[addr]
	if bt == nil {
		c.mu.Unlock()
		return nil
	}
	if bt.depth--; bt.depth > 0 {
		c.mu.Unlock()
		return nil
	}
	delete(c.batches, addr)
	c.open.Add(-1)
	c.mu.Unlock()
	err := c.send(bt, addr)
	bt.buf, bt.sizes = bt.buf[:0], bt.sizes[:0]
	c.pool.Put(bt)
	return err
}

// send writes bt in runs: datagrams of one size, the last of a run
// possibly shorter, each run one sendmsg.
func (c *Conn) send(bt *batch, addr netip.AddrPort) error {
	sa, ok := c.sockaddr(addr)
	var firstErr error
	off := 0
	for i := 0; i < len(bt.sizes); {
		size := bt.sizes[i]
		j, total := i+1, size
		for j < len(bt.sizes) && j-i < maxSegments && total+bt.sizes[j] <= maxBytes && bt.sizes[j] <= size {
			total += bt.sizes[j]
			j++
			if bt.sizes[j-1] < size {
				break // a shorter one ends the run
			}
		}
		run := bt.buf[off : off+total]
		var err error
		if j-i == 1 || !ok || !c.gso.Load() {
			err = c.each(run, bt.sizes[i:j], addr)
		} else if gsoErr := c.sendGSO(run, size, sa); gsoErr != nil {
			// Sent one at a time instead. Only a refusal the plain sends
			// do not share counts against GSO: an unreachable viewer
			// fails both ways.
			if err = c.each(run, bt.sizes[i:j], addr); err == nil &&
				c.failed.Add(1) == gsoFailures && c.gso.CompareAndSwap(true, false) {
				c.log.Info("UDP segmentation offload failed; sending one packet a system call", "err", gsoErr)
			}
		}
		if firstErr == nil {
			firstErr = err
		}
		off += total
		i = j
	}
	return firstErr
}

// each sends a run one datagram at a time.
func (c *Conn) each(run []byte, sizes []int, addr netip.AddrPort) error {
	var firstErr error
	for _, n := range sizes {
		if _, err := c.c.WriteToUDPAddrPort(run[:n], addr); err != nil && firstErr == nil {
			firstErr = err
		}
		run = run[n:]
	}
	return firstErr
}

// sendGSO sends run as datagrams of size bytes (the last may be shorter)
// with one sendmsg.
func (c *Conn) sendGSO(run []byte, size int, sa syscall.Sockaddr) error {
	if c.refuseGSO {
		return syscall.EIO
	}
	// One control message, SOL_UDP/UDP_SEGMENT, whose data is the segment
	// size as a host-order uint16.
	oob := make([]byte, syscall.CmsgSpace(2))
	h := (*syscall.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level, h.Type = solUDP, udpSegment
	h.SetLen(syscall.CmsgLen(2))
	*(*uint16)(unsafe.Pointer(&oob[syscall.CmsgLen(0)])) = uint16(size)
	var sendErr error
	err := c.raw.Write(func(fd uintptr) bool {
		_, sendErr = syscall.SendmsgN(int(fd), run, oob, sa, 0)
		return sendErr != syscall.EAGAIN
	})
	if err != nil {
		return err
	}
	return sendErr
}

// sockaddr is addr for the socket's family; false for what GSO does not
// take here (an IPv6 address on an IPv4 socket, a link-local zone).
func (c *Conn) sockaddr(addr netip.AddrPort) (syscall.Sockaddr, bool) {
	ip := addr.Addr()
	if c.inet6 {
		return &syscall.SockaddrInet6{Port: int(addr.Port()), Addr: ip.As16()}, ip.Zone() == ""
	}
	if ip = ip.Unmap(); !ip.Is4() {
		return nil, false
	}
	return &syscall.SockaddrInet4{Port: int(addr.Port()), Addr: ip.As4()}, true
}
