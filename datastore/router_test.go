package datastore

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tidemq/tide/core/event"
)

// fastRunner writes each record at once.
func fastRunner(t *testing.T, name string, f Sink) *Runner {
	return newRunner(t, f, RunnerOptions{Name: name, BatchSize: 1, FlushInterval: time.Millisecond})
}

func TestDispatchOncePerSink(t *testing.T) {
	a, b, c := newFake(), newFake(), newFake()
	rt, err := NewRouter([]*Runner{fastRunner(t, "a", a), fastRunner(t, "b", b), fastRunner(t, "c", c)}, []Route{
		{Topics: []string{"#"}, Sinks: []string{"a"}},
		{Topics: []string{"x/#", "x/+"}, Sinks: []string{"a", "b"}},
		{Topics: []string{"$SYS/#"}, Sinks: []string{"c"}},
	}, RouterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rt.Dispatch(&event.Message{ID: "m1", Topic: "x/y", Payload: []byte("1")})
	rt.Dispatch(&event.Message{ID: "m2", Topic: "other", Payload: []byte("2")})
	rt.Dispatch(&event.Message{ID: "m3", Topic: "$SYS/broker/uptime", Payload: []byte("3")})
	eventually(t, "records", func() bool { return len(a.stored()) == 2 && len(b.stored()) == 1 && len(c.stored()) == 1 })
	closeRouter(t, rt)
	sameIDs(t, "a", a.stored(), []string{"m1", "m2"})
	sameIDs(t, "b", b.stored(), []string{"m1"})
	sameIDs(t, "c", c.stored(), []string{"m3"})
	for name, f := range map[string]*fakeSink{"a": a, "b": b, "c": c} {
		for id, n := range f.count {
			if n != 1 {
				t.Errorf("sink %s stored %s %d times", name, id, n)
			}
		}
	}
	if st := rt.Stats(); st.Received != 3 || st.Refused != 0 {
		t.Fatalf("router stats = %+v", st)
	}
}

func closeRouter(t *testing.T, rt *Router) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rt.Close(ctx); err != nil {
		t.Fatalf("router close: %v", err)
	}
}

func TestRouterFromBus(t *testing.T) {
	f := newFake()
	r := newRunner(t, f, RunnerOptions{Name: "s", BatchSize: 100, FlushInterval: time.Hour})
	rt, err := NewRouter([]*Runner{r}, []Route{{Topics: []string{"a/#"}, Sinks: []string{"s"}}}, RouterOptions{Shards: 2})
	if err != nil {
		t.Fatal(err)
	}
	bus := event.NewBus(nil)
	rt.Start(bus)
	if !bus.Wants(event.Publish) {
		t.Fatalf("the bus does not know the router wants publishes")
	}
	for i := range 50 {
		bus.Emit(&event.Event{Kind: event.Publish, Message: &event.Message{ID: rec(i).ID, Topic: "a/b", ClientID: "c" + string(rune('0'+i%5))}})
	}
	bus.Emit(&event.Event{Kind: event.Publish, Message: &event.Message{ID: "elsewhere", Topic: "b"}})
	// Close hands over what is queued and flushes the runner.
	closeRouter(t, rt)
	if got := len(f.stored()); got != 50 {
		t.Fatalf("stored %d records, want 50", got)
	}
	if bus.Wants(event.Publish) {
		t.Fatalf("the router is still subscribed after Close")
	}
	if st := rt.Stats(); st.Received != 51 || st.BusDropped != 0 {
		t.Fatalf("router stats = %+v", st)
	}
}

func TestNewRouterErrors(t *testing.T) {
	r := fastRunner(t, "s", newFake())
	_, err := NewRouter([]*Runner{r}, []Route{
		{Topics: []string{"a/#/b"}, Sinks: []string{"s"}},
		{Topics: []string{"ok"}, Sinks: []string{"nope"}},
	}, RouterOptions{})
	if err == nil || !strings.Contains(err.Error(), `"a/#/b"`) || !strings.Contains(err.Error(), `unknown sink "nope"`) {
		t.Fatalf("error = %v, want both problems", err)
	}
	if _, err := NewRouter([]*Runner{r, r}, nil, RouterOptions{}); err == nil {
		t.Fatalf("two sinks with one name accepted")
	}
}

