package observer

import (
	"log/slog"
	"sync"
)

// Listener receives one course's events, in id order, each once. It is
// called on the publishing goroutine and must not block: copy what you need
// into your own bounded queue and return. A listener that panics is logged
// and skipped; it never affects another listener.
type Listener func(ev *Event)

// Observer fans each course's events out to the local listeners of that
// course: the seed design's observer, on the server. Subscribe returns the
// unsubscribe function. It is safe for concurrent use; Emit for one course
// must be called by one goroutine at a time (the broker serializes it), which
// keeps every listener's view in id order.
type Observer struct {
	log *slog.Logger

	mu      sync.RWMutex
	courses map[string]*listeners
}

type listeners struct {
	mu   sync.RWMutex
	subs []*subscription
}

type subscription struct {
	fn    Listener
	index int // position in listeners.subs, under listeners.mu
}

// NewObserver returns an empty observer. A nil logger means slog.Default().
func NewObserver(log *slog.Logger) *Observer {
	if log == nil {
		log = slog.Default()
	}
	return &Observer{log: log, courses: make(map[string]*listeners)}
}

// Subscribe adds fn as a listener of courseID's events and returns the
// function that removes it. Calling the returned function more than once is
// harmless; a listener must not call it from inside its own call.
func (o *Observer) Subscribe(courseID string, fn Listener) (unsubscribe func()) {
	s := &subscription{fn: fn}
	o.mu.Lock()
	ls := o.courses[courseID]
	if ls == nil {
		ls = &listeners{}
		o.courses[courseID] = ls
	}
	ls.mu.Lock()
	s.index = len(ls.subs)
	ls.subs = append(ls.subs, s)
	ls.mu.Unlock()
	o.mu.Unlock()

	var once sync.Once
	return func() { once.Do(func() { o.remove(courseID, ls, s) }) }
}

func (o *Observer) remove(courseID string, ls *listeners, s *subscription) {
	o.mu.Lock()
	defer o.mu.Unlock()
	ls.mu.Lock()
	last := len(ls.subs) - 1
	moved := ls.subs[last]
	ls.subs[s.index] = moved
	moved.index = s.index
	ls.subs[last] = nil
	ls.subs = ls.subs[:last]
	empty := len(ls.subs) == 0
	ls.mu.Unlock()
	if empty && o.courses[courseID] == ls {
		delete(o.courses, courseID)
	}
}

// Emit calls every listener of ev.CourseID with ev and returns how many
// there were.
func (o *Observer) Emit(ev *Event) int {
	o.mu.RLock()
	ls := o.courses[ev.CourseID]
	o.mu.RUnlock()
	if ls == nil {
		return 0
	}
	ls.mu.RLock()
	defer ls.mu.RUnlock()
	for _, s := range ls.subs {
		o.call(s.fn, ev)
	}
	return len(ls.subs)
}

func (o *Observer) call(fn Listener, ev *Event) {
	defer func() {
		if p := recover(); p != nil {
			o.log.Error("observer: listener panicked", slog.Any("event", ev), slog.Any("panic", p))
		}
	}()
	fn(ev)
}

// Listeners returns the number of listeners of one course.
func (o *Observer) Listeners(courseID string) int {
	o.mu.RLock()
	ls := o.courses[courseID]
	o.mu.RUnlock()
	if ls == nil {
		return 0
	}
	ls.mu.RLock()
	defer ls.mu.RUnlock()
	return len(ls.subs)
}
