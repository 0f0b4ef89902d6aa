package window

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidemq/tide/conf"
	"github.com/tidemq/tide/core/event"
)

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// t0 is on a 10-minute boundary, so on every bucket boundary of the
// windows below.
var t0 = time.Unix(1_700_000_400, 0)

func agg(name, value string, windows ...time.Duration) conf.Aggregate {
	a := conf.Aggregate{Name: name, Topics: []string{"home/+/temperature"}, Value: value, MaxTopics: 100}
	for _, w := range windows {
		a.Windows = append(a.Windows, conf.Duration{Duration: w})
	}
	return a
}

func newStore(t *testing.T, aggs ...conf.Aggregate) (*Store, *clock) {
	t.Helper()
	clk := &clock{t: t0}
	s, err := New(aggs, Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, clk
}

// at adds a sample at t0+offset.
func at(s *Store, clk *clock, offset time.Duration, topic, payload string) {
	clk.set(t0.Add(offset))
	s.Add(topic, []byte(payload))
}

func query(t *testing.T, s *Store, clk *clock, offset time.Duration, filter string, w time.Duration) []Stats {
	t.Helper()
	clk.set(t0.Add(offset))
	out, err := s.Query(filter, w, "")
	if err != nil {
		t.Fatalf("Query(%q, %v): %v", filter, w, err)
	}
	return out
}

func TestAggregationMath(t *testing.T) {
	s, clk := newStore(t, agg("temp", "", time.Minute, 5*time.Minute))
	const k = "home/kitchen/temperature"
	at(s, clk, 0, k, "10")
	at(s, clk, 20*time.Second, k, " 25.5\n")
	at(s, clk, 40*time.Second, k, "-4")
	at(s, clk, 50*time.Second, "home/hall/temperature", "18")
	at(s, clk, 55*time.Second, k, "7")

	got := query(t, s, clk, 59*time.Second, "home/+/temperature", time.Minute)
	if len(got) != 2 {
		t.Fatalf("got %d topics, want 2: %+v", len(got), got)
	}
	hall, kitchen := got[0], got[1]
	if hall.Topic != "home/hall/temperature" || hall.Count != 1 || hall.Avg != 18 || hall.Last != 18 {
		t.Errorf("hall = %+v, want one sample of 18", hall)
	}
	want := Stats{Topic: k, Aggregate: "temp", Count: 4, Sum: 38.5, Min: -4, Max: 25.5, Avg: 38.5 / 4, Last: 7, LastTime: t0.Add(55 * time.Second)}
	if kitchen != want {
		t.Errorf("kitchen = %+v\nwant      %+v", kitchen, want)
	}
	if got := query(t, s, clk, 59*time.Second, k, time.Minute); len(got) != 1 || got[0] != want {
		t.Errorf("exact topic = %+v, want %+v", got, want)
	}
	if got := query(t, s, clk, 59*time.Second, "home/cellar/temperature", time.Minute); len(got) != 0 {
		t.Errorf("unknown topic = %+v, want nothing", got)
	}
}

// TestWindowBoundaries checks which samples a window covers: with 20
// buckets of 3s, a 1m window at now covers the bucket of now and the 19
// before it.
func TestWindowBoundaries(t *testing.T) {
	s, clk := newStore(t, agg("temp", "", time.Minute, 5*time.Minute))
	const k = "home/kitchen/temperature"
	at(s, clk, 0, k, "10")
	at(s, clk, 30*time.Second, k, "20")
	at(s, clk, 59*time.Second, k, "30")
	cases := []struct {
		now       time.Duration
		w         time.Duration
		count     int64
		sum, last float64
	}{
		{59 * time.Second, time.Minute, 3, 60, 30},
		{60 * time.Second, time.Minute, 2, 50, 30},                     // the sample at 0 is 60s old: out
		{62 * time.Second, time.Minute, 2, 50, 30},                     // same bucket as 60s
		{89 * time.Second, time.Minute, 2, 50, 30},                     // the sample at 30s is 59s old: in
		{90 * time.Second, time.Minute, 1, 30, 30},                     // 60s old: out
		{116 * time.Second, time.Minute, 1, 30, 30},                    // its bucket (57-60s) starts 59s before
		{117 * time.Second, time.Minute, 0, 0, 0},                      // 58s old, but its bucket starts 60s before: out
		{119 * time.Second, 5 * time.Minute, 3, 60, 30},                // the 5m window still has all
		{299 * time.Second, 5 * time.Minute, 3, 60, 30},                // 15s buckets: 0-15s is the oldest
		{300 * time.Second, 5 * time.Minute, 2, 50, 30},                // the sample at 0 is out
		{344 * time.Second, 5 * time.Minute, 1, 30, 30},                // bucket 30-45s is out
		{360 * time.Second, 5 * time.Minute, 0, 0, 0},                  // bucket 45-60s is out
		{-1 * time.Second, time.Minute, 0, 0, 0},                       // before any sample
		{30*time.Second - time.Nanosecond, time.Minute, 1, 10, 10},     // the sample at 30s is in the future
		{30 * time.Second, 5 * time.Minute, 2, 30, 20},                 // a sample at now is in
		{4*time.Minute + 59*time.Second, 5 * time.Minute, 3, 60, 30.0}, // same as 299s
	}
	for _, tc := range cases {
		got := query(t, s, clk, tc.now, k, tc.w)
		var count int64
		var sum, last float64
		if len(got) == 1 {
			count, sum, last = got[0].Count, got[0].Sum, got[0].Last
		}
		if count != tc.count || sum != tc.sum || last != tc.last {
			t.Errorf("at %v over %v: count, sum, last = %d, %v, %v; want %d, %v, %v", tc.now, tc.w, count, sum, last, tc.count, tc.sum, tc.last)
		}
	}
}

// TestOldSamplesExpire checks that a bucket reused by the ring forgets its
// old samples, and that a topic silent for the longest window is
// forgotten, which makes room under max_topics.
func TestOldSamplesExpire(t *testing.T) {
	a := agg("temp", "", time.Minute)
	a.MaxTopics = 2
	s, clk := newStore(t, a)
	at(s, clk, 0, "home/a/temperature", "100")
	at(s, clk, time.Second, "home/b/temperature", "1")
	at(s, clk, 2*time.Second, "home/c/temperature", "1") // a third topic: dropped
	if f := s.Figures()[0]; f.Topics != 2 || f.Dropped != 1 || f.Samples != 2 {
		t.Errorf("figures = %+v, want 2 topics, 1 dropped, 2 samples", f)
	}
	// 60s later the same ring slot holds a new bucket: 100 is gone.
	at(s, clk, 60*time.Second, "home/a/temperature", "5")
	got := query(t, s, clk, 60*time.Second, "home/a/temperature", time.Minute)
	if len(got) != 1 || got[0].Count != 1 || got[0].Min != 5 || got[0].Max != 5 {
		t.Errorf("after the ring wrapped: %+v, want one sample of 5", got)
	}
	// b has been silent for a minute: the next sweep forgets it, and c fits.
	at(s, clk, 62*time.Second, "home/c/temperature", "3")
	if f := s.Figures()[0]; f.Topics != 2 || f.Dropped != 1 {
		t.Errorf("figures = %+v, want 2 topics (a, c), still 1 dropped", f)
	}
	if got := query(t, s, clk, 62*time.Second, "home/+/temperature", time.Minute); len(got) != 2 || got[0].Topic != "home/a/temperature" || got[1].Topic != "home/c/temperature" {
		t.Errorf("topics = %+v, want a and c", got)
	}
}

func TestJSONValues(t *testing.T) {
	s, clk := newStore(t, agg("temp", "sensor.temp", time.Minute))
	const k = "home/kitchen/temperature"
	for _, p := range []string{
		`{"sensor": {"temp": 21.5}}`,
		`{"sensor": {"temp": "22.5", "hum": 40}}`,
		`{"sensor": {"temp": true}}`, // invalid: a boolean
		`{"temp": 1}`,                // invalid: no sensor
		`{"sensor": 3}`,              // invalid: sensor is no object
		`21.5`,                       // invalid: not an object
		`not json`,                   // invalid
	} {
		at(s, clk, time.Second, k, p)
	}
	got := query(t, s, clk, 2*time.Second, k, time.Minute)
	if len(got) != 1 || got[0].Count != 2 || got[0].Sum != 44 {
		t.Errorf("got %+v, want 2 samples summing to 44", got)
	}
	if f := s.Figures()[0]; f.Invalid != 5 || f.Samples != 2 {
		t.Errorf("figures = %+v, want 5 invalid, 2 samples", f)
	}

	s2, clk2 := newStore(t, agg("temp", "", time.Minute))
	for _, p := range []string{"", "abc", "NaN", "1e400", "0x10", "12"} {
		at(s2, clk2, 0, k, p)
	}
	if f := s2.Figures()[0]; f.Invalid != 5 || f.Samples != 1 {
		t.Errorf("plain payloads: figures = %+v, want 5 invalid (empty, abc, NaN, Inf, hex), 1 sample", f)
	}
}

func TestSeveralAggregates(t *testing.T) {
	raw := agg("raw", "", time.Minute)
	all := conf.Aggregate{Name: "all", Topics: []string{"#"}, Windows: []conf.Duration{{Duration: time.Minute}, {Duration: time.Hour}}}
	s, clk := newStore(t, raw, all)
	at(s, clk, 0, "home/kitchen/temperature", "20")
	at(s, clk, 0, "power/meter", "300")
	got := query(t, s, clk, time.Second, "#", time.Minute)
	if len(got) != 2 || got[0].Aggregate != "raw" || got[1].Aggregate != "all" {
		t.Errorf("got %+v, want the kitchen from raw (first), the meter from all", got)
	}
	clk.set(t0.Add(time.Second))
	if got, err := s.Query("#", time.Minute, "all"); err != nil || len(got) != 2 {
		t.Errorf("aggregate all: %+v, %v; want both topics", got, err)
	}
	for _, tc := range []struct {
		filter string
		w      time.Duration
		agg    string
		want   string
	}{
		{"#", 5 * time.Minute, "", `no [[aggregate]] keeps a 5m window (configured: raw: 1m; all: 1m, 1h)`},
		{"#", time.Hour, "raw", `aggregate "raw" keeps no 1h window`},
		{"#", time.Minute, "nope", `no [[aggregate]] named "nope"`},
		{"a/#/b", time.Minute, "", `invalid topic filter "a/#/b"`},
	} {
		if _, err := s.Query(tc.filter, tc.w, tc.agg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Query(%q, %v, %q) = %v, want an error containing %q", tc.filter, tc.w, tc.agg, err, tc.want)
		}
	}
}

func TestBadConfig(t *testing.T) {
	for _, tc := range []struct {
		aggs []conf.Aggregate
		want string
	}{
		{[]conf.Aggregate{{Name: "x", Windows: []conf.Duration{{Duration: time.Minute}}}}, `aggregate[0] "x": topics is empty`},
		{[]conf.Aggregate{{Topics: []string{"a/#/b"}, Windows: []conf.Duration{{Duration: time.Minute}}}}, `topic filter "a/#/b"`},
		{[]conf.Aggregate{{Topics: []string{"a"}}}, `windows is empty`},
		{[]conf.Aggregate{{Topics: []string{"a"}, Windows: []conf.Duration{{Duration: time.Millisecond}}}}, `window 1ms is shorter than 1s`},
		{[]conf.Aggregate{{Topics: []string{"a"}, Windows: []conf.Duration{{Duration: time.Minute}, {Duration: time.Minute}}}}, `window 1m0s is listed twice`},
		{[]conf.Aggregate{{Topics: []string{"a"}, Value: "a..b", Windows: []conf.Duration{{Duration: time.Minute}}}}, `invalid JSON path "a..b"`},
		{[]conf.Aggregate{agg("t", "", time.Minute), agg("t", "", time.Minute)}, `aggregate[1]: duplicate name "t"`},
	} {
		if _, err := New(tc.aggs, Options{}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want an error containing %q", tc.aggs, err, tc.want)
		}
	}
}

func TestReloadKeepsUnchangedData(t *testing.T) {
	s, clk := newStore(t, agg("keep", "", time.Minute), agg("change", "", time.Minute))
	at(s, clk, 0, "home/kitchen/temperature", "20")
	keep := agg("keep", "", time.Minute)
	keep.MaxTopics = 5
	if err := s.Reload([]conf.Aggregate{agg("change", "", 2*time.Minute), keep}); err != nil {
		t.Fatal(err)
	}
	clk.set(t0.Add(time.Second))
	if got, err := s.Query("#", time.Minute, "keep"); err != nil || len(got) != 1 {
		t.Errorf("unchanged aggregate after reload: %+v, %v; want its sample", got, err)
	}
	if got, err := s.Query("#", 2*time.Minute, "change"); err != nil || len(got) != 0 {
		t.Errorf("changed aggregate after reload: %+v, %v; want it empty", got, err)
	}
	if err := s.Reload([]conf.Aggregate{{Topics: []string{"a/#/b"}, Windows: []conf.Duration{{Duration: time.Minute}}}}); err == nil {
		t.Fatal("Reload accepted an invalid filter")
	}
	if got, err := s.Query("#", time.Minute, "keep"); err != nil || len(got) != 1 {
		t.Errorf("after a failed reload: %+v, %v; want the old aggregates", got, err)
	}
}

func TestFedFromTheBus(t *testing.T) {
	bus := event.NewBus(nil)
	s, clk := newStore(t, agg("temp", "", time.Minute))
	s.Start(bus)
	if !bus.Wants(event.Publish) {
		t.Fatal("the store did not subscribe to Publish events")
	}
	for i, p := range []string{"1", "2", "3"} {
		bus.Emit(&event.Event{Kind: event.Publish, Message: &event.Message{Topic: "home/hall/temperature", Payload: []byte(p)}})
		_ = i
	}
	bus.Emit(&event.Event{Kind: event.Publish, Message: &event.Message{Topic: "elsewhere", Payload: []byte("9")}})
	deadline := time.Now().Add(10 * time.Second)
	for s.Figures()[0].Samples < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("samples = %d after 10s, want 3", s.Figures()[0].Samples)
		}
		time.Sleep(time.Millisecond)
	}
	if got := query(t, s, clk, 0, "#", time.Minute); len(got) != 1 || got[0].Sum != 6 {
		t.Errorf("got %+v, want the hall with a sum of 6", got)
	}
	s.Close()
	if bus.Wants(event.Publish) {
		t.Error("the store is still subscribed after Close")
	}

	empty, err := New(nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	empty.Start(bus)
	if bus.Wants(event.Publish) {
		t.Error("a store without aggregates subscribed to the bus")
	}
}
