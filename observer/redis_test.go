package observer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"coursestream/internal/redistest"
)

// TestRedisTwoInstancesAreOneService: a listener on one instance gets, in
// order and once, what the other instance and a backend's FCALL publish;
// both instances answer the same history and last id.
func TestRedisTwoInstancesAreOneService(t *testing.T) {
	t.Parallel()
	srv := startRedis(t, redistest.Options{})
	a := runRedis(t, RedisConfig{URL: srv.URL()})
	b := runRedis(t, RedisConfig{URL: srv.URL()})
	rc := subscribe(t, a, "course-123")

	ev := pub(t, b, "course-123")
	if ev.ID != 1 || !strings.HasPrefix(string(ev.JSON), `{"id":"1","courseId":"course-123","type":"chapter-update-complete","data":{"chapterId":"ch"},"timestamp":`) {
		t.Fatalf("published %d %s", ev.ID, ev.JSON)
	}
	id, err := PublishFCALL(context.Background(), srv.Client(), Message{CourseID: "course-123", Type: "video-update-complete", Data: json.RawMessage(`{"videoId":"v1"}`), OperationID: "op-1"})
	if err != nil || id != 2 {
		t.Fatalf("FCALL publish: id %d, %v", id, err)
	}
	pub(t, a, "course-123")
	evs := rc.waitFor(t, "three events", upTo(3))
	checkOrder(t, evs, 1)
	if len(evs) != 3 {
		t.Fatalf("got %s", describe(evs))
	}
	if string(ev.JSON) != string(evs[0].JSON) || string(ev.Data) != string(evs[0].Data) || ev.Timestamp != evs[0].Timestamp ||
		ev.CourseID != evs[0].CourseID || ev.Type != evs[0].Type || ev.OperationID != evs[0].OperationID {
		t.Fatalf("Publish returned %+v, listeners got %+v", ev, evs[0])
	}
	if evs[1].OperationID != "op-1" || string(evs[1].Data) != `{"videoId":"v1"}` || evs[1].Type != "video-update-complete" {
		t.Fatalf("FCALL event arrived as %s", evs[1].JSON)
	}
	for _, x := range []*Redis{a, b} {
		p, err := x.History(context.Background(), "course-123", 0, 10)
		if err != nil || p.LastID != 3 || len(p.Events) != 3 || p.Reset {
			t.Fatalf("History = %+v, %v", p, err)
		}
		for i, ev := range p.Events {
			if string(ev.JSON) != string(evs[i].JSON) {
				t.Fatalf("history event %d is %s, live was %s", i, ev.JSON, evs[i].JSON)
			}
		}
		if last, err := x.LastID(context.Background(), "course-123"); err != nil || last != 3 {
			t.Fatalf("LastID = %d, %v", last, err)
		}
	}
}

