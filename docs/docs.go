// Package docs holds the OpenAPI 3.1 document of the HTTP API,
// openapi.json, embedded in the binary and served at /openapi.json. The
// document is written by hand; cmd/coursestream's openapi_test.go holds it
// to the real responses of a real server.
package docs

import (
	_ "embed"
	"net/http"
)

//go:embed openapi.json
var openAPI []byte

// OpenAPI returns the OpenAPI document (JSON). The caller must not change it.
func OpenAPI() []byte { return openAPI }

// Handler serves the OpenAPI document.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "no-cache")
		_, _ = w.Write(openAPI)
	})
}
