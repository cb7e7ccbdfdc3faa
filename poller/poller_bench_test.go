package poller

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// Benchmark304 is the hot path of an up-to-date poll client.
func Benchmark304(b *testing.B) {
	m, _, h := setup(b, 0)
	publish(b, m, "c1", "upload-progress", 10)
	req := httptest.NewRequest(http.MethodGet, "/v1/courses/c1/poll?after=10", nil)
	req.Header.Set("If-None-Match", `W/"c1:10"`)
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusNotModified {
			b.Fatalf("got %d", rec.Code)
		}
	}
}

func BenchmarkMatchNoneMatch(b *testing.B) {
	tag := ETag("course-123", 123456)
	b.ReportAllocs()
	for b.Loop() {
		if !MatchNoneMatch(`W/"other:1", W/"course-123:123456"`, tag) {
			b.Fatal("no match")
		}
	}
}
