// Package faults makes the simulator misbehave on request, as real cameras
// do, for tests and for people trying the demo: a small HTTP control
// endpoint on loopback that stalls a channel, resumes it, mangles its video,
// refuses its credentials, stretches its keyframe interval, changes its
// resolution, drops every connection, or restarts the whole recorder after
// a pause.
package faults

import (
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/peercam/peercam/firmware-sim/nvr"
)

// Recorder is the running simulator, restartable in place.
type Recorder struct {
	log *slog.Logger

	mu  sync.Mutex // guards srv
	srv *nvr.Server
}

// New wraps a running simulator.
func New(srv *nvr.Server, log *slog.Logger) *Recorder {
	return &Recorder{srv: srv, log: log.With("component", "faults")}
}

// Server is the simulator running now.
func (r *Recorder) Server() *nvr.Server {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.srv
}

// Restart takes the recorder away (every connection drops, the port
// refuses) and brings it back on the same address after down, as a camera
// that reboots.
func (r *Recorder) Restart(down time.Duration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	cfg := r.srv.Config()
	r.srv.Close()
	r.log.Info("recorder gone", "back_in", down)
	time.Sleep(down)
	srv, err := nvr.Start(cfg)
	if err != nil {
		return fmt.Errorf("faults: restart: %w", err)
	}
	r.srv = srv
	r.log.Info("recorder back", "addr", cfg.Listen)
	return nil
}

// Close stops the recorder.
func (r *Recorder) Close() { r.Server().Close() }

// Handler is the control endpoint:
//
//	POST /stall?channel=N[&seconds=S]  the channel stops sending (until resumed, or for S s)
//	POST /resume?channel=N             it sends again
//	POST /garbage?channel=N[&seconds=S] its video turns malformed (until /clean, or for S s)
//	POST /clean?channel=N              it is clean again
//	POST /reject?channel=N             it refuses every credential with 401, as after a password change
//	POST /accept?channel=N             it accepts its own again
//	POST /long-gop?channel=N           its main stream sends a keyframe only every 10 s
//	POST /short-gop?channel=N          back to every 4 s
//	POST /resize?channel=N&small=1     its main stream switches to 640×360 mid-stream (small=0: back)
//	POST /restart?seconds=S            the recorder goes away and is back after S s (default 8)
//	POST /drop                         every connection drops; the recorder is back at once
func (r *Recorder) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /stall", func(w http.ResponseWriter, req *http.Request) {
		ch, err := strconv.Atoi(req.URL.Query().Get("channel"))
		if err == nil {
			err = r.Server().Stall(ch, true)
		}
		if err != nil {
			http.Error(w, "stall: give ?channel=N of an existing channel", http.StatusBadRequest)
			return
		}
		if s, _ := strconv.ParseFloat(req.URL.Query().Get("seconds"), 64); s > 0 {
			time.AfterFunc(time.Duration(s*float64(time.Second)), func() { _ = r.Server().Stall(ch, false) })
		}
		fmt.Fprintf(w, "channel %d stalled\n", ch)
	})
	mux.HandleFunc("POST /resume", func(w http.ResponseWriter, req *http.Request) {
		ch, err := strconv.Atoi(req.URL.Query().Get("channel"))
		if err == nil {
			err = r.Server().Stall(ch, false)
		}
		if err != nil {
			http.Error(w, "resume: give ?channel=N of an existing channel", http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "channel %d resumed\n", ch)
	})
	toggle := func(path, what string, set func(*nvr.Server, int, bool) error, on bool) {
		mux.HandleFunc("POST "+path, func(w http.ResponseWriter, req *http.Request) {
			ch, err := strconv.Atoi(req.URL.Query().Get("channel"))
			if err == nil {
				err = set(r.Server(), ch, on)
			}
			if err != nil {
				http.Error(w, path[1:]+": give ?channel=N of an existing channel", http.StatusBadRequest)
				return
			}
			if s, _ := strconv.ParseFloat(req.URL.Query().Get("seconds"), 64); on && s > 0 {
				time.AfterFunc(time.Duration(s*float64(time.Second)), func() { _ = set(r.Server(), ch, false) })
			}
			fmt.Fprintf(w, "channel %d %s\n", ch, what)
		})
	}
	toggle("/garbage", "sends garbage", (*nvr.Server).Garbage, true)
	toggle("/clean", "is clean again", (*nvr.Server).Garbage, false)
	toggle("/reject", "refuses credentials", (*nvr.Server).Reject, true)
	toggle("/accept", "accepts its credentials again", (*nvr.Server).Reject, false)
	toggle("/long-gop", "sends a keyframe every 10 s", (*nvr.Server).LongGOP, true)
	toggle("/short-gop", "sends a keyframe every 4 s", (*nvr.Server).LongGOP, false)
	mux.HandleFunc("POST /resize", func(w http.ResponseWriter, req *http.Request) {
		ch, err := strconv.Atoi(req.URL.Query().Get("channel"))
		if err == nil {
			err = r.Server().Resize(ch, req.URL.Query().Get("small") != "0")
		}
		if err != nil {
			http.Error(w, "resize: "+err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "channel %d resized\n", ch)
	})
	restart := func(w http.ResponseWriter, down time.Duration) {
		go func() {
			if err := r.Restart(down); err != nil {
				r.log.Error("restart failed", "err", err)
			}
		}()
		fmt.Fprintf(w, "restarting; back in %s\n", down)
	}
	mux.HandleFunc("POST /restart", func(w http.ResponseWriter, req *http.Request) {
		down := 8 * time.Second
		if s, err := strconv.ParseFloat(req.URL.Query().Get("seconds"), 64); err == nil && s >= 0 {
			down = time.Duration(s * float64(time.Second))
		}
		restart(w, down)
	})
	mux.HandleFunc("POST /drop", func(w http.ResponseWriter, _ *http.Request) { restart(w, 0) })
	return mux
}
