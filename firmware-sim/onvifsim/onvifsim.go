// Package onvifsim makes the simulated recorder answer ONVIF as real ones do:
// WS-Discovery probes on UDP 3702 (multicast on a LAN, unicast too), and the
// Device and Media services over HTTP with WS-Security UsernameToken
// authentication, returning the simulator's real RTSP URLs, so that
// `device-agent discover` and `onvif:` in agent.yaml can be tested against it.
package onvifsim

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/peercam/peercam/internal/onvif"
)

// Stream describes one channel's stream for GetProfiles.
type Stream struct {
	// URL is the RTSP URL without credentials, as cameras return it.
	URL           string
	Encoding      string // H264 or H265
	Width, Height int
}

// Config describes the ONVIF side of the simulator.
type Config struct {
	// HTTP serves the Device and Media services.
	HTTP net.Listener
	// Discovery, when set, answers WS-Discovery probes; Group joins the
	// ONVIF multicast group on every multicast interface as well.
	Discovery net.PacketConn
	Group     bool
	User      string
	Pass      string
	Channels  int
	// StreamOf returns channel's main or sub stream.
	StreamOf func(channel int, kind string) Stream
	// ISAPI, when set, serves /ISAPI/ beside the ONVIF services, on one web
	// server as a Hikvision camera has.
	ISAPI  http.Handler
	Logger *slog.Logger
}

// Server is a running ONVIF face.
type Server struct {
	cfg  Config
	log  *slog.Logger
	http *http.Server
	uuid string
}