// TestRedisLibraryMatchesGoValidation feeds the same inputs to FCALL and to
// Message.Normalize + NewEvent: they must accept and refuse alike (with the
// same error), and an accepted event's envelope must be the one Go would
// encode for the data as stored (kept as written, line breaks as spaces).
func TestRedisLibraryMatchesGoValidation(t *testing.T) {
	t.Parallel()
	srv := startRedis(t, redistest.Options{})
	r := runRedis(t, RedisConfig{URL: srv.URL()})
	rdb := srv.Client()
	ctx := context.Background()

	deep := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	type tc struct {
		course, typ, data, op string
	}
	ok := func(data string) tc { return tc{"c", "t", data, ""} }
	cases := []tc{
		// Data accepted by both.
		ok(`{"chapterId":"ch-1"}`), ok(`[]`), ok(`12345678901234567890`), ok(`{"b":1,"a":2}`),
		ok(`{"a" : 1}`), ok("{\n\"a\":\r\n1}\n"), ok(`"é"`), ok(`"\u00e9"`), ok(`"\ud800"`), ok(`-0`),
		ok(`0.5`), ok(`1e5`), ok(`1E+5`), ok(`-1.5e-3`), ok(`true`), ok(`false`), ok(`null`), ok(`""`),
		ok(` `), ok(``), ok("\v"), ok("\u00a0"), ok("\u2028 \u3000"), ok(deep(10000)),
		ok(deep(9999)), ok(`{"a":[1,{"b":null}],"c":{}}`), ok(`"\/\b\f\n\r\t\"\\"`), ok(" \t[ 1 , 2 ]\t "), ok(`{"":""}`),
		ok("\"\U0001F600\""), ok(`0`), ok(`[0,-0.0e0]`),
		// Data cjson would accept, JSON does not.
		ok(`NaN`), ok(`Infinity`), ok(`-Infinity`), ok(`inf`), ok(`nan`), ok(`0x10`), ok(`1.`), ok(`.5`),
		ok(`+1`), ok(`01`), ok(`-01`), ok(`[1,]`), ok(`{"a":1,}`), ok(`{a:1}`), ok(`'a'`),
		// Other refusals.
		ok(`-`), ok(`1e`), ok(`1e+`), ok(`{} x`), ok(`{}{}`), ok("\"a\tb\""), ok(`"\x"`), ok(`"\u12"`),
		ok(`"\u12G4"`), ok(`"abc`), ok(`[`), ok(`]`), ok(`{"a"}`), ok(`{"a":}`), ok(`nul`), ok(`tru`),
		ok(`[1 2]`), ok(`{"a":1 "b":2}`), ok(deep(10001)), ok("\xff"), ok("\"\xc0\x80\""),
		ok("\"\xed\xa0\x80\""), ok("\"\xf4\x90\x80\x80\""), ok("\"\xe2\x82\""), ok("\x00"), ok("[1]\x00"),
		ok("1 \v"), ok("\"\x7f\""), ok("{\"é\":\"\xff\"}"), ok("{\"\xe2\x82\":1}"), ok("[\"\x7f\", \"aé\U0001F600b\"]"),
		ok("{\"k\":\"\xed\xbf\xbf\"}"), ok("\"\xf0\x8f\xbf\xbf\""), ok("\"\xe0\x9f\xbf\""), ok(`{"a":1}}`), ok(`[}`), ok(`{]`), ok(`truex`), ok(`1.5.5`), ok(`"a"b`),
		// Course ids.
		{"", "t", "1", ""}, {"a", "t", "1", ""}, {strings.Repeat("a", 128), "t", "1", ""},
		{strings.Repeat("a", 129), "t", "1", ""}, {"a/b", "t", "1", ""}, {"-a", "t", "1", ""},
		{"_a", "t", "1", ""}, {"A:b.c-d_e9", "t", "1", ""}, {"é", "t", "1", ""}, {"a b", "t", "1", ""},
		{"a{b}", "t", "1", ""},
		// Types.
		{"c", "", "1", ""}, {"c", "Reset", "1", ""}, {"c", "reset", "1", ""}, {"c", "reset2", "1", ""},
		{"c", strings.Repeat("x", 64), "1", ""}, {"c", strings.Repeat("x", 65), "1", ""},
		{"c", "a b", "1", ""}, {"c", "9x._-", "1", ""}, {"c", ".x", "1", ""},
		// Operation ids.
		{"c", "t", "1", strings.Repeat("é", 128)}, {"c", "t", "1", strings.Repeat("é", 129)},
		{"c", "t", "1", strings.Repeat("a", 129)}, {"c", "t", "1", "\xff"},
		{"c", "t", "1", "<>&\"\\\n\r\t\b\f\x01\x1f\x7f\u2028\u2029 é \U0001F600"},
		// Size: far too large; checks on fields come before size.
		ok(`"` + strings.Repeat("x", 70000) + `"`), {"c", "BAD", `"` + strings.Repeat("x", 70000) + `"`, ""},
	}
	// The size boundary: an envelope of exactly MaxEventBytes, then one more.
	base := len(AppendEnvelope(nil, &Event{ID: 1, CourseID: "c", Type: "t", Data: json.RawMessage(`""`), Timestamp: time.Now().UnixMilli()}))
	fill := DefaultMaxEventBytes - base
	cases = append(cases, ok(`"`+strings.Repeat("x", fill)+`"`), ok(`"`+strings.Repeat("x", fill+1)+`"`))

	for i, c := range cases {
		course := c.course
		if course == "c" {
			course = "c" + strconv.Itoa(i) // a fresh course: the id is 1, as Go's check assumes
		}
		msg := Message{CourseID: course, Type: c.typ, Data: json.RawMessage(c.data), OperationID: c.op}
		goData, goErr := msg.Normalize()
		if goErr == nil {
			_, goErr = NewEvent(msg, goData, 1, time.Now().UnixMilli(), DefaultMaxEventBytes)
		}
		args := []any{c.typ, c.data}
		if c.op != "" {
			args = append(args, c.op)
		}
		v, rawErr := rdb.FCall(ctx, fnPublishEvent, []string{course}, args...).Result()
		luaErr := mapError(rawErr)
		name := fmt.Sprintf("case %d (%q %q %.40q %q)", i, truncate(c.course), truncate(c.typ), c.data, c.op)
		if c.data == deep(10000) && goErr == nil && errors.Is(luaErr, ErrInvalidData) {
			// The one difference, on purpose: Normalize accepts data nested
			// 10000 deep, but its envelope (one level more) is past what
			// ParseEnvelope reads, so no instance could deliver it.
			continue
		}
		if (goErr == nil) != (rawErr == nil) {
			t.Errorf("%s: Go says %v, FCALL says %v", name, goErr, rawErr)
			continue
		}
		if goErr != nil {
			if !strings.HasPrefix(rawErr.Error(), ErrorPrefix) {
				t.Errorf("%s: error reply %q does not start with %q", name, rawErr, ErrorPrefix)
			}
			if sentinel(goErr) != sentinel(luaErr) {
				t.Errorf("%s: Go refuses with %v, FCALL with %v", name, goErr, luaErr)
			}
			if n, _ := rdb.Exists(ctx, SeqKey(course), HistoryKey(course)).Result(); n != 0 {
				t.Errorf("%s: a refused call stored something", name)
			}
			continue
		}
		arr := v.([]any)
		env := arr[1].(string)
		stored, err := ParseEnvelope([]byte(env))
		if err != nil {
			t.Errorf("%s: stored envelope %q: %v", name, env, err)
			continue
		}
		// Stored as written: blank data is null, line breaks are spaces.
		want := c.data
		if blankData(c.data) {
			want = "null"
		}
		want = strings.NewReplacer("\r", " ", "\n", " ").Replace(want)
		goEnv := AppendEnvelope(nil, &Event{ID: 1, CourseID: course, Type: c.typ, Data: json.RawMessage(want), OperationID: c.op, Timestamp: stored.Timestamp})
		if string(goEnv) != env {
			t.Errorf("%s: envelope\n Lua %.200q\n Go  %.200q", name, env, goEnv)
		}
		if !json.Valid([]byte(env)) || strings.ContainsAny(env, "\r\n") {
			t.Errorf("%s: envelope not one line of JSON: %q", name, env)
		}
	}
	_ = r
}

