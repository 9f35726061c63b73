package portmap

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
)

// ErrNoGateway means the system has no IPv4 default route.
var ErrNoGateway = errors.New("portmap: no IPv4 default route, so no router to ask")

// DefaultGateway returns the gateway of the IPv4 default route (Linux).
func DefaultGateway() (netip.Addr, error) {
	f, err := os.Open("/proc/net/route")
	if err != nil {
		return netip.Addr{}, fmt.Errorf("portmap: reading the routing table: %w", err)
	}
	defer f.Close()
	return parseRoutes(f)
}

// parseRoutes reads /proc/net/route: a header line, then per route the
// interface, destination, gateway and flags. The kernel prints each address's
// bytes (network order in memory) as a host-order integer in hex, so on
// little-endian hosts they come out reversed.
func parseRoutes(r io.Reader) (netip.Addr, error) {
	sc := bufio.NewScanner(r)
	first := true
	for sc.Scan() {
		if first {
			first = false
			continue
		}
		f := strings.Fields(sc.Text())
		if len(f) < 4 || f[1] != "00000000" {
			continue
		}
		var flags uint16
		if _, err := fmt.Sscanf(f[3], "%x", &flags); err != nil || flags&0x3 != 0x3 { // RTF_UP|RTF_GATEWAY
			continue
		}
		b, err := hex.DecodeString(f[2])
		if err != nil || len(b) != 4 {
			continue
		}
		var mem [4]byte
		binary.NativeEndian.PutUint32(mem[:], binary.BigEndian.Uint32(b))
		return netip.AddrFrom4(mem), nil
	}
	return netip.Addr{}, ErrNoGateway
}
