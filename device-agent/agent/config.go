package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/peercam/peercam/device-agent/internal/portmap"
)

// Config is the agent's configuration, read from YAML, then the environment
// (PEERCAM_RENDEZVOUS, PEERCAM_STATE_DIR, PEERCAM_WEBRTC_LISTEN), then flags.
type Config struct {
	// Rendezvous is the rendezvous base URL: https://host[:port], or
	// http:// to a loopback address (a rendezvous on the same box).
	Rendezvous string `yaml:"rendezvous"`
	// InsecureRendezvous allows http:// to any address, for labs and tests
	// on a private network: whoever sits on the path could then speak for
	// the rendezvous, so the agent says so loudly at start.
	InsecureRendezvous bool `yaml:"insecure_rendezvous"`
	// StateDir holds the device key and the pinned rendezvous key. Default
	// "peercam-state". It is the only place the agent writes.
	StateDir string `yaml:"state_dir"`
	// WebRTCListen is the one UDP address for all WebRTC traffic. Default
	// 0.0.0.0:8189.
	WebRTCListen string `yaml:"webrtc_listen"`
	// PortMapping asks the home router to forward WebRTC's UDP port, so
	// viewers behind any NAT reach the agent directly: "auto" (default)
	// tries PCP, NAT-PMP and UPnP IGD in turn, "off" never asks, and a
	// list such as "upnp,natpmp" tries only those.
	PortMapping string `yaml:"port_mapping"`
	// PortMappingLease is the lease asked of the router, renewed at half
	// of what it grants. Default 2h.
	PortMappingLease time.Duration `yaml:"port_mapping_lease"`
	// RTSPTransport is tcp (default), udp or auto.
	RTSPTransport string `yaml:"rtsp_transport"`
	// Linger keeps a camera stream open after its last viewer. Default 30s.
	Linger time.Duration `yaml:"linger"`
	// WarmSubStreams keeps every camera's sub stream pulled with no
	// viewers (about 0.3-0.5 Mbit/s each on the LAN): a viewer of a main
	// stream nobody is watching starts at once on the sub stream's cached
	// picture and moves to the main stream at its first keyframe, on the
	// same track, instead of waiting up to a keyframe interval. Default
	// true; false pulls sub streams only while they are watched (for
	// recorders that allow few RTSP sessions).
	WarmSubStreams bool `yaml:"warm_sub_streams"`
	// KeyframeRequests asks a camera for a keyframe when its stream starts
	// and when a viewer joins a stream with no picture cached: RTCP PLI and
	// FIR on the RTSP session, and Hikvision's ISAPI requestKeyFrame for
	// cameras with isapi set. Default true.
	KeyframeRequests bool `yaml:"keyframe_requests"`
	// MaxViewers caps concurrent viewers on this box. Default 16.
	MaxViewers int `yaml:"max_viewers"`
	// MaxViewersPerCamera caps concurrent viewers of one camera (main and
	// sub together). Default 0: only max_viewers applies.
	MaxViewersPerCamera int `yaml:"max_viewers_per_camera"`
	// ViewerQueueFrames bounds each viewer's frame queue; a viewer that
	// falls this far behind drops frames until the next keyframe. Default
	// 600 (a 4 s GOP at 30 fps with audio, and room to spare).
	ViewerQueueFrames int `yaml:"viewer_queue_frames"`
	// LogLevel is debug, info (default), warn or error.
	LogLevel string `yaml:"log_level"`
	// LogFile, when set, sends the log to this file instead of stderr, kept
	// under LogMaxSize with one older file beside it (its name gets a time
	// stamp). Recorders have a few MB of flash that wears out: the default
	// is stderr only.
	LogFile string `yaml:"log_file"`
	// LogMaxSize caps LogFile, in whole MiB. Default 1MiB.
	LogMaxSize Size `yaml:"log_max_size"`
	// MemoryLimit is the Go runtime's soft memory limit (GOMEMLIMIT): near
	// it, the garbage collector works harder instead of letting the heap
	// grow. Default 48MiB, which leaves room on a 128 MB recorder; "off"
	// removes it.
	MemoryLimit Size `yaml:"memory_limit"`
	// MetricsListen, when set, serves Prometheus metrics over plain HTTP at
	// /metrics on this address, e.g. 127.0.0.1:9108 (a bare :9108 means
	// loopback). Off by default. The figures name cameras, not secrets, but
	// they are nobody else's business: a non-loopback address is refused
	// unless metrics_public is true.
	MetricsListen string `yaml:"metrics_listen"`
	MetricsPublic bool   `yaml:"metrics_public"`
	// RendezvousCA is an optional PEM file of CA certificates to trust for
	// the rendezvous, for a self-hosted one with its own CA. Without it the
	// system's roots are used, or a built-in set where the box has none.
	RendezvousCA string `yaml:"rendezvous_ca"`

	// SystemClock reads the box's clock; tests set a wrong one. Nil is
	// time.Now.
	SystemClock func() time.Time `yaml:"-"`
	// SummaryEvery is how often malformed camera input is summarised in
	// the log; one minute unless set (tests).
	SummaryEvery time.Duration `yaml:"-"`
	// Cameras lists single cameras.
	Cameras []CameraConfig `yaml:"cameras"`
	// NVR describes a recorder whose channels follow one URL pattern.
	NVR *NVRConfig `yaml:"nvr"`
	// ONVIF lists cameras and recorders whose streams the agent looks up
	// itself (ONVIF Media service), after the cameras above.
	ONVIF ONVIFList `yaml:"onvif"`
	// ONVIFProbe is where onvif: auto sends its WS-Discovery probe; the
	// LAN's multicast group unless set (tests).
	ONVIFProbe string `yaml:"-"`
}