// blankData: Go stores null for data that bytes.TrimSpace empties.
func blankData(s string) bool { return len(bytes.TrimSpace([]byte(s))) == 0 }

func sentinel(err error) error {
	for _, e := range []error{ErrInvalidCourseID, ErrInvalidType, ErrInvalidData, ErrInvalidOperationID, ErrTooLarge, ErrRefused, ErrUnavailable} {
		if errors.Is(err, e) {
			return e
		}
	}
	return err
}

// TestRedisFunctionErrorReplies: what a backend sees when it calls the
// function wrongly; nothing is stored and no id is used.
func TestRedisFunctionErrorReplies(t *testing.T) {
	t.Parallel()
	srv := startRedis(t, redistest.Options{})
	runRedis(t, RedisConfig{URL: srv.URL(), MaxEventBytes: 256})
	rdb := srv.Client()
	ctx := context.Background()
	for _, tc := range []struct {
		keys []string
		args []any
		want string
	}{
		{[]string{"c"}, []any{"BAD", "{}"}, "ERR coursestream: invalid event type"},
		{[]string{"c"}, []any{"t", "{"}, "ERR coursestream: invalid data: not a JSON value"},
		{[]string{"c"}, []any{"t", "NaN"}, "ERR coursestream: invalid data"},
		{[]string{"c/1"}, []any{"t", "{}"}, "ERR coursestream: invalid course id"},
		{[]string{"c"}, []any{"t", "{}", strings.Repeat("o", 129)}, "ERR coursestream: invalid operation id"},
		{[]string{"c"}, []any{"t", `"` + strings.Repeat("x", 300) + `"`}, "ERR coursestream: event too large: the envelope is"},
		{[]string{"c"}, []any{"reset", "{}"}, "ERR coursestream: invalid event type: \"reset\" is reserved"},
		{[]string{"c"}, nil, "ERR coursestream: want <type> <data JSON> [<operationId>]"},
		{[]string{"c"}, []any{"t"}, "ERR coursestream: missing data"},
		{[]string{"c"}, []any{"t", ""}, "ERR coursestream: invalid data: not a JSON value"},
		{[]string{"c"}, []any{"t", " \n "}, "ERR coursestream: invalid data: not a JSON value"},
		{[]string{"c"}, []any{"t", "{}", "op", "extra"}, "ERR coursestream: want <type>"},
		{[]string{"c", "d"}, []any{"t", "{}"}, "ERR coursestream: want 1 key"},
	} {
		err := rdb.FCall(ctx, FunctionPublish, tc.keys, tc.args...).Err()
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("FCALL %v %v: %v, want %q...", tc.keys, tc.args, err, tc.want)
		}
	}
	if n, _ := rdb.DBSize(ctx).Result(); n != 0 {
		keys, _ := rdb.Keys(ctx, "*").Result()
		t.Fatalf("refused calls stored %v", keys)
	}
	id, err := rdb.FCall(ctx, FunctionPublish, []string{"c"}, "t", "{}").Int64()
	if err != nil || id != 1 {
		t.Fatalf("first valid call: %d, %v; want id 1", id, err)
	}
	// The same errors come out of the broker as the embedded broker's.
	r2, _ := NewRedis(RedisConfig{URL: srv.URL()})
	defer r2.Close()
	_, err = r2.Publish(ctx, Message{CourseID: "c", Type: "t", Data: json.RawMessage(`"` + strings.Repeat("x", 300) + `"`)})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Publish too large: %v", err)
	}
	if _, err := PublishFCALL(ctx, rdb, Message{CourseID: "c", Type: "t", Data: json.RawMessage(`Infinity`)}); !errors.Is(err, ErrInvalidData) {
		t.Fatalf("PublishFCALL Infinity: %v", err)
	}
}

