// Package isapi is the small part of Hikvision's ISAPI web API that the
// agent uses: PUT /ISAPI/Streaming/channels/<id>/requestKeyFrame, which
// makes a channel's stream send a keyframe now. Channel ids are
// Hikvision's: 101 is channel 1's main stream, 102 its sub stream. It
// answers with ISAPI's ResponseStatus XML and wants HTTP Digest
// authentication, as the real API does by default.
package isapi

import (
	"fmt"
	"html"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/peercam/peercam/firmware-sim/camera"
	"github.com/peercam/peercam/internal/digest"
)

// Keyframer makes a stream send a keyframe; ok false means there is no
// such stream.
type Keyframer func(channel int, kind string) (ok bool)

// Handler serves ISAPI's requestKeyFrame for user and pass.
func Handler(user, pass string, kick Keyframer, log *slog.Logger) http.Handler {
	auth := digest.Server{Realm: "IP Camera", User: user, Pass: pass}
	mux := http.NewServeMux()
	mux.HandleFunc("/ISAPI/Streaming/channels/{id}/requestKeyFrame", func(w http.ResponseWriter, r *http.Request) {
		if !auth.Check(r) {
			auth.Challenge(w)
			return
		}
		if r.Method != http.MethodPut && r.Method != http.MethodPost {
			status(w, r, http.StatusMethodNotAllowed, 4, "Invalid Operation", "methodNotAllowed")
			return
		}
		id, err := strconv.Atoi(r.PathValue("id"))
		kind := camera.Main
		if id%100 == 2 {
			kind = camera.Sub
		}
		if err != nil || id < 101 || (id%100 != 1 && id%100 != 2) || !kick(id/100, kind) {
			status(w, r, http.StatusNotFound, 4, "Invalid Operation", "invalidChannel")
			return
		}
		log.Debug("ISAPI keyframe request", "channel", id/100, "stream", kind)
		status(w, r, http.StatusOK, 1, "OK", "ok")
	})
	return mux
}

func status(w http.ResponseWriter, r *http.Request, code, isapiCode int, text, sub string) {
	w.Header().Set("Content-Type", "application/xml; charset=UTF-8")
	w.WriteHeader(code)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>
<ResponseStatus version="2.0" xmlns="http://www.hikvision.com/ver20/XMLSchema">
<requestURL>%s</requestURL>
<statusCode>%d</statusCode>
<statusString>%s</statusString>
<subStatusCode>%s</subStatusCode>
</ResponseStatus>
`, html.EscapeString(r.URL.Path), isapiCode, text, sub)
}
