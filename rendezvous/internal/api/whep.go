package api

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/peercam/peercam/proto"
	"github.com/peercam/peercam/rendezvous/internal/hub"
)

// WHEP (RFC 9725): POST an SDP offer with a bearer token, get 201 Created, the
// answer and a Location to DELETE. The rendezvous forwards the offer to the
// agent like any other session; media flows between the player and the agent.

func (a *API) whepCORS(w http.ResponseWriter) {
	// Bearer tokens, never cookies, so any origin may call it.
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Allow-Methods", "POST, DELETE, PATCH, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, If-Match")
	h.Set("Access-Control-Expose-Headers", "Location, Link")
}

func (a *API) whepPreflight(w http.ResponseWriter, _ *http.Request) {
	a.whepCORS(w)
	w.Header().Set("Accept-Post", "application/sdp")
	w.WriteHeader(http.StatusNoContent)
}

func whepErr(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, msg+"\n")
}

// whepViewer resolves the bearer token: a viewer token, or an owner session
// token (so an owner's script can use its login token).
func (a *API) whepViewer(r *http.Request) (hub.Viewer, bool) {
	tok := bearer(r)
	if tok == "" {
		return hub.Viewer{}, false
	}
	if claims, err := a.checkToken(remoteIP(r), tok); err == nil {
		return hub.Viewer{Token: claims, RawToken: tok}, true
	}
	if u, _, err := a.ownerFrom(r); err == nil {
		return hub.Viewer{Owner: u}, true
	}
	return hub.Viewer{}, false
}

func (a *API) whepOffer(w http.ResponseWriter, r *http.Request) {
	a.whepCORS(w)
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/sdp") {
		whepErr(w, http.StatusUnsupportedMediaType, "Content-Type must be application/sdp.")
		return
	}
	v, ok := a.whepViewer(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="peercam"`)
		whepErr(w, http.StatusUnauthorized, "A valid bearer token is required (Authorization: Bearer <token>).")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, proto.MaxMessageSize/2))
	if err != nil {
		whepErr(w, http.StatusRequestEntityTooLarge, "The SDP offer is too large.")
		return
	}
	stream := r.URL.Query().Get("stream")
	if stream != "" && stream != proto.StreamMain && stream != proto.StreamSub {
		whepErr(w, http.StatusBadRequest, "stream must be main or sub.")
		return
	}
	dev, cam := r.PathValue("device"), r.PathValue("camera")
	s, err := a.cfg.Hub.OpenWHEP(r.Context(), v, dev, cam, stream, string(body))
	if err != nil {
		a.log.Info("WHEP refused", "device", dev, "camera", cam, "err", err)
		whepErr(w, whepStatus(err), hub.Sentence(err))
		return
	}
	w.Header().Set("Content-Type", "application/sdp")
	w.Header().Set("Location", "/whep/"+dev+"/"+cam+"/"+s.ID)
	// RFC 9725 section 4.6: the ICE servers, TURN credentials included,
	// for a client that restarts ICE through a relay.
	for _, ice := range a.cfg.Hub.ICEServers() {
		for _, u := range ice.URLs {
			link := "<" + u + `>; rel="ice-server"`
			if ice.Username != "" {
				link += fmt.Sprintf(`; username=%q; credential=%q; credential-type="password"`, ice.Username, ice.Credential)
			}
			w.Header().Add("Link", link)
		}
	}
	w.WriteHeader(http.StatusCreated)
	_, _ = io.WriteString(w, s.Answer)
}

func whepStatus(err error) int {
	var pe *hub.PeerError
	switch {
	case errors.Is(err, hub.ErrUnauthorized):
		return http.StatusUnauthorized
	case errors.Is(err, hub.ErrForbidden):
		return http.StatusForbidden
	case errors.Is(err, hub.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, hub.ErrDeviceOffline):
		return http.StatusServiceUnavailable
	case errors.Is(err, hub.ErrTimeout):
		return http.StatusGatewayTimeout
	case errors.As(err, &pe):
		switch pe.Code {
		case proto.CodeUnauthorized:
			return http.StatusUnauthorized
		case proto.CodeForbidden:
			return http.StatusForbidden
		case proto.CodeNotFound:
			return http.StatusNotFound
		case proto.CodeCodecUnsupported, proto.CodeBadMessage:
			return http.StatusBadRequest
		}
		return http.StatusBadGateway
	}
	return http.StatusInternalServerError
}

func (a *API) whepDelete(w http.ResponseWriter, r *http.Request) {
	a.whepCORS(w)
	if _, ok := a.whepViewer(r); !ok {
		whepErr(w, http.StatusUnauthorized, "A valid bearer token is required.")
		return
	}
	if err := a.cfg.Hub.CloseWHEP(r.PathValue("device"), r.PathValue("camera"), r.PathValue("session")); err != nil {
		whepErr(w, http.StatusNotFound, "No such WHEP session.")
		return
	}
	w.WriteHeader(http.StatusOK)
}

// whepPatch: trickle and ICE restart over PATCH are optional in RFC 9725; the
// agent puts all its candidates in the answer, so say it is not supported.
func (a *API) whepPatch(w http.ResponseWriter, _ *http.Request) {
	a.whepCORS(w)
	whepErr(w, http.StatusMethodNotAllowed, "Trickle ICE over PATCH is not supported; send a complete offer.")
}
