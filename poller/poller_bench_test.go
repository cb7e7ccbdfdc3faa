package poller

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
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

// Benchmark304Courses is Benchmark304 for a client of the multi-course
// poll watching 8 courses.
func Benchmark304Courses(b *testing.B) {
	m, p, _ := setup(b, 0)
	var courses, entries []string
	for i := range 8 {
		c := "course-" + strconv.Itoa(i)
		publish(b, m, c, "upload-progress", 10)
		courses, entries = append(courses, c), append(entries, c+":10")
	}
	req := httptest.NewRequest(http.MethodGet, "/v1/poll?courses="+strings.Join(courses, ",")+"&cursor="+strings.Join(entries, ","), nil)
	rec := httptest.NewRecorder()
	p.ServeCourses(rec, req)
	if rec.Code != http.StatusOK {
		b.Fatalf("got %d", rec.Code)
	}
	req.Header.Set("If-None-Match", rec.Header().Get("ETag"))
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		p.ServeCourses(rec, req)
		if rec.Code != http.StatusNotModified {
			b.Fatalf("got %d", rec.Code)
		}
	}
}
