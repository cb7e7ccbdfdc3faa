package stream

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"coursestream/observer"
)

func post(t *testing.T, e *env, course, body string) (int, map[string]string) {
	t.Helper()
	resp, err := e.client.Post(e.srv.URL+"/v1/courses/"+course+"/events", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("%s: body is not a JSON object: %v", body, err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	return resp.StatusCode, out
}

func TestPublishHTTP(t *testing.T) {
	e := newEnv(t, Config{}, observer.MemoryConfig{MaxEventBytes: 1024})
	code, out := post(t, e, "course-123", `{"type":"chapter-update-complete","data":{"chapterId":"ch-1", "n": 12345678901234567890, "z":[]},"operationId":"op-9"}`)
	if code != http.StatusCreated || out["id"] != "1" {
		t.Fatalf("got %d %v, want 201 id 1", code, out)
	}
	p, _ := e.broker.History(context.Background(), "course-123", 0, 10)
	ev := p.Events[0]
	if string(ev.Data) != `{"chapterId":"ch-1","n":12345678901234567890,"z":[]}` || ev.OperationID != "op-9" {
		t.Fatalf("stored %s %q: data must keep its value, digits and order", ev.Data, ev.OperationID)
	}
	if code, out := post(t, e, "course-123", `{"type":"upload-complete"}`); code != http.StatusCreated || out["id"] != "2" {
		t.Fatalf("no data: got %d %v", code, out)
	}

	for _, tc := range []struct {
		course, body string
		want         int
	}{
		{"course-123", `{"type":"chapter-update-complete","data":`, http.StatusBadRequest},
		{"course-123", `[]`, http.StatusBadRequest},
		{"course-123", `{"data":{}}`, http.StatusBadRequest},
		{"course-123", `{"type":"Bad Type","data":{}}`, http.StatusBadRequest},
		{"course-123", `{"type":"reset","data":{}}`, http.StatusBadRequest},
		{"course-123", `{"type":7}`, http.StatusBadRequest},
		{"course-123", `{"type":"x","operationId":5}`, http.StatusBadRequest},
		{"course-123", `{"type":"x","operationId":"` + strings.Repeat("o", 129) + `"}`, http.StatusBadRequest},
		{"course-123", "{\"type\":\"x\",\"data\":\"\xff\"}", http.StatusBadRequest},
		{"course-123", `{"type":"x"} trailing`, http.StatusBadRequest},
		{"-bad", `{"type":"x"}`, http.StatusBadRequest},
		{"course-123", `{"type":"x","data":"` + strings.Repeat("a", 1100) + `"}`, http.StatusRequestEntityTooLarge},
		{"course-123", `{"type":"x","data":"` + strings.Repeat("a", 5000) + `"}`, http.StatusRequestEntityTooLarge},
	} {
		code, out := post(t, e, tc.course, tc.body)
		if code != tc.want || out["error"] == "" {
			t.Errorf("POST %.60s: got %d %v, want %d with an error", tc.body, code, out, tc.want)
		}
	}
	if last, _ := e.broker.LastID(context.Background(), "course-123"); last != 2 {
		t.Fatalf("bad input stored something: last id %d, want 2", last)
	}
}
