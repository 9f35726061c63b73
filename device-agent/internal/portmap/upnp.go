package portmap

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"time"

	"github.com/huin/goupnp"
	"github.com/huin/goupnp/dcps/internetgateway2"
	"github.com/huin/goupnp/soap"
	"github.com/huin/goupnp/ssdp"
)

// ErrNoIGD means no UPnP Internet Gateway Device answered the search.
var ErrNoIGD = errors.New("portmap: no UPnP Internet Gateway Device answered")

// upnpClient speaks UPnP IGD: WANIPConnection:2 where the router offers it
// (IGD v2), else WANIPConnection:1 or WANPPPConnection:1 (IGD v1).
type upnpClient struct {
	gateway netip.Addr
	svc     igdService
	// version is the IGD version svc belongs to, for the log.
	version string
}

// igdService is what PeerCam needs of the three WAN connection services;
// goupnp generates all of them with these methods.
type igdService interface {
	AddPortMappingCtx(ctx context.Context, remoteHost string, externalPort uint16, protocol string, internalPort uint16,
		internalClient string, enabled bool, description string, leaseDuration uint32) error
	DeletePortMappingCtx(ctx context.Context, remoteHost string, externalPort uint16, protocol string) error
	GetExternalIPAddressCtx(ctx context.Context) (string, error)
}

const mappingDescription = "PeerCam device agent (WebRTC)"

// discover searches the LAN for the router's IGD, preferring the one at the
// gateway address and IGD v2.
func (c *upnpClient) discover(ctx context.Context) (igdService, string, error) {
	devs, err := goupnp.DiscoverDevicesCtx(ctx, ssdp.UPNPRootDevice)
	if err != nil {
		return nil, "", fmt.Errorf("portmap: UPnP search: %w", err)
	}
	var found igdService
	var version string
	for _, d := range devs {
		if d.Root == nil || d.Location == nil {
			continue
		}
		atGateway := d.Location.Hostname() == c.gateway.String()
		if v2, _ := internetgateway2.NewWANIPConnection2ClientsFromRootDevice(d.Root, d.Location); len(v2) > 0 {
			if atGateway {
				return v2[0], "IGDv2", nil
			}
			found, version = v2[0], "IGDv2"
			continue
		}
		if found != nil {
			continue
		}
		if v1, _ := internetgateway2.NewWANIPConnection1ClientsFromRootDevice(d.Root, d.Location); len(v1) > 0 {
			found, version = v1[0], "IGDv1"
		} else if ppp, _ := internetgateway2.NewWANPPPConnection1ClientsFromRootDevice(d.Root, d.Location); len(ppp) > 0 {
			found, version = ppp[0], "IGDv1 (PPP)"
		}
		if found != nil && atGateway {
			return found, version, nil
		}
	}
	if found == nil {
		return nil, "", ErrNoIGD
	}
	return found, version, nil
}

func (c *upnpClient) add(ctx context.Context, internal netip.AddrPort, want uint16, lease time.Duration) (Mapping, error) {
	if c.svc == nil {
		svc, v, err := c.discover(ctx)
		if err != nil {
			return Mapping{}, err
		}
		c.svc, c.version = svc, v
	}
	extIP, err := c.svc.GetExternalIPAddressCtx(ctx)
	if err != nil {
		c.svc = nil // discover again next time: the router may have rebooted
		return Mapping{}, fmt.Errorf("portmap: UPnP external address: %w", err)
	}
	ext, err := netip.ParseAddr(strings.TrimSpace(extIP))
	if err != nil {
		return Mapping{}, fmt.Errorf("portmap: UPnP external address %q: %w", extIP, err)
	}
	secs := uint32(lease / time.Second)
	port := want
	for attempt := 0; ; attempt++ {
		err = c.svc.AddPortMappingCtx(ctx, "", port, "UDP", internal.Port(), internal.Addr().String(), true, mappingDescription, secs)
		switch code := upnpErrorCode(err); {
		case err == nil:
			return Mapping{External: netip.AddrPortFrom(ext, port), Lifetime: time.Duration(secs) * time.Second,
				Detail: c.version}, nil
		case code == 725 && secs != 0:
			// OnlyPermanentLeasesSupported (common on IGD v1): a lease of
			// 0; the agent removes it when it stops.
			secs = 0
		case code == 724:
			return Mapping{}, fmt.Errorf("portmap: UPnP: the router maps only to the same port, and %d is taken", want)
		case code == 718 && attempt < 4:
			// ConflictInMappingEntry: another host holds the port; try a
			// random one.
			port = uint16(20000 + rand.IntN(40000))
		default:
			c.svc = nil
			return Mapping{}, fmt.Errorf("portmap: UPnP AddPortMapping: %w", err)
		}
	}
}

func (c *upnpClient) remove(ctx context.Context, m Mapping) error {
	if c.svc == nil {
		return ErrNoIGD
	}
	return c.svc.DeletePortMappingCtx(ctx, "", m.External.Port(), "UDP")
}

// upnpErrorCode returns the UPnP error code in a SOAP fault, or 0.
func upnpErrorCode(err error) int {
	var fe *soap.SOAPFaultError
	if errors.As(err, &fe) {
		return fe.Detail.UPnPError.Errorcode
	}
	return 0
}