// CameraConfig is one camera.
type CameraConfig struct {
	// ID is how viewers and tokens name the camera. Default: its position,
	// counting from 1.
	ID   string `yaml:"id"`
	Name string `yaml:"name"`
	// URL is the main stream, with credentials: rtsp://user:pass@host/path.
	URL string `yaml:"url"`
	// SubURL is the optional lower-resolution stream.
	SubURL string `yaml:"sub_url"`
	// AlwaysOn keeps the main stream pulled with no viewers, so the first
	// viewer gets a picture at once.
	AlwaysOn bool `yaml:"always_on"`
	// ISAPI is the camera's web address (http://192.168.1.64) when it
	// speaks Hikvision's ISAPI: keyframe requests go there too, signed
	// with the RTSP URL's user and password. It needs a Hikvision RTSP
	// path (/Streaming/Channels/101), which names the channel.
	ISAPI string `yaml:"isapi"`
}

// NVRConfig is a multi-channel recorder. "{channel}" in the URLs and the name
// becomes the channel number.
type NVRConfig struct {
	URL      string `yaml:"url"`
	SubURL   string `yaml:"sub_url"`
	Channels int    `yaml:"channels"`
	// Name defaults to "Channel {channel}".
	Name     string `yaml:"name"`
	AlwaysOn bool   `yaml:"always_on"`
	// ISAPI is the recorder's web address, as for a camera.
	ISAPI string `yaml:"isapi"`
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{StateDir: "peercam-state", WebRTCListen: "0.0.0.0:8189", RTSPTransport: "tcp",
		PortMapping: "auto", PortMappingLease: 2 * time.Hour,
		Linger: 30 * time.Second, WarmSubStreams: true, KeyframeRequests: true, MaxViewers: 16, ViewerQueueFrames: 600, LogLevel: "info", LogMaxSize: 1 << 20, MemoryLimit: 48 << 20}
}

