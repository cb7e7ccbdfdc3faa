package web

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func TestHandlerServesTheFiles(t *testing.T) {
	t.Parallel()
	notFound := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "nf", http.StatusTeapot) })
	h := Handler(notFound)
	for _, tc := range []struct {
		path, contentType, contains string
		status                      int
	}{
		{"/", "text/html", `<script type="module" src="/demo.js">`, 200},
		{"/coursestream.js", "text/javascript", "export default connect", 200},
		{"/coursestream/connection.js", "text/javascript", "export function connect(", 200},
		{"/coursestream-tanstack.js", "text/javascript", "export function bindCourseQueries(", 200},
		{"/coursestream.d.ts", "text/plain", "export declare function connect(", 200},
		{"/coursestream-tanstack.d.ts", "text/plain", "export declare function bindCourseQueries(", 200},
		{"/demo.js", "text/javascript", "from '/coursestream.js'", 200},
		{"/demo.css", "text/css", ".status", 200},
		{"/nope.js", "", "", http.StatusTeapot},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tc.path, nil))
		body := rec.Body.String()
		if rec.Code != tc.status || !strings.HasPrefix(rec.Header().Get("Content-Type"), tc.contentType) || !strings.Contains(body, tc.contains) {
			t.Errorf("GET %s: %d %q, body has %q: %v; want %d %q", tc.path, rec.Code, rec.Header().Get("Content-Type"),
				tc.contains, strings.Contains(body, tc.contains), tc.status, tc.contentType)
		}
		if tc.status == 200 && rec.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: no nosniff", tc.path)
		}
	}
}

// Every file the demo page and the modules refer to is embedded: the
// binary has no other files to serve.
func TestReferencedFilesAreEmbedded(t *testing.T) {
	t.Parallel()
	files := Files()
	ref := regexp.MustCompile(`(?:src|href)="/([^"]+)"|from '/([^']+)'`)
	for _, name := range []string{"index.html", "demo.js"} {
		b, err := fs.ReadFile(files, name)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ref.FindAllStringSubmatch(string(b), -1) {
			target := m[1] + m[2]
			if _, err := fs.Stat(files, target); err != nil {
				t.Errorf("%s refers to /%s, which is not embedded", name, target)
			}
		}
	}
}
