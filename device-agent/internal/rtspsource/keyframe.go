package rtspsource

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/base"
	"github.com/bluenviron/gortsplib/v4/pkg/description"
	"github.com/pion/rtcp"

	"github.com/peercam/peercam/internal/digest"
)

// asker sends a run's keyframe requests: one at the start, one per receive
// from Config.Keyframes, at most one every minGap, and never two ISAPI
// calls at once. stop ends it (and a call in flight) with the run.
type asker struct {
	ctx   context.Context
	stop  context.CancelFunc
	c     *gortsplib.Client
	video *description.Media
	cfg   Config
	user  string
	pass  string
	http  *http.Client
	ssrc  atomic.Uint32
	first sync.Once
	mu    sync.Mutex
	last  time.Time
	busy  bool // an ISAPI call is in flight
	// refused is set when the camera answered ISAPI with a refusal that
	// asking again will not change (401, 403, 404, 405): this run stops.
	refused bool
	fir     uint8
}

// minGap spaces keyframe requests: a camera asked twice within it would
// send two keyframes for one need.
const minGap = 500 * time.Millisecond

// isapiTimeout bounds one ISAPI call.
const isapiTimeout = 3 * time.Second

func newAsker(ctx context.Context, c *gortsplib.Client, video *description.Media, cfg Config, u *base.URL) *asker {
	a := &asker{c: c, video: video, cfg: cfg, http: &http.Client{Timeout: isapiTimeout}}
	a.ctx, a.stop = context.WithCancel(ctx)
	if u.User != nil {
		a.user = u.User.Username()
		a.pass, _ = u.User.Password()
	}
	if iu, err := url.Parse(cfg.ISAPI); err == nil && iu.User != nil {
		// Its own credentials win, and leave the URL: Go's client would
		// send them as Basic authentication, in the clear.
		a.user = iu.User.Username()
		a.pass, _ = iu.User.Password()
		iu.User = nil
		a.cfg.ISAPI = iu.String()
	}
	return a
}

// playing starts the run's requests once the stream plays: a keyframe
// the camera sends before then would not reach this session.
func (a *asker) playing() {
	if a.cfg.ISAPI != "" {
		a.isapi()
	}
	go a.loop()
}

// seen is called with each video packet's SSRC; the first one sends the
// run's RTCP request, which names it.
func (a *asker) seen(ssrc uint32) {
	if a.ssrc.Load() != ssrc {
		a.ssrc.Store(ssrc)
	}
	a.first.Do(a.rtcp)
}

func (a *asker) loop() {
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-a.cfg.Keyframes:
			a.mu.Lock()
			soon := time.Since(a.last) < minGap
			a.mu.Unlock()
			if soon {
				continue
			}
			if a.ssrc.Load() != 0 {
				a.rtcp()
			}
			if a.cfg.ISAPI != "" {
				a.isapi()
			}
		}
	}
}

func (a *asker) mark() {
	a.mu.Lock()
	a.last = time.Now()
	a.mu.Unlock()
}

func (a *asker) rtcp() {
	ssrc := a.ssrc.Load()
	a.mu.Lock()
	a.fir++
	seq := a.fir
	a.mu.Unlock()
	// Cameras that honour RTCP feedback take one or the other; both in one
	// compound packet cost nothing more.
	for _, p := range []rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc},
		&rtcp.FullIntraRequest{MediaSSRC: ssrc, FIR: []rtcp.FIREntry{{SSRC: ssrc, SequenceNumber: seq}}}} {
		if err := a.c.WritePacketRTCP(a.video, p); err != nil {
			return
		}
	}
	a.mark()
	if a.cfg.OnAsked != nil {
		a.cfg.OnAsked("rtcp", nil)
	}
}

// isapi calls requestKeyFrame in the background; a call still in flight
// makes a new one needless.
func (a *asker) isapi() {
	a.mu.Lock()
	if a.busy || a.refused {
		a.mu.Unlock()
		return
	}
	a.busy = true
	a.mu.Unlock()
	a.mark()
	go func() {
		final, err := a.putISAPI()
		a.mu.Lock()
		a.busy, a.refused = false, final
		a.mu.Unlock()
		if a.cfg.OnAsked != nil {
			a.cfg.OnAsked("isapi", err)
		}
	}()
}

// putISAPI makes one call; final means asking again this run is useless.
func (a *asker) putISAPI() (final bool, err error) {
	ctx, cancel := context.WithTimeout(a.ctx, isapiTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, a.cfg.ISAPI, nil)
	if err != nil {
		return true, fmt.Errorf("isapi: %w", err)
	}
	resp, err := digest.Do(a.http, req, a.user, a.pass)
	if err != nil {
		return false, fmt.Errorf("isapi requestKeyFrame: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return false, nil
	case http.StatusUnauthorized, http.StatusForbidden:
		return true, fmt.Errorf("isapi requestKeyFrame: the camera refused the user and password (HTTP %d)", resp.StatusCode)
	case http.StatusNotFound, http.StatusMethodNotAllowed:
		return true, fmt.Errorf("isapi requestKeyFrame: %s has no such channel or API (HTTP %d); check isapi in the camera's entry", a.cfg.ISAPI, resp.StatusCode)
	default:
		return false, fmt.Errorf("isapi requestKeyFrame: HTTP %d from %s", resp.StatusCode, a.cfg.ISAPI)
	}
}
