package stream

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"coursestream/observer"
)

// discard is a ResponseWriter that drops what it is given.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
func (d *discard) WriteHeader(int)             {}
func (d *discard) Flush()                      {}

// benchEvents returns n events of one course and their frames, built
// beforehand as the first stream of a course builds them for the others.
func benchEvents(b *testing.B, n int) ([]*observer.Event, []*frame) {
	evs := make([]*observer.Event, n)
	fs := make([]*frame, n)
	for i := range evs {
		m := observer.Message{CourseID: "course-123", Type: "upload-progress",
			Data: json.RawMessage(`{"videoId":"v` + strconv.Itoa(i%10) + `","progress":42}`)}
		data, _ := m.Normalize()
		ev, err := observer.NewEvent(m, data, uint64(i+1), time.Now().UnixMilli(), 0)
		if err != nil {
			b.Fatal(err)
		}
		evs[i], fs[i] = ev, newFrame(ev)
	}
	return evs, fs
}

// BenchmarkDeliver is one subscriber's hot path for one event through the
// ResponseWriter: the listener finds the frame the course's first stream
// built (topic.frameOf) and queues it, the writer writes it and flushes. It
// must not allocate.
func BenchmarkDeliver(b *testing.B) {
	h := New(observer.NewMemory(observer.MemoryConfig{Logger: quiet()}), Config{Logger: quiet()})
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	c := newConn(h, ctx, cancel, request{courses: []string{"course-123"}})
	v := newViaHandler(c, &discard{h: http.Header{}})
	c.out = v
	c.state = stateLive
	c.lanes[0].topic = new(topic)
	evs, fs := benchEvents(b, 4096)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		ev := evs[i%len(evs)]
		if ev.ID == 1 {
			c.lanes[0].pos = 0
		}
		c.lanes[0].topic.last.Store(fs[i%len(fs)])
		c.onEvent(&c.lanes[0], ev)
		<-v.notify
		if !c.deliver() {
			b.Fatal("stream ended")
		}
	}
}

// BenchmarkDeliverDirect is the same for a direct stream, over a real
// loopback TCP connection whose other end reads everything: the listener
// queues, a worker's turn writes the event's chunk to the socket. It
// includes the write system call, and must not allocate.
func BenchmarkDeliverDirect(b *testing.B) {
	c, d := benchDirect(b, request{courses: []string{"course-123"}})
	evs, fs := benchEvents(b, 4096)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		ev := evs[i%len(evs)]
		if ev.ID == 1 {
			c.lanes[0].pos = 0
		}
		c.lanes[0].topic.last.Store(fs[i%len(fs)])
		c.onEvent(&c.lanes[0], ev)
		if next, _ := c.h.runq.Pop(); next != d {
			b.Fatal("not scheduled")
		}
		d.runTurn()
	}
}

func BenchmarkCoalesce(b *testing.B) {
	_, fs := benchEvents(b, 100) // 10 subjects
	co := newCoalescer(time.Second)
	b.ReportAllocs()
	for b.Loop() {
		for _, f := range fs {
			co.add(f)
		}
		if got := co.flush(); len(got) != 10 {
			b.Fatalf("kept %d", len(got))
		}
	}
}

// BenchmarkDeliverDirectMulti is BenchmarkDeliverDirect for a stream of 8
// courses (the event's is the fourth): the id line is the stream's cursor,
// built per delivery, and the event's shared body is gathered after it in
// one writev. It must not allocate.
func BenchmarkDeliverDirectMulti(b *testing.B) {
	courses := []string{"course-100", "course-101", "course-102", "course-123", "course-104", "course-105", "course-106", "course-107"}
	c, d := benchDirect(b, request{courses: courses, ids: idCursor})
	for i := range c.lanes {
		c.lanes[i].sent = uint64(1000 * i)
	}
	l := &c.lanes[3]
	evs, fs := benchEvents(b, 4096)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		ev := evs[i%len(evs)]
		if ev.ID == 1 {
			l.pos = 0
		}
		l.topic.last.Store(fs[i%len(fs)])
		c.onEvent(l, ev)
		if next, _ := c.h.runq.Pop(); next != d {
			b.Fatal("not scheduled")
		}
		d.runTurn()
	}
}

// benchDirect is a live direct stream for req over a real loopback TCP
// connection whose other end reads and drops everything; every course is
// wide enough that the workers write (not the publisher inline). Its
// client buffer is one no loaded machine fills: a reader that falls behind
// the loop for a moment must not get the stream cut as slow.
func benchDirect(b *testing.B, req request) (*conn, *direct) {
	b.Helper()
	h := New(observer.NewMemory(observer.MemoryConfig{Logger: quiet()}), Config{Logger: quiet(), ClientBuffer: 1 << 30})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { client.Close() })
	server, err := ln.Accept()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { server.Close() })
	go func() { _, _ = io.Copy(io.Discard, client) }() // ends when client is closed
	ctx, cancel := context.WithCancelCause(context.Background())
	b.Cleanup(func() { cancel(nil) })
	c := newConn(h, ctx, cancel, req)
	for i := range c.lanes {
		c.lanes[i].topic = new(topic) // as register sets it
		c.lanes[i].topic.streams.Store(inlineFanout + 1)
	}
	s, err := newSocket(server, h.cfg.ClientBuffer, h.cfg.WriteTimeout, &h.wg, c.stop)
	if err != nil {
		b.Fatal(err)
	}
	d := &direct{c: c, s: s}
	c.out = d
	c.mu.Lock()
	c.goLiveLocked()
	c.mu.Unlock()
	return c, d
}

// BenchmarkPublishHTTP is the publish endpoint's own cost per event: the
// body read and decoded, the event checked, stored and announced (to no
// stream), the 201 written; what every delivery of a lightly fanned-out
// event carries (performance.md, spread).
func BenchmarkPublishHTTP(b *testing.B) {
	broker := observer.NewMemory(observer.MemoryConfig{})
	p := NewPublisher(broker, PublishConfig{})
	body := []byte(`{"type":"upload-progress","data":{"t":1764766000000000000,"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}`)
	req := httptest.NewRequest(http.MethodPost, "/v1/courses/c1/events", nil)
	req.SetPathValue("courseId", "c1")
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		req.Body = io.NopCloser(bytes.NewReader(body))
		clear(w.h)
		p.ServeHTTP(w, req)
		if w.code != http.StatusCreated {
			b.Fatalf("status %d", w.code)
		}
	}
}

// discardWriter is a ResponseWriter that keeps the status only.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }
