package api

import (
	"crypto/ed25519"
	"encoding/json"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// Every route the server registers is in the OpenAPI description, and every
// operation the description names is a route.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(nil)
	a := New(Config{Key: key, Logger: slog.New(slog.DiscardHandler), Static: http.NotFoundHandler()})
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(OpenAPI(), &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Fatalf("openapi version %q, want 3.1.0", doc.OpenAPI)
	}
	var documented []string
	for path, ops := range doc.Paths {
		for method := range ops {
			switch method {
			case "parameters", "summary", "description":
				continue
			}
			documented = append(documented, strings.ToUpper(method)+" "+path)
		}
	}
	routes := a.Routes()
	for _, r := range routes {
		if !slices.Contains(documented, r) {
			t.Errorf("route %q is not in openapi.json", r)
		}
	}
	for _, d := range documented {
		if !slices.Contains(routes, d) {
			t.Errorf("openapi.json documents %q, which the server does not register", d)
		}
	}
}
