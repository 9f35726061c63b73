package onvif

import (
	"context"
	"crypto/rand"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Client calls one device's ONVIF services.
type Client struct {
	// Device is the device service URL (an XAddr from discovery, or
	// http://host/onvif/device_service).
	Device string
	User   string
	Pass   string
	HTTP   *http.Client
	// Now is the time for UsernameToken; nil is time.Now.
	Now func() time.Time

	media string // the Media service URL, once known
}

// DeviceURL is the usual device service URL of a host ("192.168.1.10" or
// "192.168.1.10:8000"), as most cameras serve it.
func DeviceURL(host string) string {
	if strings.Contains(host, "://") {
		return host
	}
	return "http://" + host + "/onvif/device_service"
}

func (c *Client) call(ctx context.Context, endpoint, body string, out any) error {
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 5 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint,
		strings.NewReader(Envelope(securityHeader(c.User, c.Pass, now()), body)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", `application/soap+xml; charset=utf-8`)
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("onvif: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("onvif: %w", err)
	}
	var env struct {
		Body struct {
			Fault *struct {
				Code struct {
					Value   string `xml:"Value"`
					Subcode struct {
						Value string `xml:"Value"`
					} `xml:"Subcode"`
				} `xml:"Code"`
				Reason struct {
					Text string `xml:"Text"`
				} `xml:"Reason"`
			} `xml:"Fault"`
			Inner []byte `xml:",innerxml"`
		} `xml:"Body"`
	}
	if err := xml.Unmarshal(b, &env); err != nil {
		if resp.StatusCode == http.StatusUnauthorized {
			return ErrAuth
		}
		return fmt.Errorf("onvif: %s answered HTTP %d without SOAP: %w", endpoint, resp.StatusCode, err)
	}
	if f := env.Body.Fault; f != nil {
		if strings.Contains(f.Code.Subcode.Value, "NotAuthorized") || strings.Contains(f.Code.Subcode.Value, "FailedAuthentication") ||
			resp.StatusCode == http.StatusUnauthorized {
			return ErrAuth
		}
		return fmt.Errorf("%w: %s %s", ErrFault, f.Code.Subcode.Value, f.Reason.Text)
	}
	if resp.StatusCode == http.StatusUnauthorized {
		return ErrAuth
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("onvif: %s answered HTTP %d", endpoint, resp.StatusCode)
	}
	return xml.Unmarshal(append(append([]byte("<b>"), env.Body.Inner...), "</b>"...), out)
}

// DeviceInformation asks the device for its make, model and serial.
func (c *Client) DeviceInformation(ctx context.Context) (DeviceInfo, error) {
	var out struct {
		R DeviceInfo `xml:"GetDeviceInformationResponse"`
	}
	err := c.call(ctx, c.Device, `<tds:GetDeviceInformation/>`, &out)
	return out.R, err
}

// mediaURL finds the Media service through GetCapabilities.
func (c *Client) mediaURL(ctx context.Context) (string, error) {
	if c.media != "" {
		return c.media, nil
	}
	var out struct {
		R struct {
			Media struct {
				XAddr string `xml:"XAddr"`
			} `xml:"Capabilities>Media"`
		} `xml:"GetCapabilitiesResponse"`
	}
	if err := c.call(ctx, c.Device, `<tds:GetCapabilities><tds:Category>Media</tds:Category></tds:GetCapabilities>`, &out); err != nil {
		return "", err
	}
	if out.R.Media.XAddr == "" {
		return "", fmt.Errorf("onvif: %s has no Media service", c.Device)
	}
	c.media = out.R.Media.XAddr
	return c.media, nil
}

// Profiles lists the device's media profiles.
func (c *Client) Profiles(ctx context.Context) ([]Profile, error) {
	media, err := c.mediaURL(ctx)
	if err != nil {
		return nil, err
	}
	var out struct {
		R struct {
			Profiles []struct {
				Token  string `xml:"token,attr"`
				Name   string `xml:"Name"`
				Source struct {
					SourceToken string `xml:"SourceToken"`
				} `xml:"VideoSourceConfiguration"`
				Encoder struct {
					Encoding   string `xml:"Encoding"`
					Resolution struct {
						Width  int `xml:"Width"`
						Height int `xml:"Height"`
					} `xml:"Resolution"`
				} `xml:"VideoEncoderConfiguration"`
			} `xml:"Profiles"`
		} `xml:"GetProfilesResponse"`
	}
	if err := c.call(ctx, media, `<trt:GetProfiles/>`, &out); err != nil {
		return nil, err
	}
	var ps []Profile
	for _, p := range out.R.Profiles {
		ps = append(ps, Profile{Token: p.Token, Name: p.Name, Source: p.Source.SourceToken, Encoding: strings.ToUpper(p.Encoder.Encoding),
			Width: p.Encoder.Resolution.Width, Height: p.Encoder.Resolution.Height})
	}
	return ps, nil
}

// StreamURI returns a profile's RTSP URL (RTP over RTSP, unicast), with the
// client's credentials put in, as the agent's config wants it.
func (c *Client) StreamURI(ctx context.Context, profile string) (string, error) {
	media, err := c.mediaURL(ctx)
	if err != nil {
		return "", err
	}
	var out struct {
		R struct {
			URI string `xml:"MediaUri>Uri"`
		} `xml:"GetStreamUriResponse"`
	}
	body := `<trt:GetStreamUri><trt:StreamSetup><tt:Stream>RTP-Unicast</tt:Stream><tt:Transport><tt:Protocol>RTSP</tt:Protocol></tt:Transport></trt:StreamSetup>` +
		`<trt:ProfileToken>` + escape(profile) + `</trt:ProfileToken></trt:GetStreamUri>`
	if err := c.call(ctx, media, body, &out); err != nil {
		return "", err
	}
	u, err := url.Parse(strings.TrimSpace(out.R.URI))
	if err != nil || u.Scheme == "" {
		return "", fmt.Errorf("onvif: profile %s: stream URI %q is not a URL", profile, out.R.URI)
	}
	if c.User != "" && u.User == nil {
		u.User = url.UserPassword(c.User, c.Pass)
	}
	return u.String(), nil
}

// Camera is one video source with its main and (optional) sub stream.
type Camera struct {
	Source   string
	Main     Profile
	MainURL  string
	Sub      *Profile
	SubURL   string
	Encoding string
}

// Cameras groups the device's profiles by video source, the largest one
// each source's main stream and the smallest its sub stream, and resolves
// their RTSP URLs. Sources come in the order the device lists them.
func (c *Client) Cameras(ctx context.Context) ([]Camera, error) {
	ps, err := c.Profiles(ctx)
	if err != nil {
		return nil, err
	}
	var order []string
	by := map[string][]Profile{}
	for _, p := range ps {
		if p.Encoding != "H264" && p.Encoding != "H265" {
			continue // JPEG and the like: nothing a browser plays over WebRTC
		}
		if _, ok := by[p.Source]; !ok {
			order = append(order, p.Source)
		}
		by[p.Source] = append(by[p.Source], p)
	}
	var cams []Camera
	for _, src := range order {
		list := by[src]
		main, sub := list[0], list[0]
		for _, p := range list[1:] {
			if p.Width*p.Height > main.Width*main.Height {
				main = p
			}
			if p.Width*p.Height < sub.Width*sub.Height {
				sub = p
			}
		}
		cam := Camera{Source: src, Main: main, Encoding: main.Encoding}
		if cam.MainURL, err = c.StreamURI(ctx, main.Token); err != nil {
			return nil, err
		}
		if sub.Token != main.Token {
			s := sub
			cam.Sub = &s
			if cam.SubURL, err = c.StreamURI(ctx, sub.Token); err != nil {
				return nil, err
			}
		}
		cams = append(cams, cam)
	}
	return cams, nil
}

// probeBody is a WS-Discovery Probe for ONVIF video transmitters.
func probeBody(id string) string {
	return `<?xml version="1.0" encoding="UTF-8"?>` +
		`<s:Envelope xmlns:s="` + NSEnvelope + `" xmlns:a="` + NSAddress + `" xmlns:d="` + NSDiscovery + `" xmlns:dn="` + NSNetwork + `">` +
		`<s:Header><a:Action s:mustUnderstand="1">http://schemas.xmlsoap.org/ws/2005/04/discovery/Probe</a:Action>` +
		`<a:MessageID>urn:uuid:` + id + `</a:MessageID><a:ReplyTo><a:Address>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:Address></a:ReplyTo>` +
		`<a:To s:mustUnderstand="1">urn:schemas-xmlsoap-org:ws:2005:04:discovery</a:To></s:Header>` +
		`<s:Body><d:Probe><d:Types>dn:NetworkVideoTransmitter</d:Types></d:Probe></s:Body></s:Envelope>`
}

// ProbeMessage returns a new Probe and its MessageID.
func ProbeMessage() (msg []byte, id string) {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6], b[8] = b[6]&0x0f|0x40, b[8]&0x3f|0x80
	id = fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
	return []byte(probeBody(id)), id
}

// ParseProbe tells whether b is a WS-Discovery Probe and returns its
// MessageID.
func ParseProbe(b []byte) (id string, ok bool) {
	var env struct {
		Header struct {
			MessageID string `xml:"MessageID"`
		} `xml:"Header"`
		Body struct {
			Probe *struct{} `xml:"Probe"`
		} `xml:"Body"`
	}
	if xml.Unmarshal(b, &env) != nil || env.Body.Probe == nil {
		return "", false
	}
	return env.Header.MessageID, true
}

// ProbeMatches builds the answer to the probe relatesTo, naming one device.
func ProbeMatches(relatesTo string, m ProbeMatch) []byte {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return []byte(`<?xml version="1.0" encoding="UTF-8"?>` +
		`<s:Envelope xmlns:s="` + NSEnvelope + `" xmlns:a="` + NSAddress + `" xmlns:d="` + NSDiscovery + `" xmlns:dn="` + NSNetwork + `">` +
		`<s:Header><a:Action>http://schemas.xmlsoap.org/ws/2005/04/discovery/ProbeMatches</a:Action>` +
		fmt.Sprintf(`<a:MessageID>urn:uuid:%x</a:MessageID>`, b) +
		`<a:RelatesTo>` + escape(relatesTo) + `</a:RelatesTo><a:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:To></s:Header>` +
		`<s:Body><d:ProbeMatches><d:ProbeMatch><a:EndpointReference><a:Address>` + escape(m.Address) + `</a:Address></a:EndpointReference>` +
		`<d:Types>dn:NetworkVideoTransmitter</d:Types><d:Scopes>` + escape(strings.Join(m.Scopes, " ")) + `</d:Scopes>` +
		`<d:XAddrs>` + escape(strings.Join(m.XAddrs, " ")) + `</d:XAddrs><d:MetadataVersion>1</d:MetadataVersion></d:ProbeMatch></d:ProbeMatches></s:Body></s:Envelope>`)
}

// ParseProbeMatches reads a ProbeMatches answer to the probe id.
func ParseProbeMatches(b []byte, id string) ([]ProbeMatch, bool) {
	var env struct {
		Header struct {
			RelatesTo string `xml:"RelatesTo"`
		} `xml:"Header"`
		Body struct {
			Matches []struct {
				Address string `xml:"EndpointReference>Address"`
				Scopes  string `xml:"Scopes"`
				XAddrs  string `xml:"XAddrs"`
			} `xml:"ProbeMatches>ProbeMatch"`
		} `xml:"Body"`
	}
	if xml.Unmarshal(b, &env) != nil || !strings.HasSuffix(env.Header.RelatesTo, id) {
		return nil, false
	}
	var out []ProbeMatch
	for _, m := range env.Body.Matches {
		out = append(out, ProbeMatch{Address: m.Address, Scopes: strings.Fields(m.Scopes), XAddrs: strings.Fields(m.XAddrs)})
	}
	return out, true
}

// Discover sends a probe from conn to dst (the multicast group
// 239.255.255.250:3702 on a LAN, or one device's address) and collects the
// devices that answer within wait, once each.
func Discover(ctx context.Context, conn net.PacketConn, dst net.Addr, wait time.Duration) ([]ProbeMatch, error) {
	msg, id := ProbeMessage()
	if _, err := conn.WriteTo(msg, dst); err != nil {
		return nil, fmt.Errorf("onvif: probe: %w", err)
	}
	deadline := time.Now().Add(wait)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = conn.SetReadDeadline(deadline)
	seen := map[string]bool{}
	var out []ProbeMatch
	buf := make([]byte, 64<<10)
	for {
		n, _, err := conn.ReadFrom(buf)
		if err != nil {
			break // the deadline: done
		}
		ms, ok := ParseProbeMatches(buf[:n], id) // it copies what it keeps
		if !ok {
			continue
		}
		for _, m := range ms {
			key := m.Address + strings.Join(m.XAddrs, " ")
			if !seen[key] {
				seen[key] = true
				out = append(out, m)
			}
		}
	}
	return out, nil
}