func TestRouterWrite(t *testing.T) {
	f := newFake()
	r := newRunner(t, f, RunnerOptions{Name: "s", BatchSize: 1, QueueSize: 1, FlushInterval: time.Millisecond, RetryInitial: time.Millisecond, RetryMax: time.Millisecond})
	rt, err := NewRouter([]*Runner{r}, nil, RouterOptions{AcceptTimeout: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Write("nope", Record{}); err == nil {
		t.Fatalf("Write to an unknown sink succeeded")
	}
	if err := rt.Write("s", Record{Topic: "lua", Payload: []byte(`{"x":1}`), Extra: map[string]any{"k": "v"}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the record", func() bool { return len(f.stored()) == 1 })
	if id := f.stored()[0]; len(id) != 26 {
		t.Fatalf("id = %q, want one from event.NewID", id)
	}
	// The Lua module's way in: a map of fields.
	w := MapWriter{Router: rt}
	if err := w.Write("s", map[string]any{"id": "from-lua", "topic": "lua", "value": 21.5}); err != nil {
		t.Fatal(err)
	}
	if err := w.Write("s", map[string]any{"qos": "high"}); err == nil || !strings.Contains(err.Error(), "qos") {
		t.Fatalf("bad field = %v, want an error naming qos", err)
	}
	eventually(t, "the map record", func() bool { return len(f.stored()) == 2 && f.stored()[1] == "from-lua" })
	// A saturated sink: the Write waits AcceptTimeout, then says so.
	f.down.Store(true)
	eventually(t, "a full queue", func() bool {
		r.TryAccept(rec(0))
		return r.Stats().Queued == 2 && r.memLen() == 1 // one being written, one waiting
	})
	start := time.Now()
	err = rt.Write("s", Record{Topic: "lua"})
	if !errors.Is(err, ErrFull) || time.Since(start) < 20*time.Millisecond {
		t.Fatalf("Write to a saturated sink = %v after %v, want ErrFull after 20ms", err, time.Since(start))
	}
	if rt.Saturated("any/topic") {
		t.Fatalf("Saturated for a topic that no route sends to the sink")
	}
	// No progress since: the next record is refused without a wait.
	start = time.Now()
	if err := rt.Write("s", Record{Topic: "lua"}); !errors.Is(err, ErrFull) || time.Since(start) > 10*time.Millisecond {
		t.Fatalf("second Write to a stalled sink = %v after %v, want ErrFull at once", err, time.Since(start))
	}
	if st := rt.Stats(); st.Refused != 2 {
		t.Fatalf("refused = %d, want 2", st.Refused)
	}
	f.down.Store(false)
	eventually(t, "a write after the outage", func() bool { return rt.Write("s", Record{Topic: "lua"}) == nil })
}

func TestSaturatedAndWait(t *testing.T) {
	f := newFake()
	f.down.Store(true)
	r := newRunner(t, f, RunnerOptions{Name: "s", BatchSize: 100, FlushInterval: time.Hour, QueueSize: 10, RetryInitial: time.Millisecond, RetryMax: time.Millisecond})
	other := fastRunner(t, "o", newFake())
	rt, err := NewRouter([]*Runner{r, other}, []Route{
		{Topics: []string{"slow/#"}, Sinks: []string{"s"}},
		{Topics: []string{"#"}, Sinks: []string{"o"}},
	}, RouterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rt.Saturated("slow/x") {
		t.Fatalf("saturated before anything was queued")
	}
	accept(t, r, 0, 10)
	if !rt.Saturated("slow/x") || rt.Saturated("fast/x") {
		t.Fatalf("Saturated(slow) = %v, Saturated(fast) = %v; want true, false", rt.Saturated("slow/x"), rt.Saturated("fast/x"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := rt.WaitUnsaturated(ctx, "slow/x"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitUnsaturated = %v, want the deadline", err)
	}
	if err := rt.WaitUnsaturated(context.Background(), "fast/x"); err != nil {
		t.Fatalf("WaitUnsaturated on an unsaturated topic = %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- rt.WaitUnsaturated(context.Background(), "slow/x") }()
	f.down.Store(false)
	closeRunner(t, r, 5*time.Second) // flushes: the queue empties
	if err := <-done; err != nil {
		t.Fatalf("WaitUnsaturated after draining = %v", err)
	}
}

func TestRecordFromMessage(t *testing.T) {
	now := time.Now()
	m := &event.Message{ID: "id1", Time: now, ClientID: "c", Username: "u", Topic: "t", QoS: 1, Retain: true,
		Payload: []byte(`{"a":1}`), Props: event.Properties{ContentType: "application/json",
			User: []event.UserProperty{{Key: "k", Value: "1"}, {Key: "k", Value: "2"}, {Key: "z", Value: "3"}}}}
	r := RecordFromMessage(m)
	if r.ID != "id1" || !r.Time.Equal(now) || r.ClientID != "c" || r.Username != "u" || r.Topic != "t" || r.QoS != 1 || !r.Retain ||
		string(r.JSON) != `{"a":1}` || r.ContentType != "application/json" || r.UserProperties["k"] != "2" || r.UserProperties["z"] != "3" {
		t.Fatalf("record = %+v", r)
	}
	for _, p := range []string{"", "not json", "{\"a\":\"\xff\"}", "{"} {
		if r := RecordFromMessage(&event.Message{Payload: []byte(p)}); r.JSON != nil || r.ID == "" || r.Time.IsZero() {
			t.Errorf("payload %q: JSON %q, id %q, time %v; want no JSON, an id and a time", p, r.JSON, r.ID, r.Time)
		}
	}
}

func TestRecordFromMap(t *testing.T) {
	r, err := RecordFromMap(map[string]any{
		"topic": "t", "client_id": "c", "qos": float64(2), "retain": true, "payload": `{"v":1}`,
		"time": float64(1700000000.5), "user_properties": map[string]any{"k": "v"},
		"extra": map[string]any{"a": 1.0}, "room": "kitchen",
	})
	if err != nil {
		t.Fatal(err)
	}
	if r.Topic != "t" || r.ClientID != "c" || r.QoS != 2 || !r.Retain || string(r.JSON) != `{"v":1}` ||
		r.Time.UnixMilli() != 1700000000500 || r.UserProperties["k"] != "v" || r.Extra["a"] != 1.0 || r.Extra["room"] != "kitchen" {
		t.Fatalf("record = %+v", r)
	}
	if r, err := RecordFromMap(map[string]any{"time": "2025-01-02T03:04:05Z"}); err != nil || r.Time.Year() != 2025 {
		t.Fatalf("RFC 3339 time: %v, %v", r.Time, err)
	}
	for _, bad := range []map[string]any{
		{"qos": 3.0}, {"qos": 1.5}, {"qos": "1"}, {"topic": 5.0}, {"retain": "yes"}, {"time": "yesterday"},
		{"user_properties": map[string]any{"k": 1.0}}, {"extra": "x"}, {"payload": 1.0}, {"extra": map[string]any{"c": make(chan int)}},
	} {
		if _, err := RecordFromMap(bad); err == nil {
			t.Errorf("RecordFromMap(%v) accepted", bad)
		}
	}
}

func TestSys(t *testing.T) {
	r := fastRunner(t, "hist", newFake())
	rt, err := NewRouter([]*Runner{r}, []Route{{Topics: []string{"#"}, Sinks: []string{"hist"}}}, RouterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rt.Dispatch(&event.Message{Topic: "a"})
	eventually(t, "written", func() bool { return r.Stats().Written == 1 })
	vals := map[string]string{}
	rt.Sys(func(k, v string) { vals[k] = v })
	for k, want := range map[string]string{
		"datastore/received": "1", "datastore/hist/written": "1", "datastore/hist/connected": "1",
		"datastore/hist/dropped": "0", "datastore/hist/spool/bytes": "0", "datastore/hist/queued": "0",
	} {
		if vals[k] != want {
			t.Errorf("%s = %q, want %q", k, vals[k], want)
		}
	}
	if _, ok := vals["datastore/hist/batch_latency_avg_ms"]; !ok {
		t.Errorf("no batch latency in %v", vals)
	}
}
