package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/peercam/peercam/internal/onvif"
	"github.com/peercam/peercam/internal/redact"
)

// ONVIFConfig is one camera or recorder whose streams the agent finds
// itself through ONVIF, at start and again whenever a stream fails, so a
// camera that changes its RTSP path or port keeps working.
type ONVIFConfig struct {
	// Host is the device's address (192.168.1.10, or with a port
	// 192.168.1.10:8000), its device service URL, or "auto": every device
	// that answers a WS-Discovery probe on the LAN.
	Host string `yaml:"host"`
	User string `yaml:"user"`
	Pass string `yaml:"pass"`
}

// ONVIFList is the onvif: setting: one entry, a list, or the word auto.
type ONVIFList []ONVIFConfig

// UnmarshalYAML takes `onvif: auto`, `onvif: {host: …}` or a list of those.
func (l *ONVIFList) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Value != "auto" {
			return fmt.Errorf("line %d: onvif: %q: want auto, {host: …, user: …, pass: …} or a list of those", n.Line, n.Value)
		}
		*l = ONVIFList{{Host: "auto"}}
		return nil
	case yaml.MappingNode:
		var one ONVIFConfig
		if err := n.Decode(&one); err != nil {
			return err
		}
		*l = ONVIFList{one}
		return nil
	}
	var many []ONVIFConfig
	if err := n.Decode(&many); err != nil {
		return err
	}
	*l = many
	return nil
}

// DiscoveryGroup is where WS-Discovery probes go on a LAN.
const DiscoveryGroup = "239.255.255.250:3702"

// onvifCamera is a camera found through ONVIF.
type onvifCamera struct {
	dev  ONVIFConfig
	url  string // device service URL
	info onvif.DeviceInfo
	cam  onvif.Camera
}

// findONVIF resolves the onvif: entries into cameras. A device that cannot
// be reached is logged and left out; the agent serves the others.
func findONVIF(ctx context.Context, entries []ONVIFConfig, probe string, log *slog.Logger) []onvifCamera {
	var out []onvifCamera
	for i, e := range entries {
		urls := []string{onvif.DeviceURL(e.Host)}
		if e.Host == "auto" {
			ms, err := probeLAN(ctx, probe, 2*time.Second)
			if err != nil {
				log.Error("onvif: discovery failed", "entry", i, "err", err)
				continue
			}
			urls = urls[:0]
			for _, m := range ms {
				if len(m.XAddrs) > 0 {
					urls = append(urls, m.XAddrs[0])
				}
			}
			if len(urls) == 0 {
				log.Warn("onvif: auto: no device answered the WS-Discovery probe on this LAN")
			}
		}
		for _, u := range urls {
			c := &onvif.Client{Device: u, User: e.User, Pass: e.Pass}
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			info, _ := c.DeviceInformation(cctx)
			cams, err := c.Cameras(cctx)
			cancel()
			if err != nil {
				log.Error("onvif: could not list the device's streams; its cameras are left out until the agent restarts",
					"device", u, "err", err, "fix", onvifAdvice(err))
				continue
			}
			for _, cam := range cams {
				out = append(out, onvifCamera{dev: e, url: u, info: info, cam: cam})
			}
		}
	}
	return out
}

func onvifAdvice(err error) string {
	if errors.Is(err, onvif.ErrAuth) {
		return "check the ONVIF user and password (often the camera's admin account; -user/-pass, or user/pass in the onvif entry)"
	}
	return "check the host (and port, often 80, 8000 or 8080) and that ONVIF is enabled on the camera"
}

// resolver re-reads a camera's stream URL from the device, for a stream
// that failed (the camera may have changed its path or port).
func (c onvifCamera) resolver(kind string) func(context.Context) (string, error) {
	return func(ctx context.Context) (string, error) {
		cl := &onvif.Client{Device: c.url, User: c.dev.User, Pass: c.dev.Pass}
		cams, err := cl.Cameras(ctx)
		if err != nil {
			return "", err
		}
		for _, cam := range cams {
			if cam.Source != c.cam.Source {
				continue
			}
			if kind == "sub" {
				if cam.SubURL == "" {
					return "", fmt.Errorf("onvif: source %s has no sub stream any more", cam.Source)
				}
				return cam.SubURL, nil
			}
			return cam.MainURL, nil
		}
		return "", fmt.Errorf("onvif: the device no longer lists video source %s", c.cam.Source)
	}
}

