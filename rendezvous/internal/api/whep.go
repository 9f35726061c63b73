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
	h.Set("Access-Control-Expose-Headers", "Location, Link, PeerCam-Stream, PeerCam-Codec, PeerCam-Note, PeerCam-Audio")
}

func (a *API) whepPreflight(w http.ResponseWriter, _ *http.Request) {
	a.whepCORS(w)
	w.Header().Set("Accept-Post", "application/sdp")
	w.WriteHeader(http.StatusNoContent)
}

// whepErr answers a WHEP request with a JSON body carrying the wire code,
// so a player can tell "revoked" from "over the cap" from "offline".
func whepErr(w http.ResponseWriter, status int, code proto.Code, msg string) {
	writeErr(w, status, string(code), msg)
}

// whepViewer resolves the bearer token: a viewer token, or an owner session
// token (so an owner's script can use its login token).
func (a *API) whepViewer(r *http.Request) (hub.Viewer, error) {
	tok := bearer(r)
	if tok == "" {
		return hub.Viewer{}, hub.ErrUnauthorized
	}
	// An owner's own login token first: it is not a viewer token, and must
	// not spend the address's budget for bad ones.
	if si, err := a.ownerFrom(r); err == nil {
		return hub.Viewer{Owner: &si.user, LoginID: si.loginID}, nil
	}
	claims, err := a.checkToken(addrKey(a.clientIP(r)), tok)
	if err == nil {
		return hub.Viewer{Token: claims, RawToken: tok}, nil
	}
	if errors.Is(err, hub.ErrRateLimited) {
		return hub.Viewer{}, err
	}
	return hub.Viewer{}, hub.ErrUnauthorized
}

// whepRefuse answers a refused WHEP request with its status, wire code and
// sentence; 401 carries WWW-Authenticate and 429 Retry-After.
func whepRefuse(w http.ResponseWriter, err error) {
	st := whepStatus(err)
	switch st {
	case http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Bearer realm="peercam"`)
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		// An offline recorder or an unreachable camera is usually back in
		// seconds (a restart): a player retrying soon is back soon after.
		retry := "10"
		if c := whepCode(err); c == proto.CodeDeviceOffline || c == proto.CodeCameraUnreachable {
			retry = "2"
		}
		w.Header().Set("Retry-After", retry)
	}
	msg := hub.Sentence(err)
	if errors.Is(err, hub.ErrUnauthorized) && !errors.Is(err, hub.ErrSignedOut) {
		msg = "A valid bearer token is required (Authorization: Bearer <token>)."
	}
	whepErr(w, st, hub.CodeOf(err), msg)
}

func (a *API) whepOffer(w http.ResponseWriter, r *http.Request) {
	a.whepCORS(w)
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/sdp") {
		whepErr(w, http.StatusUnsupportedMediaType, proto.CodeBadMessage, "Content-Type must be application/sdp.")
		return
	}
	v, err := a.whepViewer(r)
	if err == nil {
		id := ""
		if v.Token != nil {
			id = v.Token.ID
		}
		err = a.allowOpen(addrKey(a.clientIP(r)), id)
	}
	if err != nil {
		whepRefuse(w, err)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, proto.MaxMessageSize/2))
	if err != nil {
		whepErr(w, http.StatusRequestEntityTooLarge, proto.CodeTooLarge, "The SDP offer is too large.")
		return
	}
	stream := r.URL.Query().Get("stream")
	if stream != "" && stream != proto.StreamMain && stream != proto.StreamSub {
		whepErr(w, http.StatusBadRequest, proto.CodeBadMessage, "stream must be main or sub.")
		return
	}
	dev, cam := r.PathValue("device"), r.PathValue("camera")
	s, err := a.cfg.Hub.OpenWHEP(r.Context(), v, dev, cam, stream, string(body))
	if err != nil {
		a.log.Info("WHEP refused", "device", dev, "camera", cam, "err", err)
		whepRefuse(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/sdp")
	w.Header().Set("Location", "/whep/"+dev+"/"+cam+"/"+s.ID)
	if sv := s.Served; sv != nil {
		// What the agent chose for this player (a WHEP client that cannot
		// play H.265 gets the H.264 sub stream), and why.
		w.Header().Set("PeerCam-Stream", sv.Stream)
		w.Header().Set("PeerCam-Codec", sv.Codec)
		if sv.Note != "" {
			w.Header().Set("PeerCam-Note", sv.Note)
		}
		if sv.Audio != "" {
			w.Header().Set("PeerCam-Audio", sv.Audio)
		}
	}
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

// whepCode is a refusal's wire code, the agent's own when it refused.
func whepCode(err error) proto.Code {
	var pe *hub.PeerError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return hub.CodeOf(err)
}

// whepStatus maps a refusal to its HTTP status: 401 no valid credentials,
// 403 valid but not allowed now (revoked, expired, over a cap, another
// owner's), 404 no such device or camera, 429 rate-limited, 503 offline or
// the recorder is full, 504 no answer.
func whepStatus(err error) int {
	var pe *hub.PeerError
	switch whepCode(err) {
	case proto.CodeUnauthorized:
		return http.StatusUnauthorized
	case proto.CodeForbidden, proto.CodeRevoked, proto.CodeExpired, proto.CodeViewerCap:
		return http.StatusForbidden
	case proto.CodeNotFound:
		return http.StatusNotFound
	case proto.CodeRateLimited:
		if errors.As(err, &pe) {
			// The agent's own limit on viewers: full, not misbehaving.
			return http.StatusServiceUnavailable
		}
		return http.StatusTooManyRequests
	case proto.CodeDeviceOffline, proto.CodeCameraUnreachable:
		return http.StatusServiceUnavailable
	case proto.CodeTimeout:
		return http.StatusGatewayTimeout
	case proto.CodeCodecUnsupported, proto.CodeBadMessage:
		return http.StatusBadRequest
	}
	if errors.As(err, &pe) {
		return http.StatusBadGateway
	}
	return http.StatusInternalServerError
}

// whepDelete ends a WHEP session; only the identity that opened it may.
func (a *API) whepDelete(w http.ResponseWriter, r *http.Request) {
	a.whepCORS(w)
	v, err := a.whepViewer(r)
	if err != nil {
		whepRefuse(w, err)
		return
	}
	if err := a.cfg.Hub.CloseWHEP(v, r.PathValue("device"), r.PathValue("camera"), r.PathValue("session")); err != nil {
		whepErr(w, http.StatusNotFound, proto.CodeNotFound, "No such WHEP session for these credentials.")
		return
	}
	w.WriteHeader(http.StatusOK)
}

// whepPatch: trickle and ICE restart over PATCH are optional in RFC 9725; the
// agent puts all its candidates in the answer, so say it is not supported.
func (a *API) whepPatch(w http.ResponseWriter, _ *http.Request) {
	a.whepCORS(w)
	whepErr(w, http.StatusMethodNotAllowed, proto.CodeBadMessage, "Trickle ICE over PATCH is not supported; send a complete offer.")
}
