package web

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// A static import or re-export at the start of a line: `import x from
// '...'`, `import {a,\n b} from '...'`, `import * as m from '...'`,
// `import '...'`, `export {a} from '...'`, `export * from '...'`. JSDoc
// `@import` tags, which load nothing, are not counted.
var importSpec = regexp.MustCompile(`(?m)^(?:import\s*(?:[\w$*{}\s,]+?\s*from\s*)?|export\s*(?:\*(?:\s*as\s+[\w$]+)?|\{[^}]*\})\s*from\s*)['"]([^'"\n]+)['"]`)

// importsOf returns the specifiers of the static imports in src.
func importsOf(src string) []string {
	var specs []string
	for _, m := range importSpec.FindAllStringSubmatch(src, -1) {
		specs = append(specs, m[1])
	}
	return specs
}

func TestImportsOf(t *testing.T) {
	t.Parallel()
	src := `// @ts-check
/** @import { X } from './types.js' */
 * @import { Y } from './other.js'
import { a,
  b } from './a.js'
import c from "../c.js"
import './side.js'
export { d } from './d.js'
export * from './e.js'
import * as g from './g.js'
export function h() { return 'x' }
export const f = 'from ./nope.js'
const s = "import x from './not-a-statement.js'"
`
	got := strings.Join(importsOf(src), " ")
	if want := "./a.js ../c.js ./side.js ./d.js ./e.js ./g.js"; got != want {
		t.Errorf("importsOf = %q, want %q", got, want)
	}
}

// Every module that an entry point (the library, the adapter, the demo
// script, the shared worker) imports, transitively, is served as JavaScript, to GET and
// HEAD, with the headers of every file. The library's own imports are
// relative with a .js extension, so that the same files can be a package.
func TestEveryImportedModuleIsServed(t *testing.T) {
	t.Parallel()
	notFound := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "nf", http.StatusTeapot) })
	h := Handler(notFound)
	root, _ := url.Parse("http://coursestream.test/")
	// shared-worker.js is the SharedWorker's script: share-worker.js starts
	// it by URL (new URL('./shared-worker.js', import.meta.url)), not by an
	// import, so it is an entry point of its own.
	queue := []string{"/coursestream.js", "/coursestream-tanstack.js", "/demo.js", "/coursestream/shared-worker.js"}
	seen := map[string]bool{}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if seen[p] {
			continue
		}
		seen[p] = true
		if strings.Contains(p, "/events") || strings.Contains(p, "/poll") {
			// Proxies and the browser tests' fronts route the API on these.
			t.Errorf("%s: a module path must not look like the API's /events or /poll", p)
		}
		body := serveModule(t, h, p)
		for _, spec := range importsOf(body) {
			library := p != "/demo.js"
			if library && (!strings.HasPrefix(spec, "./") && !strings.HasPrefix(spec, "../") || !strings.HasSuffix(spec, ".js")) {
				t.Errorf("%s imports %q: library imports must be relative and end in .js", p, spec)
				continue
			}
			ref, err := url.Parse(spec)
			if err != nil {
				t.Errorf("%s imports %q: %v", p, spec, err)
				continue
			}
			queue = append(queue, root.ResolveReference(&url.URL{Path: p}).ResolveReference(ref).Path)
		}
	}
	if !seen["/coursestream/connection.js"] || !seen["/coursestream/driver-sse.js"] || !seen["/coursestream/driver-poll.js"] {
		t.Errorf("the entry points' imports reach %d files, without the drivers: %v", len(seen), seen)
	}
	// And the other way: every module in coursestream/ is served, a
	// route per file (see Names).
	for _, name := range Names() {
		if strings.HasSuffix(name, ".js") && !seen["/"+name] && name != "coursestream/port.js" {
			t.Errorf("%s is embedded but no entry point imports it", name)
		}
	}
}

// serveModule GETs and HEADs p and returns the GET's body.
func serveModule(t *testing.T, h http.Handler, p string) string {
	t.Helper()
	var body string
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, p, nil))
		hd := rec.Header()
		if rec.Code != http.StatusOK || hd.Get("Content-Type") != "text/javascript; charset=utf-8" ||
			hd.Get("Cache-Control") != "no-cache" || hd.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s %s: %d, Content-Type %q, Cache-Control %q, X-Content-Type-Options %q", method, p, rec.Code,
				hd.Get("Content-Type"), hd.Get("Cache-Control"), hd.Get("X-Content-Type-Options"))
		}
		if method == http.MethodGet {
			body = rec.Body.String()
		} else if rec.Body.Len() != 0 {
			t.Errorf("HEAD %s: a body of %d bytes", p, rec.Body.Len())
		}
	}
	return body
}

func TestNamesListsEveryFile(t *testing.T) {
	t.Parallel()
	names := Names()
	for _, want := range []string{"index.html", "coursestream.js", "coursestream/connection.js"} {
		if !contains(names, want) {
			t.Errorf("Names() = %v, without %s", names, want)
		}
	}
	for _, name := range names {
		if st, err := fs.Stat(Files(), name); err != nil || st.IsDir() {
			t.Errorf("Names() has %s, which is no file (%v)", name, err)
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
