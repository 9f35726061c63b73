// Package metrics is the rendezvous's Prometheus endpoint
// (github.com/prometheus/client_golang): devices online, signaling sockets
// and sessions, signaling messages and errors, sign-ins and rate-limit
// hits, and the Go runtime's and the process's own figures.
package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are one server's. The zero of every field is unusable: use New.
type Metrics struct {
	reg *prometheus.Registry
	// SessionsOpened counts viewer sessions opened (WebSocket and WHEP).
	SessionsOpened prometheus.Counter
	// Messages counts signaling messages received, by sender: viewer or
	// device.
	Messages *prometheus.CounterVec
	// Errors counts error messages sent to viewers and devices, by wire
	// code.
	Errors *prometheus.CounterVec
	// Logins counts sign-ins by result: ok or failed.
	Logins *prometheus.CounterVec
	// RateLimited counts refusals for going over a limit, by what: http
	// (sign-in, claim, setup, handshakes, sockets), open (session opens)
	// or signaling (messages on a socket).
	RateLimited *prometheus.CounterVec
}

// Live are the figures read at each scrape.
type Live struct {
	DevicesOnline, Sessions, Sockets func() int
}

// New returns the metrics, with the Go and process collectors.
func New(live Live) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{reg: reg,
		SessionsOpened: prometheus.NewCounter(prometheus.CounterOpts{Name: "peercam_rendezvous_sessions_opened_total",
			Help: "Viewer sessions opened, WebSocket and WHEP."}),
		Messages: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "peercam_rendezvous_signaling_messages_total",
			Help: "Signaling messages received, by sender (viewer or device)."}, []string{"from"}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "peercam_rendezvous_signaling_errors_total",
			Help: "Error messages sent on signaling sockets, by wire code."}, []string{"code"}),
		Logins: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "peercam_rendezvous_logins_total",
			Help: "Owner sign-ins, by result (ok or failed)."}, []string{"result"}),
		RateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "peercam_rendezvous_rate_limited_total",
			Help: "Requests refused for going over a limit, by what (http, open, signaling, handshake)."}, []string{"what"}),
	}
	gauge := func(name, help string, f func() int) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 {
			if f == nil {
				return 0
			}
			return float64(f())
		})
	}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.SessionsOpened, m.Messages, m.Errors, m.Logins, m.RateLimited,
		gauge("peercam_rendezvous_devices_online", "Agents connected to this server.", live.DevicesOnline),
		gauge("peercam_rendezvous_sessions", "Viewer sessions on record here.", live.Sessions),
		gauge("peercam_rendezvous_sockets", "Open signaling WebSockets, viewers and devices.", live.Sockets))
	for _, r := range []string{"ok", "failed"} {
		m.Logins.WithLabelValues(r)
	}
	for _, w := range []string{"http", "open", "signaling", "handshake"} {
		m.RateLimited.WithLabelValues(w)
	}
	for _, f := range []string{"viewer", "device"} {
		m.Messages.WithLabelValues(f)
	}
	return m
}

// Handler serves the metrics.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}