// LoadConfig reads a YAML file over the defaults, then the environment
// (PEERCAM_* and GOMEMLIMIT).
// Unknown keys are errors: a typo must not silently drop a camera.
func LoadConfig(path string) (Config, error) {
	cfg := DefaultConfig()
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return cfg, fmt.Errorf("agent: config: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
			return cfg, fmt.Errorf("agent: config %s: %w", path, err)
		}
	}
	if v := os.Getenv("PEERCAM_RENDEZVOUS"); v != "" {
		cfg.Rendezvous = v
	}
	if v := os.Getenv("PEERCAM_STATE_DIR"); v != "" {
		cfg.StateDir = v
	}
	if v := os.Getenv("PEERCAM_WEBRTC_LISTEN"); v != "" {
		cfg.WebRTCListen = v
	}
	if v := os.Getenv("GOMEMLIMIT"); v != "" {
		if err := cfg.MemoryLimit.UnmarshalText([]byte(v)); err != nil {
			return cfg, fmt.Errorf("agent: GOMEMLIMIT: %w", err)
		}
	}
	return cfg, nil
}

// Camera is a resolved camera: config entries and NVR channels alike.
type Camera struct {
	ID, Name, URL, SubURL string
	AlwaysOn              bool
	// ISAPI is the camera's web address for ISAPI keyframe requests.
	ISAPI string
}

// Validate checks the config and names the field at fault.
func (c Config) Validate() error {
	if c.Rendezvous == "" {
		return errors.New("agent: rendezvous: missing URL (e.g. https://rendezvous.example.net)")
	}
	u, err := url.Parse(c.Rendezvous)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("agent: rendezvous: %q is not an http(s) URL", c.Rendezvous)
	}
	if u.Scheme == "http" && !loopbackHost(u.Hostname()) && !c.InsecureRendezvous {
		return fmt.Errorf("agent: rendezvous: %q is plain http to a non-loopback address: anyone on the path could impersonate the server; use https://, or set insecure_rendezvous: true for a lab", c.Rendezvous)
	}
	if c.StateDir == "" {
		return errors.New("agent: state_dir: missing directory")
	}
	if _, _, err := net.SplitHostPort(c.WebRTCListen); err != nil {
		return fmt.Errorf("agent: webrtc_listen: %w", err)
	}
	if _, err := portmap.ParseProtocols(c.PortMapping); err != nil {
		return fmt.Errorf("agent: port_mapping: %w", err)
	}
	if c.PortMappingLease < 2*time.Second {
		return fmt.Errorf("agent: port_mapping_lease: %s is too short; the default is 2h", c.PortMappingLease)
	}
	switch c.RTSPTransport {
	case "tcp", "udp", "auto":
	default:
		return fmt.Errorf("agent: rtsp_transport: %q is not tcp, udp or auto", c.RTSPTransport)
	}
	if c.MetricsListen != "" {
		host, _, err := net.SplitHostPort(c.MetricsListen)
		if err != nil {
			return fmt.Errorf("agent: metrics_listen: %w (e.g. 127.0.0.1:9108)", err)
		}
		if host != "" && !loopbackHost(host) && !c.MetricsPublic {
			return fmt.Errorf("agent: metrics_listen: %s is not a loopback address; scrape through a tunnel, or set metrics_public: true to serve it on the network", c.MetricsListen)
		}
	}
	if c.MemoryLimit != 0 && c.MemoryLimit < 16<<20 {
		return fmt.Errorf("agent: memory_limit: %s is too small to serve video; use at least 16MiB, or off", c.MemoryLimit)
	}
	if c.LogFile != "" && (c.LogMaxSize < 1<<20 || c.LogMaxSize%(1<<20) != 0) {
		return fmt.Errorf("agent: log_max_size: %s: use whole MiB, at least 1MiB", c.LogMaxSize)
	}
	if c.MaxViewersPerCamera < 0 || (c.MaxViewersPerCamera > c.MaxViewers && c.MaxViewers >= 1) {
		return fmt.Errorf("agent: max_viewers_per_camera: %d must be between 0 (no separate cap) and max_viewers (%d)", c.MaxViewersPerCamera, c.MaxViewers)
	}
	if c.ViewerQueueFrames < 30 || c.ViewerQueueFrames > 10000 {
		return fmt.Errorf("agent: viewer_queue_frames: %d must be between 30 and 10000 (default 600)", c.ViewerQueueFrames)
	}
	if c.MaxViewers < 1 {
		return fmt.Errorf("agent: max_viewers: %d must be at least 1", c.MaxViewers)
	}
	if len(c.Cameras) == 0 && c.NVR == nil && len(c.ONVIF) == 0 {
		return errors.New("agent: cameras: none configured; add a cameras list, an nvr entry or onvif (device-agent discover finds them)")
	}
	for i, o := range c.ONVIF {
		if strings.TrimSpace(o.Host) == "" {
			return fmt.Errorf("agent: onvif[%d].host: missing (an address such as 192.168.1.10, or auto)", i)
		}
	}
	for i, cam := range c.Cameras {
		if err := checkRTSP(cam.URL); err != nil {
			return fmt.Errorf("agent: cameras[%d].url: %w", i, err)
		}
		if cam.SubURL != "" {
			if err := checkRTSP(cam.SubURL); err != nil {
				return fmt.Errorf("agent: cameras[%d].sub_url: %w", i, err)
			}
		}
		if err := checkISAPI(cam.ISAPI, cam.URL); err != nil {
			return fmt.Errorf("agent: cameras[%d].isapi: %w", i, err)
		}
		if strings.ContainsAny(cam.ID, "/ ?#") {
			return fmt.Errorf("agent: cameras[%d].id: %q may not contain '/', '?', '#' or spaces", i, cam.ID)
		}
	}
	if n := c.NVR; n != nil {
		if n.Channels < 1 || n.Channels > 256 {
			return fmt.Errorf("agent: nvr.channels: %d is not between 1 and 256", n.Channels)
		}
		if !strings.Contains(n.URL, "{channel}") {
			return errors.New("agent: nvr.url: must contain {channel}, e.g. rtsp://user:pass@nvr/Streaming/Channels/{channel}01")
		}
		if err := checkRTSP(strings.ReplaceAll(n.URL, "{channel}", "1")); err != nil {
			return fmt.Errorf("agent: nvr.url: %w", err)
		}
		if err := checkISAPI(n.ISAPI, strings.ReplaceAll(n.URL, "{channel}", "1")); err != nil {
			return fmt.Errorf("agent: nvr.isapi: %w", err)
		}
		if n.SubURL != "" {
			if !strings.Contains(n.SubURL, "{channel}") {
				return errors.New("agent: nvr.sub_url: must contain {channel}")
			}
			if err := checkRTSP(strings.ReplaceAll(n.SubURL, "{channel}", "1")); err != nil {
				return fmt.Errorf("agent: nvr.sub_url: %w", err)
			}
		}
	}
	seen := map[string]bool{}
	for _, cam := range c.ResolvedCameras() {
		if seen[cam.ID] {
			return fmt.Errorf("agent: cameras: id %q is used twice (NVR channels take the ids 1..%d)", cam.ID, c.nvrChannels())
		}
		seen[cam.ID] = true
	}
	return nil
}

