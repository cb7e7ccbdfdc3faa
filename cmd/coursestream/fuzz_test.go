package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"coursestream/internal/auth"
	"coursestream/observer"
	"coursestream/poller"
	"coursestream/stream"
)

// fuzzRouters are the real router over an embedded broker, open and with
// a key.
func fuzzRouters() [2]http.Handler {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var hs [2]http.Handler
	for i := range hs {
		b := observer.NewMemory(observer.MemoryConfig{Logger: log, MaxEventBytes: 4096})
		_, _ = b.Publish(context.Background(), observer.Message{CourseID: "c1", Type: "upload-complete"})
		var ready atomic.Bool
		ready.Store(true)
		d := routeDeps{log: log, broker: b, ready: &ready, metrics: newMetrics(),
			hub:  stream.New(b, stream.Config{Logger: log}),
			pub:  stream.NewPublisher(b, stream.PublishConfig{Logger: log, MaxEventBytes: 4096}),
			poll: poller.New(b, poller.Config{Logger: log}),
			cors: []string{"https://app.example"}}
		if i == 1 {
			d.auth = auth.New([]byte(testKey), nil)
		}
		hs[i] = routes(d)
	}
	return hs
}

// FuzzEndpoints sends arbitrary methods, course ids, queries, one header
// and a body to every endpoint of the real router: nothing panics, nothing
// answers 5xx other than 503, and every error is the contract's JSON body.
func FuzzEndpoints(f *testing.F) {
	hs := fuzzRouters()
	endpoints := []string{"/events", "/poll", "", "/events/x"}
	f.Add(uint8(0), "GET", "c1", "lastEventId=1&types=a,b&coalesce=50ms", "Last-Event-ID", "0", "")
	f.Add(uint8(1), "GET", "c1", "after=1&wait=1ms", "If-None-Match", `W/"c1:1"`, "")
	f.Add(uint8(2), "POST", "c1", "", "Content-Type", "application/json", `{"type":"x","data":[1]}`)
	f.Add(uint8(5), "GET", "c1", "token=abc", "Authorization", "Bearer x.y.z", "")
	f.Add(uint8(4), "OPTIONS", "c1", "", "Origin", "https://app.example", "")
	f.Add(uint8(3), "GET", "%zz", "%%", "Last-Event-ID", "\xff", "\x00")
	f.Fuzz(func(t *testing.T, sel uint8, method, course, query, hname, hvalue, body string) {
		if method == "" || strings.ContainsAny(method, " \t\r\n") || !httpToken(hname) || strings.ContainsAny(hvalue, "\r\n") {
			return // not an HTTP request a server could receive
		}
		h := hs[int(sel)&1]
		u := &url.URL{Path: "/v1/courses/" + course + endpoints[int(sel>>1)%len(endpoints)], RawQuery: query}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond) // a stream that opens ends
		defer cancel()
		req := (&http.Request{Method: method, URL: u, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(body)),
			Host: "x", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, RemoteAddr: "127.0.0.1:1"}).WithContext(ctx)
		req.Header.Set(hname, hvalue)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 && rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("%s %s %q: %d %s", method, u, hname, rec.Code, rec.Body)
		}
		if rec.Code >= 400 && (!strings.HasPrefix(rec.Body.String(), `{"error":"`) || rec.Header().Get("Content-Type") != "application/json") {
			t.Fatalf("%s %s: %d with body %q, want a JSON error", method, u, rec.Code, rec.Body)
		}
	})
}

func httpToken(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}
