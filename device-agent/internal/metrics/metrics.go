// Package metrics is the agent's Prometheus endpoint: viewers, sessions by
// path, what goes out to viewers, what the cameras do, signaling, and the Go
// runtime's own figures (GC pauses, heap, goroutines).
//
// It is built on github.com/VictoriaMetrics/metrics, which writes the
// Prometheus text format in 65 KiB of armv7 code; client_golang would add
// 1.7 MiB, more than the agent's size budget has room for.
package metrics

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"runtime/metrics"
	"strconv"
	"strings"
	"time"

	vm "github.com/VictoriaMetrics/metrics"
)

// Metrics are one agent's.
type Metrics struct {
	set *vm.Set
	// SignalIn and SignalOut count signaling messages from and to the
	// rendezvous; SignalErrors the error messages among them.
	SignalIn, SignalOut, SignalErrors *vm.Counter
	// SessionsRefused counts offers refused (over a limit, a bad token, a
	// camera that cannot be reached…).
	SessionsRefused *vm.Counter
	// KeyframeRequests counts the viewers' PLI and FIR answered.
	KeyframeRequests *vm.Counter
	// ForwardDelay is the time from a frame's arrival from the camera to
	// the send of its last packet to a viewer (so at least every packet's
	// delay), for live (not catch-up) frames.
	ForwardDelay *vm.PrometheusHistogram
}

// New returns an agent's metrics; viewers gives the live viewer count.
func New(viewers func() int) *Metrics {
	s := vm.NewSet()
	m := &Metrics{set: s,
		SignalIn:         s.NewCounter(`peercam_agent_signaling_messages_total{direction="in"}`),
		SignalOut:        s.NewCounter(`peercam_agent_signaling_messages_total{direction="out"}`),
		SignalErrors:     s.NewCounter("peercam_agent_signaling_errors_total"),
		SessionsRefused:  s.NewCounter("peercam_agent_sessions_refused_total"),
		KeyframeRequests: s.NewCounter("peercam_agent_keyframe_requests_total"),
		ForwardDelay: s.NewPrometheusHistogramExt("peercam_agent_forward_delay_seconds",
			[]float64{0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.00125, 0.0015, 0.00175, 0.002, 0.0025, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.05, 0.1}),
	}
	s.NewGauge("peercam_agent_viewers", func() float64 {
		if viewers == nil {
			return 0
		}
		return float64(viewers())
	})
	s.NewGauge("peercam_agent_heap_live_bytes", func() float64 { return float64(HeapLive()) })
	return m
}

// HeapLive is the heap the last garbage collection found live, in bytes.
func HeapLive() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// Connected counts a session whose ICE path came up: host (same LAN or a
// mapped port), srflx (through NAT, found by STUN) or relay (TURN).
func (m *Metrics) Connected(path string) {
	m.set.GetOrCreateCounter(`peercam_agent_sessions_connected_total{path=` + strconv.Quote(path) + `}`).Inc()
}

// Stream is one camera stream's outgoing counters, summed over viewers.
type Stream struct {
	BytesOut, PacketsOut, FramesOut *vm.Counter
}

// ForStream returns the counters of a camera's stream (main or sub).
func (m *Metrics) ForStream(camera, stream string) Stream {
	l := labels(camera, stream)
	return Stream{
		BytesOut:   m.set.GetOrCreateCounter("peercam_agent_bytes_out_total" + l),
		PacketsOut: m.set.GetOrCreateCounter("peercam_agent_packets_out_total" + l),
		FramesOut:  m.set.GetOrCreateCounter("peercam_agent_frames_out_total" + l),
	}
}

// CameraStats is what a camera stream reports on a scrape.
type CameraStats struct {
	Frames, Dropped, Outages, LostPackets, KeyframesAsked uint64
	Viewers                                               int
	Up                                                    bool
}

// Camera registers a camera stream's figures, read on each scrape; call it
// once per stream.
func (m *Metrics) Camera(camera, stream string, read func() CameraStats) {
	l := labels(camera, stream)
	m.set.NewGauge("peercam_agent_camera_up"+l, func() float64 {
		if read().Up {
			return 1
		}
		return 0
	})
	m.set.NewGauge("peercam_agent_camera_viewers"+l, func() float64 { return float64(read().Viewers) })
	// Counters the stream keeps itself, read on each scrape.
	for name, get := range map[string]func(CameraStats) uint64{
		"peercam_agent_camera_frames_total":            func(s CameraStats) uint64 { return s.Frames },
		"peercam_agent_frames_dropped_total":           func(s CameraStats) uint64 { return s.Dropped },
		"peercam_agent_camera_reconnects_total":        func(s CameraStats) uint64 { return s.Outages },
		"peercam_agent_camera_lost_packets_total":      func(s CameraStats) uint64 { return s.LostPackets },
		"peercam_agent_camera_keyframe_requests_total": func(s CameraStats) uint64 { return s.KeyframesAsked },
	} {
		m.set.NewGauge(name+l, func() float64 { return float64(get(read())) })
	}
}

func labels(camera, stream string) string {
	return `{camera=` + strconv.Quote(camera) + `,stream=` + strconv.Quote(stream) + `}`
}

// Write writes every metric, and the Go runtime's and the process's, in the
// Prometheus text format.
func (m *Metrics) Write(w io.Writer) {
	m.set.WritePrometheus(w)
	vm.WriteProcessMetrics(w)
}

// Serve answers scrapes on ln until it is closed: GET /metrics gets the
// figures, anything else 404. It is a scrape responder, not a web server:
// net/http's server would add 390 KiB to the armv7 agent, a third of what
// its size budget has left. One request per connection, read within 5 s
// and at most 8 KiB of head, answered with Connection: close.
func (m *Metrics) Serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go m.answer(c)
	}
}

func (m *Metrics) answer(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReaderSize(io.LimitReader(c, 8<<10), 8<<10)
	line, err := r.ReadString('\n')
	if err != nil {
		return
	}
	for { // the headers, up to the blank line
		h, err := r.ReadString('\n')
		if err != nil {
			return
		}
		if strings.TrimRight(h, "\r\n") == "" {
			break
		}
	}
	f := strings.Fields(line)
	status, ctype := "404 Not Found", "text/plain; charset=utf-8"
	var body bytes.Buffer
	switch {
	case len(f) != 3 || !strings.HasPrefix(f[2], "HTTP/1."):
		status = "400 Bad Request"
		body.WriteString("bad request\n")
	case f[0] != "GET" && f[0] != "HEAD":
		status = "405 Method Not Allowed"
		body.WriteString("GET /metrics\n")
	case f[1] == "/metrics" || strings.HasPrefix(f[1], "/metrics?"):
		status, ctype = "200 OK", "text/plain; version=0.0.4; charset=utf-8"
		m.Write(&body)
	default:
		body.WriteString("the metrics are at /metrics\n")
	}
	fmt.Fprintf(c, "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", status, ctype, body.Len())
	if len(f) == 0 || f[0] != "HEAD" {
		_, _ = c.Write(body.Bytes())
	}
}
