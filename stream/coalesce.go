package stream

import (
	"cmp"
	"encoding/json"
	"slices"
	"time"
)

// coalescer is the debounced mode (?coalesce=): within each window at most
// one event per (course, type, subject) is sent, the latest, where subject
// is data.chapterId, data.videoId or else nothing (the type alone). What it
// sends keeps the order in which the stream received the kept events: each
// course's in id order, different courses' as they arrived. A zero window
// disables it. It is used by whoever writes the stream (a hub worker, or
// the request goroutine), one at a time.
type coalescer struct {
	window  time.Duration
	pending map[coalesceKey]kept
	seq     uint64 // arrival order of what add was given
	sorted  []kept // flush's buffer, reused
}

type coalesceKey struct{ course, typ, subject string }

// kept is the latest frame of a key and when it arrived.
type kept struct {
	f   *frame
	seq uint64
}

// newCoalescer is not inlined: inlined, its struct and map would live in
// the stream's long-lived stack frame.
//
//go:noinline
func newCoalescer(window time.Duration) *coalescer {
	if window <= 0 {
		return &coalescer{}
	}
	return &coalescer{window: window, pending: make(map[coalesceKey]kept)}
}

func (co *coalescer) enabled() bool { return co.window > 0 }

// add keeps ev as the latest of its key. It reports whether ev is the first
// event of a window (the caller then starts the timer).
func (co *coalescer) add(f *frame) (first bool) {
	first = len(co.pending) == 0
	co.seq++
	co.pending[coalesceKey{f.ev.CourseID, f.ev.Type, f.subjectOf()}] = kept{f, co.seq}
	return first
}

// flush returns the kept events in the order they arrived and empties the
// window.
func (co *coalescer) flush() []*frame {
	if len(co.pending) == 0 {
		return nil
	}
	ks := co.sorted[:0]
	for k, e := range co.pending {
		ks = append(ks, e)
		delete(co.pending, k)
	}
	slices.SortFunc(ks, func(a, b kept) int { return cmp.Compare(a.seq, b.seq) })
	fs := make([]*frame, len(ks))
	for i, e := range ks {
		fs[i] = e.f
	}
	clear(ks) // keep no frame alive
	co.sorted = ks
	return fs
}

// subjectOf is what the frame's event is about, for debouncing:
// data.chapterId, else data.videoId (as JSON text, so "1" and 1 differ,
// prefixed so that a chapter and a video of the same id differ), else "".
// It is computed once per frame, however many streams ask.
func (f *frame) subjectOf() string {
	if p := f.subject.Load(); p != nil {
		return *p
	}
	s := subjectOf(f.ev.Data)
	f.subject.Store(&s)
	return s
}

func subjectOf(data json.RawMessage) string {
	if len(data) == 0 || data[0] != '{' {
		return ""
	}
	var s struct {
		ChapterID json.RawMessage `json:"chapterId"`
		VideoID   json.RawMessage `json:"videoId"`
	}
	if json.Unmarshal(data, &s) != nil {
		return ""
	}
	switch {
	case len(s.ChapterID) > 0 && string(s.ChapterID) != "null":
		return "c" + string(s.ChapterID)
	case len(s.VideoID) > 0 && string(s.VideoID) != "null":
		return "v" + string(s.VideoID)
	}
	return ""
}