// loopbackHost tells whether a URL host is this box itself.
func loopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// PlainHTTP tells whether the rendezvous link is unencrypted.
// Live heap the agent needs, measured (BenchmarkViewers, README
// "Performance"): a base, a warm sub stream's GOP per camera, a main
// stream's GOP for each camera watched (at most one per viewer), and each
// viewer's share (its peer connection, queue and NACK history).
const (
	heapBase      = 4 << 20
	heapPerSub    = 100 << 10
	heapPerMain   = 1 << 20
	heapPerViewer = 200 << 10
)

// MemoryAdvice says which setting to raise when max_viewers viewers of
// these cameras would not fit the memory limit with room for the garbage
// collector (the live heap at most 60% of the limit), or "".
func (c Config) MemoryAdvice() string {
	if c.MemoryLimit <= 0 {
		return ""
	}
	cams := len(c.ResolvedCameras())
	need := heapBase + cams*heapPerSub + min(cams, c.MaxViewers)*heapPerMain + c.MaxViewers*heapPerViewer
	if float64(need) <= 0.6*float64(c.MemoryLimit) {
		return ""
	}
	limit := Size((int64(need)*10/6 + (1<<20 - 1)) &^ (1<<20 - 1))
	fit := (int(0.6*float64(c.MemoryLimit)) - heapBase - cams*heapPerSub - min(cams, c.MaxViewers)*heapPerMain) / heapPerViewer
	return fmt.Sprintf("max_viewers %d with %d camera(s) needs about %s of live heap, more than memory_limit %s leaves room for: "+
		"raise memory_limit to %s, or lower max_viewers to %d; until then the garbage collector runs hot near the limit",
		c.MaxViewers, cams, Size(need), c.MemoryLimit, limit, max(fit, 1))
}