// Start serves until Close.
func Start(cfg Config) (*Server, error) {
	if cfg.HTTP == nil || cfg.StreamOf == nil {
		return nil, errors.New("onvifsim: HTTP listener and StreamOf are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	sum := sha256.Sum256([]byte(cfg.HTTP.Addr().String()))
	s := &Server{cfg: cfg, log: cfg.Logger.With("component", "onvif"),
		uuid: fmt.Sprintf("%x-%x-%x-%x-%x", sum[0:4], sum[4:6], sum[6:8], sum[8:10], sum[10:16])}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /onvif/device_service", s.serve)
	mux.HandleFunc("POST /onvif/media_service", s.serve)
	if cfg.ISAPI != nil {
		mux.Handle("/ISAPI/", cfg.ISAPI)
	}
	s.http = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = s.http.Serve(cfg.HTTP) }()
	if cfg.Discovery != nil {
		if cfg.Group {
			if err := joinGroup(cfg.Discovery); err != nil {
				s.log.Warn("WS-Discovery: could not join the multicast group; answering unicast probes only", "err", err)
			}
		}
		go s.discovery()
	}
	return s, nil
}

// Close stops both services.
func (s *Server) Close() {
	_ = s.http.Close()
	if s.cfg.Discovery != nil {
		_ = s.cfg.Discovery.Close()
	}
}

// DeviceURL is the device service URL.
func (s *Server) DeviceURL() string {
	return "http://" + s.cfg.HTTP.Addr().String() + "/onvif/device_service"
}

// joinGroup joins 239.255.255.250 on every up, multicast-capable interface.
func joinGroup(c net.PacketConn) error {
	p := ipv4.NewPacketConn(c)
	ifs, err := net.Interfaces()
	if err != nil {
		return err
	}
	joined := 0
	for _, ifi := range ifs {
		if ifi.Flags&net.FlagUp == 0 || ifi.Flags&net.FlagMulticast == 0 {
			continue
		}
		if p.JoinGroup(&ifi, &net.UDPAddr{IP: net.IPv4(239, 255, 255, 250)}) == nil {
			joined++
		}
	}
	if joined == 0 {
		return errors.New("no multicast interface")
	}
	return nil
}

func (s *Server) discovery() {
	buf := make([]byte, 64<<10)
	for {
		n, from, err := s.cfg.Discovery.ReadFrom(buf)
		if err != nil {
			return
		}
		id, ok := onvif.ParseProbe(buf[:n])
		if !ok {
			continue
		}
		xaddr := s.DeviceURL()
		if ua, ok := from.(*net.UDPAddr); ok {
			xaddr = s.xaddrFor(ua.IP)
		}
		msg := onvif.ProbeMatches(id, onvif.ProbeMatch{Address: "urn:uuid:" + s.uuid, XAddrs: []string{xaddr},
			Scopes: []string{"onvif://www.onvif.org/type/video_encoder", "onvif://www.onvif.org/name/PeerCam_firmware-sim",
				"onvif://www.onvif.org/hardware/NVR"}})
		_, _ = s.cfg.Discovery.WriteTo(msg, from)
	}
}

// xaddrFor names the HTTP service at an address the prober can reach: the
// listener's own address, or, when it listens on all addresses, the local
// address that routes to the prober.
func (s *Server) xaddrFor(peer net.IP) string {
	addr := s.cfg.HTTP.Addr().(*net.TCPAddr)
	if !addr.IP.IsUnspecified() {
		return s.DeviceURL()
	}
	c, err := net.Dial("udp", net.JoinHostPort(peer.String(), "9"))
	if err != nil {
		return s.DeviceURL()
	}
	defer c.Close()
	ip := c.LocalAddr().(*net.UDPAddr).IP
	return fmt.Sprintf("http://%s/onvif/device_service", net.JoinHostPort(ip.String(), fmt.Sprint(addr.Port)))
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		return
	}
	req, err := onvif.ParseRequest(b)
	if err != nil {
		fault(w, http.StatusBadRequest, "ter:WellFormed", "The request is not a SOAP envelope.")
		return
	}
	if req.Action != "GetSystemDateAndTime" && !req.Token.Check(s.cfg.User, s.cfg.Pass, time.Now(), 5*time.Minute) {
		s.log.Info("ONVIF request refused: wrong or missing credentials", "action", req.Action, "remote", r.RemoteAddr)
		fault(w, http.StatusBadRequest, "ter:NotAuthorized", "Sender not authorized.")
		return
	}
	base := "http://" + r.Host
	var body string
	switch req.Action {
	case "GetSystemDateAndTime":
		now := time.Now().UTC()
		body = fmt.Sprintf(`<tds:GetSystemDateAndTimeResponse><tds:SystemDateAndTime><tt:DateTimeType>NTP</tt:DateTimeType><tt:UTCDateTime>`+
			`<tt:Time><tt:Hour>%d</tt:Hour><tt:Minute>%d</tt:Minute><tt:Second>%d</tt:Second></tt:Time>`+
			`<tt:Date><tt:Year>%d</tt:Year><tt:Month>%d</tt:Month><tt:Day>%d</tt:Day></tt:Date></tt:UTCDateTime></tds:SystemDateAndTime></tds:GetSystemDateAndTimeResponse>`,
			now.Hour(), now.Minute(), now.Second(), now.Year(), now.Month(), now.Day())
	case "GetDeviceInformation":
		body = `<tds:GetDeviceInformationResponse><tds:Manufacturer>PeerCam</tds:Manufacturer><tds:Model>firmware-sim NVR</tds:Model>` +
			`<tds:FirmwareVersion>1.0</tds:FirmwareVersion><tds:SerialNumber>SIM-` + s.uuid[:8] + `</tds:SerialNumber><tds:HardwareId>sim</tds:HardwareId></tds:GetDeviceInformationResponse>`
	case "GetCapabilities":
		body = `<tds:GetCapabilitiesResponse><tds:Capabilities><tt:Device><tt:XAddr>` + base + `/onvif/device_service</tt:XAddr></tt:Device>` +
			`<tt:Media><tt:XAddr>` + base + `/onvif/media_service</tt:XAddr><tt:StreamingCapabilities><tt:RTPMulticast>false</tt:RTPMulticast>` +
			`<tt:RTP_TCP>true</tt:RTP_TCP><tt:RTP_RTSP_TCP>true</tt:RTP_RTSP_TCP></tt:StreamingCapabilities></tt:Media></tds:Capabilities></tds:GetCapabilitiesResponse>`
	case "GetProfiles":
		var sb strings.Builder
		sb.WriteString(`<trt:GetProfilesResponse>`)
		for ch := 1; ch <= s.cfg.Channels; ch++ {
			for _, kind := range []string{"main", "sub"} {
				st := s.cfg.StreamOf(ch, kind)
				fmt.Fprintf(&sb, `<trt:Profiles token="ch%d_%s" fixed="true"><tt:Name>Channel %d %s</tt:Name>`+
					`<tt:VideoSourceConfiguration token="vsc%d"><tt:Name>Channel %d</tt:Name><tt:UseCount>2</tt:UseCount><tt:SourceToken>ch%d</tt:SourceToken>`+
					`<tt:Bounds x="0" y="0" width="%d" height="%d"/></tt:VideoSourceConfiguration>`+
					`<tt:VideoEncoderConfiguration token="vec%d_%s"><tt:Name>%s</tt:Name><tt:UseCount>1</tt:UseCount><tt:Encoding>%s</tt:Encoding>`+
					`<tt:Resolution><tt:Width>%d</tt:Width><tt:Height>%d</tt:Height></tt:Resolution><tt:Quality>5</tt:Quality></tt:VideoEncoderConfiguration></trt:Profiles>`,
					ch, kind, ch, kind, ch, ch, ch, st.Width, st.Height, ch, kind, kind, st.Encoding, st.Width, st.Height)
			}
		}
		sb.WriteString(`</trt:GetProfilesResponse>`)
		body = sb.String()
	case "GetStreamUri":
		var ch int
		var kind string
		if _, err := fmt.Sscanf(strings.Replace(req.ProfileToken, "_", " ", 1), "ch%d %s", &ch, &kind); err != nil ||
			ch < 1 || ch > s.cfg.Channels || (kind != "main" && kind != "sub") {
			fault(w, http.StatusBadRequest, "ter:InvalidArgVal", "No such profile.")
			return
		}
		body = `<trt:GetStreamUriResponse><trt:MediaUri><tt:Uri>` + s.cfg.StreamOf(ch, kind).URL + `</tt:Uri>` +
			`<tt:InvalidAfterConnect>false</tt:InvalidAfterConnect><tt:InvalidAfterReboot>false</tt:InvalidAfterReboot><tt:Timeout>PT0S</tt:Timeout></trt:MediaUri></trt:GetStreamUriResponse>`
	default:
		fault(w, http.StatusBadRequest, "ter:ActionNotSupported", "The simulator does not implement "+req.Action+".")
		return
	}
	w.Header().Set("Content-Type", "application/soap+xml; charset=utf-8")
	_, _ = io.WriteString(w, onvif.Envelope("", body))
}

func fault(w http.ResponseWriter, status int, subcode, reason string) {
	w.Header().Set("Content-Type", "application/soap+xml; charset=utf-8")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, onvif.Envelope("", `<s:Fault><s:Code><s:Value>s:Sender</s:Value><s:Subcode><s:Value>`+subcode+
		`</s:Value></s:Subcode></s:Code><s:Reason><s:Text xml:lang="en">`+reason+`</s:Text></s:Reason></s:Fault>`))
}
