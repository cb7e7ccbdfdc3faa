package stream

import (
	"context"
	"net/http"
	"testing"

	"coursestream/observer"
)

// lyingBroker announces an event its history never shows: the broker
// promise broken. The stream must not go on with a silent gap.
type lyingBroker struct {
	*observer.Memory
}

// Subscribe announces id 9 at once: the connection is still replaying.
func (b *lyingBroker) Subscribe(ctx context.Context, course string, l observer.Listener) (func(), error) {
	l(&observer.Event{ID: 9, CourseID: course, Type: "upload-complete"})
	return func() {}, nil
}

func TestAnnouncedEventMissingFromHistoryResets(t *testing.T) {
	m := observer.NewMemory(observer.MemoryConfig{Logger: quiet()})
	b := &lyingBroker{Memory: m}
	for range 3 {
		if _, err := m.Publish(context.Background(), observer.Message{CourseID: "c1", Type: "upload-complete"}); err != nil {
			t.Fatal(err)
		}
	}
	_, srv := serveHub(t, b, Config{}, func(mux *http.ServeMux, h *Hub) { mux.Handle("GET /v1/courses/{courseId}/events", h) })

	// The broker announces id 9 while the client replays; history only
	// goes to 3.
	e := &env{t: t, srv: srv, client: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}}
	c := e.open("/v1/courses/c1/events", map[string]string{"Last-Event-ID": "0"})
	got := c.events(4)
	if ids := frameIDs(got[:3]); ids[0] != 1 || ids[2] != 3 {
		t.Fatalf("replay %v", ids)
	}
	if got[3].event != "reset" || got[3].id != "9" {
		t.Fatalf("after the replay got %+v, want a reset to 9", got[3])
	}
}
