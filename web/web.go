// Package web holds the browser side of coursestream, embedded in the
// binary: the demo page at /, the browser library at /coursestream.js and
// the TanStack Query adapter at /coursestream-tanstack.js (with .d.ts
// files beside them). The library is ES modules with no build step: the
// entry points import the modules in static/coursestream/, served at
// /coursestream/*.js, with relative specifiers. The files live in static/;
// the browser tests in test/ run from browser_test.go.
package web

import (
	"embed"
	"io/fs"
	"net/http"
	"path"
	"strings"
)

//go:embed static
var static embed.FS

// Files returns the embedded static files (index.html and the library).
func Files() fs.FS {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embed pattern above guarantees the directory
	}
	return sub
}

// Names returns the path of every embedded file (index.html, the entry
// points, the modules in coursestream/ ...), for a router that registers
// one route per file.
func Names() []string {
	var names []string
	_ = fs.WalkDir(Files(), ".", func(name string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			names = append(names, name)
		}
		return err
	})
	return names
}

// Handler serves the embedded files; / is the demo page. Paths that name
// no file go to notFound.
func Handler(notFound http.Handler) http.Handler {
	files := Files()
	fsrv := http.FileServerFS(files)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/")
		if name == "" {
			name = "index.html"
		}
		if st, err := fs.Stat(files, name); err != nil || st.IsDir() {
			notFound.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		switch path.Ext(name) {
		case ".js":
			// Modules must be JavaScript (RFC 9239), whatever the
			// system's MIME table says.
			h.Set("Content-Type", "text/javascript; charset=utf-8")
		case ".ts":
			// Type declarations, to read; the system's MIME table may call
			// .ts a video or a Qt translation.
			h.Set("Content-Type", "text/plain; charset=utf-8")
		}
		fsrv.ServeHTTP(w, r)
	})
}
