package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// serveFloor runs bare net/http handlers to measure floors against, on the
// same machine and in the same run as coursestream:
//
//	GET  /v1/courses/{courseId}/poll    answers 304 to If-None-Match W/"<courseId>:0", else 200 {};
//	                                    with ?wait=D (at most 30s) it first holds the request D,
//	                                    or until the client gives up (a held long-poll)
//	GET  /v1/courses/{courseId}/events  a fan-out stream (below); idle while nothing is published
//	GET  /v1/events?courses=a,b         the same on several courses
//	POST /v1/courses/{courseId}/events  {"type":..,"data":..}: the course's next id, written
//	                                    to each of its streams, 201 {"id":"N"}
//
// The fan-out is the bare one: the stream's connection is taken over
// (http.Hijacker), answered with an HTTP/1.1 200 head (no chunked framing,
// Connection: close, so the body runs to EOF) and retry:, and registered
// on its courses. A publish builds its frame once, in coursestream's shape,
// and writes it to every socket of the course with one write each: no
// queue, no goroutine per delivery; a socket whose write fails is dropped
// (a client that stops reading holds its course's publishes: a floor for
// clients that keep up, on loopback, not a server).
// Per stream that leaves the socket and its handler's goroutine, blocked
// reading the connection to notice the client leave. A multi-course
// stream gets the same shared frame, whose id line is the course's id,
// not coursestream's per-stream cursor (csload reads ids from the data).
//
// held (--floor-sse held) serves the events path as before instead: a
// net/http handler holding an idle SSE response.
//
// The paths match coursestream's so csload and wrk can target either.
// sse is the events path's kind: fanout or held.
func serveFloor(ctx context.Context, addr, sse string, out io.Writer) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return serveFloorOn(ctx, ln, sse, out)
}

// serveFloorOn serves the floor on ln until ctx ends.
func serveFloorOn(ctx context.Context, ln net.Listener, sse string, out io.Writer) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/courses/{courseId}/poll", func(w http.ResponseWriter, r *http.Request) {
		if d, err := time.ParseDuration(r.URL.Query().Get("wait")); err == nil && d > 0 {
			t := time.NewTimer(min(d, 30*time.Second))
			select {
			case <-r.Context().Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
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
	f := &fanout{courses: make(map[string]*fanCourse)}
	switch sse {
	case "fanout":
		mux.HandleFunc("GET /v1/courses/{courseId}/events", func(w http.ResponseWriter, r *http.Request) {
			f.subscribe(w, []string{r.PathValue("courseId")})
		})
		mux.HandleFunc("GET /v1/events", func(w http.ResponseWriter, r *http.Request) {
			courses := strings.Split(r.URL.Query().Get("courses"), ",")
			if len(courses) == 0 || len(courses) > 64 || courses[0] == "" {
				http.Error(w, "want ?courses=a,b (at most 64)", http.StatusBadRequest)
				return
			}
			f.subscribe(w, courses)
		})
		mux.HandleFunc("POST /v1/courses/{courseId}/events", f.publish)
	case "held":
		mux.HandleFunc("GET /v1/courses/{courseId}/events", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			w.Header().Set("Cache-Control", "no-cache")
			_, _ = io.WriteString(w, "retry: 3000\n\n")
			http.NewResponseController(w).Flush()
			<-r.Context().Done()
		})
	default:
		ln.Close()
		return usageError{fmt.Errorf("--floor-sse %q: want fanout or held", sse)}
	}
	fmt.Fprintf(out, "floor server on %s (Ctrl-C to stop)\n", ln.Addr())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	err := srv.Serve(ln)
	f.closeAll() // Close does not reach the taken-over connections
	f.streams.Wait()
	if !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// fanout is the floor's bare fan-out: courses and their sockets.
type fanout struct {
	mu      sync.Mutex
	closed  bool // closeAll has run: a stream taken over later is closed at once
	courses map[string]*fanCourse
	streams sync.WaitGroup // the taken-over streams' handlers
}

// fanCourse is one course: its last id and its sockets. mu is held while
// a frame is written to them, so a course's frames go out in id order.
type fanCourse struct {
	mu    sync.Mutex
	last  uint64
	socks map[net.Conn]struct{}
}

// streamHead is the response head of a fan-out stream and its first frame.
const streamHead = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\nretry: 3000\n\n"

func (f *fanout) course(id string) *fanCourse {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.courses[id]
	if c == nil {
		c = &fanCourse{socks: make(map[net.Conn]struct{})}
		f.courses[id] = c
	}
	return c
}

// closeAll closes every stream's socket, and any taken over after it:
// their handlers end.
func (f *fanout) closeAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	for _, c := range f.courses {
		c.mu.Lock()
		for s := range c.socks {
			s.Close()
		}
		c.mu.Unlock()
	}
}