// MetricsAddr is the address metrics are served on; a bare port means
// loopback.
func (c Config) MetricsAddr() string {
	if strings.HasPrefix(c.MetricsListen, ":") {
		return "127.0.0.1" + c.MetricsListen
	}
	return c.MetricsListen
}

func (c Config) PlainHTTP() bool { return strings.HasPrefix(strings.ToLower(c.Rendezvous), "http://") }

func (c Config) nvrChannels() int {
	if c.NVR == nil {
		return 0
	}
	return c.NVR.Channels
}

// checkISAPI checks a camera's isapi address against its RTSP URL.
func checkISAPI(base, rtspURL string) error {
	if base == "" {
		return nil
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not the camera's web address (e.g. http://192.168.1.64)", base)
	}
	if ISAPIKeyframeURL(base, rtspURL) == "" {
		return fmt.Errorf("the RTSP URL's path is not Hikvision's /Streaming/Channels/<id>, so the ISAPI channel is unknown; remove isapi for this camera")
	}
	return nil
}

// ISAPIKeyframeURL is the requestKeyFrame URL for a camera whose web
// address is base and whose RTSP URL has a Hikvision path
// (/Streaming/Channels/101: channel 1, main stream); "" when either is
// missing.
func ISAPIKeyframeURL(base, rtspURL string) string {
	if base == "" {
		return ""
	}
	u, err := url.Parse(rtspURL)
	if err != nil {
		return ""
	}
	rest, ok := strings.CutPrefix(strings.ToLower(strings.Trim(u.Path, "/")), "streaming/channels/")
	id, err := strconv.Atoi(rest)
	if !ok || err != nil || id < 101 {
		return ""
	}
	return strings.TrimRight(base, "/") + "/ISAPI/Streaming/channels/" + strconv.Itoa(id) + "/requestKeyFrame"
}

func checkRTSP(raw string) error {
	if raw == "" {
		return errors.New("missing")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("not a URL: %w", err)
	}
	if u.Scheme == "" {
		return errors.New("missing scheme (rtsp://)")
	}
	if u.Scheme != "rtsp" && u.Scheme != "rtsps" {
		return fmt.Errorf("scheme %q: want rtsp or rtsps", u.Scheme)
	}
	if u.Host == "" {
		return errors.New("missing host")
	}
	return nil
}

// ResolvedCameras lists every camera, NVR channels first.
func (c Config) ResolvedCameras() []Camera {
	var out []Camera
	if n := c.NVR; n != nil {
		name := n.Name
		if name == "" {
			name = "Channel {channel}"
		}
		for ch := 1; ch <= n.Channels; ch++ {
			s := strconv.Itoa(ch)
			cam := Camera{ID: s, Name: strings.ReplaceAll(name, "{channel}", s),
				URL: strings.ReplaceAll(n.URL, "{channel}", s), AlwaysOn: n.AlwaysOn, ISAPI: n.ISAPI}
			if n.SubURL != "" {
				cam.SubURL = strings.ReplaceAll(n.SubURL, "{channel}", s)
			}
			out = append(out, cam)
		}
	}
	for i, cc := range c.Cameras {
		id := cc.ID
		if id == "" {
			id = strconv.Itoa(c.nvrChannels() + i + 1)
		}
		name := cc.Name
		if name == "" {
			name = "Camera " + id
		}
		out = append(out, Camera{ID: id, Name: name, URL: cc.URL, SubURL: cc.SubURL, AlwaysOn: cc.AlwaysOn, ISAPI: cc.ISAPI})
	}
	return out
}