// TestRedisKeysTTLAndTrim: key names, hash tags, TTLs and MAXLEN ~.
func TestRedisKeysTTLAndTrim(t *testing.T) {
	t.Parallel()
	srv := startRedis(t, redistest.Options{})
	r := runRedis(t, RedisConfig{URL: srv.URL(), History: 10, HistoryTTL: time.Hour})
	rdb := srv.Client()
	ctx := context.Background()
	for range 350 {
		pub(t, r, "course-1")
	}
	if ttl, _ := rdb.PTTL(ctx, SeqKey("course-1")).Result(); ttl != -1 {
		t.Fatalf("sequence TTL %v, want none", ttl)
	}
	if ttl, _ := rdb.PTTL(ctx, HistoryKey("course-1")).Result(); ttl <= 59*time.Minute || ttl > time.Hour {
		t.Fatalf("history TTL %v, want about 1h", ttl)
	}
	n, _ := rdb.XLen(ctx, HistoryKey("course-1")).Result()
	if n < 10 || n > 10+100 {
		t.Fatalf("history holds %d, want at least 10 and at most about 100 more", n)
	}
	last, _ := rdb.XRevRangeN(ctx, HistoryKey("course-1"), "+", "-", 1).Result()
	if len(last) != 1 || last[0].ID != "350-0" {
		t.Fatalf("last entry %v, want id 350-0", last)
	}
	p, err := r.History(ctx, "course-1", 0, 10)
	if err != nil || !p.Reset || p.LastID != 350 {
		t.Fatalf("History after 0 of a trimmed course: %+v %v, want a reset at 350", p, err)
	}
	p, err = r.History(ctx, "course-1", 345, 3)
	if err != nil || p.Reset || !equalIDs(ids(p.Events), []uint64{346, 347, 348}) || !p.More() {
		t.Fatalf("History after 345, limit 3: %+v %v", p, err)
	}
	p, _ = r.History(ctx, "course-1", 351, 3)
	if !p.Reset || p.LastID != 350 {
		t.Fatalf("History ahead of the course: %+v", p)
	}
	p, _ = r.History(ctx, "none", 0, 3)
	if p.Reset || p.LastID != 0 || len(p.Events) != 0 {
		t.Fatalf("History of an unknown course: %+v", p)
	}
	for _, k := range []string{SeqKey("x"), HistoryKey("x"), ChannelName("x")} {
		if slotOf(k) != slotOf("x") {
			t.Fatalf("%s is not in the slot of x", k)
		}
		got, err := rdb.ClusterKeySlot(ctx, k).Result()
		if err == nil && int(got) != slotOf(k) { // CLUSTER KEYSLOT answers without cluster mode
			t.Fatalf("slotOf(%s) = %d, Redis says %d", k, slotOf(k), got)
		}
	}
	// The history expires; the sequence does not: ids go on.
	if err := rdb.Del(ctx, HistoryKey("course-1")).Err(); err != nil {
		t.Fatal(err)
	}
	if ev := pub(t, r, "course-1"); ev.ID != 351 {
		t.Fatalf("after the history expired, id %d, want 351", ev.ID)
	}
	// The sequence key deleted by hand: ids still never restart.
	if err := rdb.Del(ctx, SeqKey("course-1")).Err(); err != nil {
		t.Fatal(err)
	}
	if ev := pub(t, r, "course-1"); ev.ID != 352 {
		t.Fatalf("after the sequence key was deleted, id %d, want 352", ev.ID)
	}
}