// register writes the stream's head and puts the socket on its courses,
// unless closeAll has run; it returns the courses, or nil when the floor
// is closed or the head could not be written. The head goes out with the
// courses locked, so no frame can precede it and a client that has read
// it is reached by every later publish and by closeAll.
func (f *fanout) register(conn net.Conn, courses []string) []*fanCourse {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	cs := make([]*fanCourse, 0, len(courses))
	for _, id := range courses {
		c := f.courses[id]
		if c == nil {
			c = &fanCourse{socks: make(map[net.Conn]struct{})}
			f.courses[id] = c
		}
		if !slices.Contains(cs, c) { // a course named twice is locked once
			c.mu.Lock()
			cs = append(cs, c)
		}
	}
	_, err := io.WriteString(conn, streamHead)
	for _, c := range cs {
		if err == nil {
			c.socks[conn] = struct{}{}
		}
		c.mu.Unlock()
	}
	if err != nil {
		return nil
	}
	f.streams.Add(1)
	return cs
}

// subscribe takes the connection over, registers it (head first) and
// holds it until the client leaves, a write to it failed and closed it,
// or the floor closed it.
func (f *fanout) subscribe(w http.ResponseWriter, courses []string) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "the fan-out floor serves HTTP/1.1 without TLS only", http.StatusHTTPVersionNotSupported)
		return
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Time{}) // the server's read deadline does not apply to a stream
	cs := f.register(conn, courses)
	if cs == nil {
		return
	}
	defer f.streams.Done()
	var b [1]byte
	for {
		if _, err := conn.Read(b[:]); err != nil {
			break
		}
	}
	for _, c := range cs {
		c.mu.Lock()
		delete(c.socks, conn)
		c.mu.Unlock()
	}
}

// publish assigns the course's next id, builds the frame once and writes
// it to each socket of the course.
func (f *fanout) publish(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("courseId")
	var m struct {
		Type string          `json:"type"`
		Data json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&m); err != nil || m.Type == "" || strings.ContainsAny(m.Type, "\r\n") {
		http.Error(w, `want {"type":"...","data":...}`, http.StatusBadRequest)
		return
	}
	data := []byte("null")
	if len(m.Data) > 0 {
		var buf bytes.Buffer
		_ = json.Compact(&buf, m.Data) // valid: Decode succeeded
		data = buf.Bytes()
	}
	c := f.course(id)
	c.mu.Lock()
	c.last++
	n := c.last
	frame := appendFloorFrame(make([]byte, 0, 128+len(id)+2*len(m.Type)+len(data)), n, id, m.Type, data, time.Now().UnixMilli())
	for s := range c.socks {
		if _, err := s.Write(frame); err != nil {
			delete(c.socks, s)
			s.Close() // its handler's read ends
		}
	}
	c.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_, _ = io.WriteString(w, `{"id":"`+strconv.FormatUint(n, 10)+`"}`)
}

// appendFloorFrame appends an event's SSE frame in coursestream's shape:
// id, event and data lines, the data the envelope (id, courseId, type,
// data, timestamp), and a blank line. data is compacted JSON (one line).
func appendFloorFrame(b []byte, id uint64, course, typ string, data []byte, ts int64) []byte {
	b = append(b, "id: "...)
	b = strconv.AppendUint(b, id, 10)
	b = append(b, "\nevent: "...)
	b = append(b, typ...)
	b = append(b, "\ndata: {\"id\":\""...)
	b = strconv.AppendUint(b, id, 10)
	b = append(b, `","courseId":`...)
	b, _ = appendJSONValue(b, course)
	b = append(b, `,"type":`...)
	b, _ = appendJSONValue(b, typ)
	b = append(b, `,"data":`...)
	b = append(b, data...)
	b = append(b, `,"timestamp":`...)
	b = strconv.AppendInt(b, ts, 10)
	return append(b, "}\n\n"...)
}

func appendJSONValue(b []byte, s string) ([]byte, error) {
	q, err := json.Marshal(s)
	return append(b, q...), err
}