// probeLAN sends a WS-Discovery probe to dst (the multicast group, or one
// address) and collects the answers.
func probeLAN(ctx context.Context, dst string, wait time.Duration) ([]onvif.ProbeMatch, error) {
	if dst == "" {
		dst = DiscoveryGroup
	}
	to, err := net.ResolveUDPAddr("udp4", dst)
	if err != nil {
		return nil, fmt.Errorf("probe address %q: %w", dst, err)
	}
	conn, err := net.ListenPacket("udp4", ":0")
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return onvif.Discover(ctx, conn, to, wait)
}

// DiscoverOptions configures Discover.
type DiscoverOptions struct {
	User, Pass string
	// Probe is where the WS-Discovery probe goes; default the LAN's
	// multicast group.
	Probe string
	// Hosts are devices to ask directly, instead of probing.
	Hosts []string
	Wait  time.Duration
}

// Discover finds ONVIF cameras and recorders, prints what they are and
// their stream URLs, and a cameras: block to paste into agent.yaml.
func Discover(ctx context.Context, o DiscoverOptions, w io.Writer) error {
	if o.Wait == 0 {
		o.Wait = 3 * time.Second
	}
	urls := make([]string, 0, len(o.Hosts))
	for _, h := range o.Hosts {
		urls = append(urls, onvif.DeviceURL(h))
	}
	if len(urls) == 0 {
		fmt.Fprintf(w, "# probing for ONVIF devices (WS-Discovery to %s, %s)…\n", orDefault(o.Probe, DiscoveryGroup), o.Wait)
		ms, err := probeLAN(ctx, o.Probe, o.Wait)
		if err != nil {
			return fmt.Errorf("discover: %w", err)
		}
		for _, m := range ms {
			if len(m.XAddrs) > 0 {
				urls = append(urls, m.XAddrs[0])
			}
		}
		if len(urls) == 0 {
			return errors.New("discover: no ONVIF device answered; check that ONVIF is on in the camera's network settings, " +
				"or name it: device-agent discover -host 192.168.1.10")
		}
	}
	var yamlCams []string
	id, failed := 0, 0
	for _, u := range urls {
		c := &onvif.Client{Device: u, User: o.User, Pass: o.Pass}
		info, err := c.DeviceInformation(ctx)
		if err != nil {
			fmt.Fprintf(w, "# %s: %v (%s)\n", u, err, onvifAdvice(err))
			failed++
			continue
		}
		cams, err := c.Cameras(ctx)
		if err != nil {
			fmt.Fprintf(w, "# %s: %v (%s)\n", u, err, onvifAdvice(err))
			failed++
			continue
		}
		fmt.Fprintf(w, "# %s %s, serial %s, firmware %s, at %s: %d camera(s)\n", info.Manufacturer, info.Model, info.SerialNumber,
			info.FirmwareVersion, u, len(cams))
		for _, cam := range cams {
			id++
			fmt.Fprintf(w, "#   %s: main %s %dx%d %s\n", cam.Source, cam.Main.Encoding, cam.Main.Width, cam.Main.Height, redact.URL(cam.MainURL))
			entry := fmt.Sprintf("  - name: %s\n    url: %s\n", yamlString(cameraName(info, cam, id)), cam.MainURL)
			if cam.Sub != nil {
				fmt.Fprintf(w, "#   %s: sub  %s %dx%d %s\n", cam.Source, cam.Sub.Encoding, cam.Sub.Width, cam.Sub.Height, redact.URL(cam.SubURL))
				entry += fmt.Sprintf("    sub_url: %s\n", cam.SubURL)
			}
			yamlCams = append(yamlCams, entry)
		}
	}
	if len(yamlCams) == 0 && failed > 0 {
		return fmt.Errorf("discover: %d device(s) could not be read; see above", failed)
	}
	if len(yamlCams) == 0 {
		return errors.New("discover: no device listed a camera PeerCam can play (H.264 or H.265)")
	}
	fmt.Fprintln(w, "\n# Paste into agent.yaml (or use `onvif: {host: …, user: …, pass: …}` to have the agent look them up itself):")
	fmt.Fprintln(w, "cameras:")
	for _, e := range yamlCams {
		fmt.Fprint(w, e)
	}
	return nil
}

func cameraName(info onvif.DeviceInfo, cam onvif.Camera, n int) string {
	if cam.Main.Name != "" {
		return strings.TrimSpace(strings.TrimSuffix(strings.TrimSuffix(cam.Main.Name, " main"), "Main"))
	}
	return "Camera " + strconv.Itoa(n)
}

func yamlString(s string) string { return strconv.Quote(s) }

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// webOrigin is a device service URL's scheme and host, the camera's web
// address.
func webOrigin(deviceURL string) string {
	u, err := url.Parse(deviceURL)
	if err != nil || u.Host == "" {
		return ""
	}
	return u.Scheme + "://" + u.Host
}