// TestRedisSubscribeThenHistoryHasNoGap is the Broker promise under
// concurrent publishing by another instance: subscribe, then read the
// history; together they hold every event.
func TestRedisSubscribeThenHistoryHasNoGap(t *testing.T) {
	t.Parallel()
	srv := startRedis(t, redistest.Options{})
	a := runRedis(t, RedisConfig{URL: srv.URL()})
	b := runRedis(t, RedisConfig{URL: srv.URL()})
	ctx := context.Background()
	const total = 600
	quarter, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for i := range total {
			if i == total/4 {
				close(quarter)
			}
			if _, err := b.Publish(ctx, Message{CourseID: "c", Type: "t"}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	<-quarter
	rc := newRecorder()
	un, err := a.Subscribe(ctx, "c", rc.listen)
	if err != nil {
		t.Fatal(err)
	}
	defer un()
	p, err := a.History(ctx, "c", 0, MaxPage)
	if err != nil {
		t.Fatal(err)
	}
	<-done
	live := rc.waitFor(t, "the last event", upTo(total))
	last := uint64(0)
	for _, id := range ids(p.Events) {
		if id != last+1 {
			t.Fatalf("history gap between %d and %d", last, id)
		}
		last = id
	}
	if last < total/4 {
		t.Fatalf("history ends at %d", last)
	}
	for _, ev := range live {
		if ev.Reset {
			t.Fatalf("unexpected reset %s", describe(live))
		}
		if ev.ID <= last {
			continue
		}
		if ev.ID != last+1 {
			t.Fatalf("gap between %d and %d", last, ev.ID)
		}
		last = ev.ID
	}
	checkOrder(t, live, live[0].ID)
}

// TestRedisSubscribeChurn: listeners come and go while events flow; the
// channel is unsubscribed after the last one and a returning listener
// gets what is published after.
func TestRedisSubscribeChurn(t *testing.T) {
	t.Parallel()
	srv := startRedis(t, redistest.Options{})
	r := runRedis(t, RedisConfig{URL: srv.URL()})
	rdb := srv.Client()
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			course := "churn-" + strconv.Itoa(w%3)
			for range 25 {
				un, err := r.Subscribe(ctx, course, func(*Event) {})
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := r.Publish(ctx, Message{CourseID: course, Type: "t"}); err != nil {
					t.Error(err)
				}
				un()
			}
		})
	}
	wg.Wait()
	// Every course's channel ends unsubscribed (the control loop catches up).
	deadline := time.Now().Add(testWait)
	for {
		subs, err := rdb.PubSubNumSub(ctx, ChannelName("churn-0"), ChannelName("churn-1"), ChannelName("churn-2")).Result()
		if err != nil {
			t.Fatal(err)
		}
		if subs[ChannelName("churn-0")]+subs[ChannelName("churn-1")]+subs[ChannelName("churn-2")] == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still subscribed: %v", subs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	rc := subscribe(t, r, "churn-0")
	ev := pub(t, r, "churn-0")
	got := rc.waitFor(t, "the new event", upTo(ev.ID))
	if len(got) != 1 || got[0].ID != ev.ID {
		t.Fatalf("a returning listener got %s, want only %d", describe(got), ev.ID)
	}
	if n := r.Observer().Total(); n != 1 {
		t.Fatalf("%d listeners left, want 1", n)
	}
}

var _ = redis.Nil
