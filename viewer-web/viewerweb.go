// Package viewerweb is the phone-first browser viewer: plain HTML, CSS and
// JavaScript modules embedded in the rendezvous binary, with no build step.
package viewerweb

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var static embed.FS

// FS is the viewer's files.
func FS() fs.FS {
	sub, _ := fs.Sub(static, "static")
	return sub
}

// Handler serves the viewer. Unknown paths get index.html so that links such
// as /s/ (guest shares) open the app.
func Handler() http.Handler {
	files := http.FileServerFS(FS())
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy",
			"default-src 'self'; img-src 'self' data:; media-src 'self' blob:; connect-src 'self' ws: wss:; style-src 'self'; script-src 'self'; frame-ancestors 'none'")
		if _, err := fs.Stat(FS(), trim(r.URL.Path)); err != nil {
			r2 := r.Clone(r.Context())
			r2.URL.Path = "/"
			files.ServeHTTP(w, r2)
			return
		}
		files.ServeHTTP(w, r)
	})
}

func trim(p string) string {
	for len(p) > 0 && p[0] == '/' {
		p = p[1:]
	}
	if p == "" {
		return "."
	}
	return p
}
