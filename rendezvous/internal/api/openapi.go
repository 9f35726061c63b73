package api

import (
	_ "embed"
	"net/http"
)

// openAPI describes every HTTP endpoint (OpenAPI 3.1). TestOpenAPIMatchesRoutes
// holds it to the routes New registers, both ways.
//
//go:embed openapi.json
var openAPI []byte

// OpenAPI returns the description served at /api/openapi.json.
func OpenAPI() []byte { return openAPI }

func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(openAPI)
}
