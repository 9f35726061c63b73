package portmap

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	natpmp "github.com/jackpal/go-nat-pmp"
)

// natpmpClient speaks NAT-PMP (RFC 6886), Apple's protocol that PCP grew
// from; many routers still answer only it.
type natpmpClient struct {
	gateway netip.Addr
}

// client returns a go-nat-pmp client whose retries end with ctx.
func (c *natpmpClient) client(ctx context.Context) *natpmp.Client {
	timeout := 3 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(d), time.Millisecond)
	}
	return natpmp.NewClientWithTimeout(net.IP(c.gateway.AsSlice()), timeout)
}

func (c *natpmpClient) add(ctx context.Context, internal netip.AddrPort, want uint16, lease time.Duration) (Mapping, error) {
	cl := c.client(ctx)
	ext, err := cl.GetExternalAddress()
	if err != nil {
		return Mapping{}, fmt.Errorf("portmap: NAT-PMP external address: %w", err)
	}
	res, err := cl.AddPortMapping("udp", int(internal.Port()), int(want), int(lease/time.Second))
	if err != nil {
		return Mapping{}, fmt.Errorf("portmap: NAT-PMP mapping: %w", err)
	}
	return Mapping{External: netip.AddrPortFrom(netip.AddrFrom4(ext.ExternalIPAddress), res.MappedExternalPort),
		Lifetime: time.Duration(res.PortMappingLifetimeInSeconds) * time.Second}, nil
}

func (c *natpmpClient) remove(ctx context.Context, m Mapping) error {
	// Lifetime 0 and external port 0 delete the mapping (RFC 6886 3.4).
	_, err := c.client(ctx).AddPortMapping("udp", int(m.Internal.Port()), 0, 0)
	return err
}
