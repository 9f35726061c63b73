// Command firmware-sim simulates an IP camera or a multi-channel NVR serving
// real RTSP, for tests and demos.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/peercam/peercam/firmware-sim/faults"
	"github.com/peercam/peercam/firmware-sim/isapi"
	"github.com/peercam/peercam/firmware-sim/nvr"
	"github.com/peercam/peercam/firmware-sim/onvifsim"
)

func main() {
	cfg := nvr.DefaultConfig()
	flag.StringVar(&cfg.Listen, "listen", cfg.Listen, "RTSP address to listen on (port 0 picks a free one)")
	flag.IntVar(&cfg.Channels, "channels", cfg.Channels, "number of channels (1 = a single camera)")
	flag.StringVar(&cfg.User, "user", cfg.User, "RTSP user name (digest authentication)")
	flag.StringVar(&cfg.Pass, "pass", cfg.Pass, "RTSP password")
	flag.BoolVar(&cfg.Audio, "audio", cfg.Audio, "send a G.711 µ-law tone with every stream")
	flag.BoolVar(&cfg.KeyframeOnPlay, "keyframe-on-play", false, "send a keyframe at once to a client that starts playing, as many cameras do for a new RTSP session")
	flag.IntVar(&cfg.MainKbps, "main-kbps", 0, "pad main streams to this constant bitrate in kbit/s with filler data, as a camera in CBR mode (0: the clips' own)")
	bframes := flag.String("bframes", "", "comma-separated channels whose main stream has B-frames (a fault some real cameras have)")
	h265 := flag.String("h265", "", "comma-separated channels whose main stream is H.265 Main, with an H.264 sub stream (most NVRs' default)")
	onvifAddr := flag.String("onvif", "", "HTTP address for the ONVIF Device and Media services and Hikvision's ISAPI keyframe request, e.g. 127.0.0.1:8000 (empty: off)")
	flag.BoolVar(&cfg.IgnoreRTCPKeyframeRequests, "ignore-rtcp-pli", false, "ignore RTCP PLI/FIR keyframe requests from RTSP clients, as many cameras do")
	control := flag.String("control", "", "HTTP address of the fault control endpoint, e.g. 127.0.0.1:8099 (empty: off); POST /stall, /resume, /garbage, /clean, /reject, /accept, /long-gop, /short-gop, /resize with ?channel=N, and /restart?seconds=S, /drop")
	var startFaults []string
	flag.Func("fault", "a fault on from the start, NAME:CHANNELS (repeatable): stall, garbage (malformed video), reject (401 to every credential), long-gop (a keyframe every 10 s); e.g. -fault reject:2 -fault long-gop:1,3", func(v string) error {
		startFaults = append(startFaults, v)
		return nil
	})
	discAddr := flag.String("discovery", "", "UDP address answering WS-Discovery probes, e.g. 0.0.0.0:3702 (joins the ONVIF multicast group when the host part is 0.0.0.0; empty: off)")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	cfg.BFrameChannels = channelList("bframes", *bframes)
	cfg.H265Channels = channelList("h265", *h265)
	for _, f := range startFaults {
		name, chans, _ := strings.Cut(f, ":")
		list := channelList("fault "+name, chans)
		if len(list) == 0 {
			fmt.Fprintf(os.Stderr, "firmware-sim: -fault %s: give NAME:CHANNELS, e.g. -fault stall:1\n", f)
			os.Exit(2)
		}
		switch name {
		case "stall":
			cfg.StalledChannels = append(cfg.StalledChannels, list...)
		case "garbage":
			cfg.GarbageChannels = append(cfg.GarbageChannels, list...)
		case "reject":
			cfg.RejectChannels = append(cfg.RejectChannels, list...)
		case "long-gop":
			cfg.LongGOPChannels = append(cfg.LongGOPChannels, list...)
		default:
			fmt.Fprintf(os.Stderr, "firmware-sim: -fault %s: unknown fault %q; faults are stall, garbage, reject, long-gop\n", f, name)
			os.Exit(2)
		}
	}
	cfg.Logger = log

	srv, err := nvr.Start(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "firmware-sim:", err)
		os.Exit(1)
	}
	log.Info("firmware-sim ready", "addr", srv.Addr(), "channels", cfg.Channels,
		"example", srv.URL(1, "main"))
	rec := faults.New(srv, log)
	if *control != "" {
		ln, err := net.Listen("tcp", *control)
		if err != nil {
			fmt.Fprintln(os.Stderr, "firmware-sim: -control:", err)
			os.Exit(1)
		}
		go func() { _ = http.Serve(ln, rec.Handler()) }()
		log.Info("fault control ready", "url", "http://"+ln.Addr().String())
	}
	if *onvifAddr != "" {
		o, err := startONVIF(rec, cfg, *onvifAddr, *discAddr, log)
		if err != nil {
			fmt.Fprintln(os.Stderr, "firmware-sim:", err)
			srv.Close()
			os.Exit(1)
		}
		defer o.Close()
		log.Info("ONVIF ready", "device_service", o.DeviceURL(), "discovery", *discAddr)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	rec.Close()
}

// channelList parses a flag's comma-separated channel numbers, or exits
// naming the flag.
func channelList(name, v string) []int {
	var out []int
	for _, f := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' }) {
		ch, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			fmt.Fprintf(os.Stderr, "firmware-sim: -%s: %q is not a channel number\n", name, f)
			os.Exit(2)
		}
		out = append(out, ch)
	}
	return out
}

// startONVIF serves the ONVIF face of srv.
func startONVIF(rec *faults.Recorder, cfg nvr.Config, httpAddr, discAddr string, log *slog.Logger) (*onvifsim.Server, error) {
	ln, err := net.Listen("tcp", httpAddr)
	if err != nil {
		return nil, fmt.Errorf("-onvif: %w", err)
	}
	oc := onvifsim.Config{HTTP: ln, User: cfg.User, Pass: cfg.Pass, Channels: cfg.Channels, Logger: log,
		StreamOf: func(ch int, kind string) onvifsim.Stream {
			u, codec, w, h := rec.Server().StreamInfo(ch, kind)
			return onvifsim.Stream{URL: u, Encoding: codec, Width: w, Height: h}
		},
		ISAPI: isapi.Handler(cfg.User, cfg.Pass, func(ch int, kind string) bool { return rec.Server().Keyframe(ch, kind) }, log)}
	if discAddr != "" {
		if oc.Discovery, err = net.ListenPacket("udp4", discAddr); err != nil {
			ln.Close()
			return nil, fmt.Errorf("-discovery: %w", err)
		}
		host, _, _ := net.SplitHostPort(discAddr)
		oc.Group = host == "" || host == "0.0.0.0"
	}
	return onvifsim.Start(oc)
}
