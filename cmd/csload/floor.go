package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// serveFloor runs bare net/http handlers to measure floors against, on the
// same machine and in the same run as coursestream:
//
//	GET /v1/courses/{courseId}/poll  answers 304 to If-None-Match W/"<courseId>:0", else 200 {}
//	GET /v1/courses/{courseId}/events holds an idle SSE stream (headers, retry:, then nothing)
//
// The paths match coursestream's so csload and wrk can target either.
func serveFloor(ctx context.Context, addr string, out io.Writer) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/courses/{courseId}/poll", func(w http.ResponseWriter, r *http.Request) {
		tag := `W/"` + r.PathValue("courseId") + `:0"`
		w.Header().Set("ETag", tag)
		w.Header().Set("Cache-Control", "no-cache")
		if r.Header.Get("If-None-Match") == tag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, "{}")
	})
	mux.HandleFunc("GET /v1/courses/{courseId}/events", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = io.WriteString(w, "retry: 3000\n\n")
		http.NewResponseController(w).Flush()
		<-r.Context().Done()
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "floor server on %s (Ctrl-C to stop)\n", ln.Addr())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
