package portmap

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// PCP (RFC 6887): one MAP request over UDP to the gateway's port 5351, the
// port NAT-PMP uses too.
const (
	pcpPort       = 5351
	pcpVersion    = 2
	pcpOpMap      = 1
	pcpMapLen     = 60 // common header (24) + MAP opcode (36)
	protocolUDP   = 17
	pcpResultOK   = 0
	pcpUnsuppVers = 1
)

// pcpResults names the result codes (RFC 6887 section 7.4).
var pcpResults = map[byte]string{
	1: "UNSUPP_VERSION", 2: "NOT_AUTHORIZED", 3: "MALFORMED_REQUEST", 4: "UNSUPP_OPCODE", 5: "UNSUPP_OPTION",
	6: "MALFORMED_OPTION", 7: "NETWORK_FAILURE", 8: "NO_RESOURCES", 9: "UNSUPP_PROTOCOL", 10: "USER_EX_QUOTA",
	11: "CANNOT_PROVIDE_EXTERNAL", 12: "ADDRESS_MISMATCH", 13: "EXCESSIVE_REMOTE_PEERS",
}

// ErrPCPResult is a PCP server's refusal; the message names the result code.
var ErrPCPResult = errors.New("portmap: PCP request refused")

// ErrPCPBadResponse is a reply that is not a PCP MAP response to our request.
var ErrPCPBadResponse = errors.New("portmap: not a PCP MAP response")

// ErrOnlyNATPMP means the router answered PCP with NAT-PMP's "unsupported
// version": it speaks NAT-PMP only.
var ErrOnlyNATPMP = errors.New("portmap: the router speaks NAT-PMP, not PCP")

type pcpClient struct {
	gateway netip.Addr
	// nonce identifies our mapping to the server across renewals and the
	// delete; zero until the first request.
	nonce [12]byte
}

// pcpMap is a MAP request or response.
type pcpMap struct {
	lifetime     uint32
	client       netip.Addr // request: our address; response: unused
	nonce        [12]byte
	internalPort uint16
	externalPort uint16
	externalIP   netip.Addr
	result       byte   // response only
	epoch        uint32 // response only
}

// marshalPCPMap encodes a MAP request for UDP.
func marshalPCPMap(m pcpMap) []byte {
	b := make([]byte, pcpMapLen)
	b[0], b[1] = pcpVersion, pcpOpMap
	binary.BigEndian.PutUint32(b[4:], m.lifetime)
	c := m.client.As16()
	copy(b[8:24], c[:])
	copy(b[24:36], m.nonce[:])
	b[36] = protocolUDP
	binary.BigEndian.PutUint16(b[40:], m.internalPort)
	binary.BigEndian.PutUint16(b[42:], m.externalPort)
	ext := netip.IPv4Unspecified()
	if m.externalIP.IsValid() {
		ext = m.externalIP
	}
	e := ext.As16()
	copy(b[44:60], e[:])
	return b
}

// parsePCPMap decodes a MAP response.
func parsePCPMap(b []byte) (pcpMap, error) {
	var m pcpMap
	if len(b) >= 4 && b[0] == 0 && b[3] == pcpUnsuppVers {
		return m, ErrOnlyNATPMP
	}
	if len(b) < 4 {
		return m, fmt.Errorf("%w: %d bytes", ErrPCPBadResponse, len(b))
	}
	if b[0] != pcpVersion || b[1] != 0x80|pcpOpMap {
		return m, fmt.Errorf("%w: version %d, opcode %#x", ErrPCPBadResponse, b[0], b[1])
	}
	m.result = b[3]
	if m.result != pcpResultOK {
		name := pcpResults[m.result]
		if name == "" {
			name = fmt.Sprintf("result code %d", m.result)
		}
		return m, fmt.Errorf("%w: %s", ErrPCPResult, name)
	}
	if len(b) < pcpMapLen {
		return m, fmt.Errorf("%w: %d bytes, want %d", ErrPCPBadResponse, len(b), pcpMapLen)
	}
	m.lifetime = binary.BigEndian.Uint32(b[4:])
	m.epoch = binary.BigEndian.Uint32(b[8:])
	copy(m.nonce[:], b[24:36])
	if b[36] != protocolUDP {
		return m, fmt.Errorf("%w: protocol %d", ErrPCPBadResponse, b[36])
	}
	m.internalPort = binary.BigEndian.Uint16(b[40:])
	m.externalPort = binary.BigEndian.Uint16(b[42:])
	m.externalIP = netip.AddrFrom16([16]byte(b[44:60])).Unmap()
	return m, nil
}

func (c *pcpClient) add(ctx context.Context, internal netip.AddrPort, want uint16, lease time.Duration) (Mapping, error) {
	if c.nonce == ([12]byte{}) {
		if _, err := rand.Read(c.nonce[:]); err != nil {
			return Mapping{}, err
		}
	}
	resp, err := c.call(ctx, pcpMap{lifetime: uint32(lease / time.Second), client: internal.Addr(), nonce: c.nonce,
		internalPort: internal.Port(), externalPort: want})
	if err != nil {
		return Mapping{}, err
	}
	if resp.externalPort == 0 {
		return Mapping{}, fmt.Errorf("%w: no external port", ErrPCPBadResponse)
	}
	return Mapping{External: netip.AddrPortFrom(resp.externalIP, resp.externalPort),
		Lifetime: time.Duration(resp.lifetime) * time.Second}, nil
}

func (c *pcpClient) remove(ctx context.Context, m Mapping) error {
	_, err := c.call(ctx, pcpMap{lifetime: 0, client: m.Internal.Addr(), nonce: c.nonce, internalPort: m.Internal.Port()})
	return err
}

// call sends a MAP request and waits for its response, resending with
// doubling waits (RFC 6887 section 8.1.1, compressed: a router that does not
// answer within a few seconds will not).
func (c *pcpClient) call(ctx context.Context, req pcpMap) (pcpMap, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "udp4", netip.AddrPortFrom(c.gateway, pcpPort).String())
	if err != nil {
		return pcpMap{}, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	msg := marshalPCPMap(req)
	buf := make([]byte, 1100) // the largest PCP message
	wait := 250 * time.Millisecond
	var lastErr error
	for ctx.Err() == nil {
		if _, err := conn.Write(msg); err != nil {
			return pcpMap{}, err // ICMP port unreachable: nobody listens
		}
		_ = conn.SetReadDeadline(time.Now().Add(wait))
		for {
			n, err := conn.Read(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break
				}
				return pcpMap{}, err
			}
			resp, err := parsePCPMap(buf[:n])
			if err == nil && (resp.nonce != req.nonce || resp.internalPort != req.internalPort) {
				err = fmt.Errorf("%w: for another request", ErrPCPBadResponse)
			}
			if err == nil {
				return resp, nil
			}
			if !errors.Is(err, ErrPCPBadResponse) {
				return resp, err
			}
			lastErr = err // keep listening: a stray datagram
		}
		wait *= 2
	}
	if lastErr != nil {
		return pcpMap{}, lastErr
	}
	return pcpMap{}, fmt.Errorf("portmap: no PCP answer from %s: %w", c.gateway, ctx.Err())
}
