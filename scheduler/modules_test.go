package scheduler

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tidemq/tide/conf"
	"github.com/tidemq/tide/core"
	"github.com/tidemq/tide/datastore"
	"github.com/tidemq/tide/datastore/elasticsearch/estest"
	"github.com/tidemq/tide/scheduler/window"

	_ "github.com/tidemq/tide/datastore/elasticsearch"
	_ "github.com/tidemq/tide/datastore/sqlite"
)

// TestStoreQueryAndSearch reads history through the real datastore
// pipeline: messages published to a real broker, routed to the embedded
// SQLite sink and to an Elasticsearch sink (the project's fake server),
// queried by a job with bound SQL parameters and a search with
// aggregations.
func TestStoreQueryAndSearch(t *testing.T) {
	srv, addr := startBroker(t)
	es := estest.New(t)
	cfg, err := conf.Parse("t.toml", fmt.Appendf(nil, `
[persistence]
dir = %q
[[sink]]
name = "history"
type = "sqlite"
flush_interval = "10ms"
[[sink]]
name = "search"
type = "elasticsearch"
addresses = [%q]
index = "mqtt"
flush_interval = "10ms"
[[route]]
topics = ["#"]
sinks = ["history", "search"]
`, t.TempDir(), es.URL))
	if err != nil {
		t.Fatal(err)
	}
	rt, err := datastore.FromConfig(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	rt.Start(srv.Bus())
	t.Cleanup(func() { _ = rt.Close(context.Background()) })

	pub := dial(t, addr, "sensor")
	for _, m := range [][2]string{{"home/kitchen/temperature", "20"}, {"home/kitchen/temperature", "22"}, {"home/hall/temperature", "18"}, {"other", "x"}} {
		pub.publish(t, m[0], m[1])
	}
	q, _ := rt.Querier("history")
	eventually(t, "4 messages in SQLite", func() bool {
		rows, err := q.Query(context.Background(), "SELECT count(*) AS n FROM messages")
		return err == nil && rows[0]["n"] == int64(4)
	})
	eventually(t, "4 documents searchable", func() bool {
		_, _ = es.Client(t).Indices.Refresh()
		s, _ := rt.Searcher("search")
		r, err := s.Search(context.Background(), "mqtt", []byte(`{"size": 0}`))
		if err != nil {
			return false
		}
		total, _ := r["hits"].(map[string]any)["total"].(map[string]any)["value"].(float64)
		return total == 4
	})

	e := newEnv(t, func(o *Options) { o.Stores = rt })
	e.load(job("report", e.script("report.lua", `
local store = require("store")
function run(ctx)
  state.rows = assert(store.query("history",
    "SELECT topic, count(*) AS n, avg(CAST(payload AS REAL)) AS avg FROM messages WHERE topic LIKE ? GROUP BY topic ORDER BY topic", "home/%"))
  local resp = assert(store.search("search", "mqtt", {size = 0, aggs = {topics = {terms = {field = "topic"}}}}))
  state.buckets = resp.aggregations.topics.buckets
  local rows, err = store.query("history", "SELECT nope FROM nowhere")
  state.query_err = err
  local rows, err = store.query("history", "DELETE FROM messages")
  state.write_err = err
  state.unknown = select(2, pcall(store.query, "search", "SELECT 1"))
  state.unknown_es = select(2, pcall(store.search, "history", "x", "{}"))
  state.injection = #assert(store.query("history", "SELECT topic FROM messages WHERE topic = ?", "x' OR '1'='1"))
end`), time.Minute))
	if st := e.next("report"); st.LastOutcome != OutcomeOK {
		t.Fatalf("run: %+v", st)
	}
	s := e.state("report")
	wantRows := []any{
		map[string]any{"topic": "home/hall/temperature", "n": 1.0, "avg": 18.0},
		map[string]any{"topic": "home/kitchen/temperature", "n": 2.0, "avg": 21.0},
	}
	if !reflect.DeepEqual(s["rows"], wantRows) {
		t.Errorf("rows = %v, want %v", s["rows"], wantRows)
	}
	buckets, _ := s["buckets"].([]any)
	if len(buckets) != 3 || buckets[0].(map[string]any)["key"] != "home/kitchen/temperature" || buckets[0].(map[string]any)["doc_count"] != 2.0 {
		t.Errorf("buckets = %v, want 3 topics, the kitchen first with 2", buckets)
	}
	for key, want := range map[string]string{
		"query_err":  "store.query history: sqlite: SQL logic error: no such table: nowhere",
		"write_err":  "store.query history: sqlite: attempt to write a readonly database",
		"unknown":    `report.lua:12: store.query: no [[sink]] "search" that answers SQL (PostgreSQL and SQLite sinks do)`,
		"unknown_es": `report.lua:13: store.search: no [[sink]] "history" that answers searches (Elasticsearch sinks do)`,
	} {
		if got, _ := s[key].(string); !strings.Contains(got, want) {
			t.Errorf("%s = %q, want it to contain %q", key, got, want)
		}
	}
	if s["injection"] != 0.0 {
		t.Errorf("a quote in a parameter matched %v rows: parameters must be bound", s["injection"])
	}
}

// TestWindowAndBrokerModules reads live windows fed by a real broker's bus,
// the broker's counters and its retained messages by filter, and shares
// the kv store given in Options.
func TestWindowAndBrokerModules(t *testing.T) {
	srv, addr := startBroker(t)
	clk := newFakeClock(t0)
	win, err := window.New([]conf.Aggregate{
		{Name: "temp", Topics: []string{"home/+/temperature"}, Value: "temp", Windows: []conf.Duration{{Duration: time.Minute}, {Duration: 5 * time.Minute}}},
	}, window.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	win.Start(srv.Bus())
	t.Cleanup(win.Close)
	pub := dial(t, addr, "sensor")
	for _, m := range [][2]string{
		{"home/kitchen/temperature", `{"temp": 20}`}, {"home/kitchen/temperature", `{"temp": 23}`},
		{"home/hall/temperature", `{"temp": 18.5}`}, {"home/hall/temperature", `oops`},
	} {
		pub.publish(t, m[0], m[1])
	}
	if _, err := srv.Publish(core.Message{Topic: "config/site/a", Payload: []byte("1"), Retain: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Publish(core.Message{Topic: "config/site/b", Payload: []byte("2"), Retain: true}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the samples", func() bool { f := win.Figures()[0]; return f.Samples == 3 && f.Invalid == 1 })

	e := newEnv(t, func(o *Options) {
		o.Clock, o.Windows, o.Broker = clk, win, realBroker{srv}
	})
	e.clk = clk
	e.load(job("w", e.script("w.lua", `
local window = require("window")
local broker = require("broker")
local kv = require("kv")
function run(ctx)
  local all = window.stats("home/+/temperature", "5m")
  state.kitchen = all["home/kitchen/temperature"]
  local hall = window.get("home/hall/temperature", 300)
  state.hall_avg = hall and hall.avg
  state.none = window.get("home/cellar/temperature", "1m") == nil
  state.bad = select(2, pcall(window.stats, "#", "10m"))
  state.connected = broker.stats().clients_connected
  local cfg = {}
  for _, m in ipairs(broker.retained_match("config/site/+")) do cfg[#cfg + 1] = m.topic .. "=" .. m.payload end
  state.config = table.concat(cfg, ",")
  kv.set("from-job", "hello")
end`), time.Minute))
	if st := e.next("w"); st.LastOutcome != OutcomeOK {
		t.Fatalf("run: %+v", st)
	}
	s := e.state("w")
	k, _ := s["kitchen"].(map[string]any)
	if k["count"] != 2.0 || k["avg"] != 21.5 || k["min"] != 20.0 || k["max"] != 23.0 || k["last"] != 23.0 || k["aggregate"] != "temp" {
		t.Errorf("kitchen = %v, want 2 samples of 20 and 23", k)
	}
	if s["hall_avg"] != 18.5 || s["none"] != true {
		t.Errorf("hall_avg, none = %v, %v", s["hall_avg"], s["none"])
	}
	if bad, _ := s["bad"].(string); !strings.Contains(bad, "window: no [[aggregate]] keeps a 10m window (configured: temp: 1m, 5m)") {
		t.Errorf("bad window error = %q", bad)
	}
	if s["connected"] != 1.0 || s["config"] != "config/site/a=1,config/site/b=2" {
		t.Errorf("connected, config = %v, %v", s["connected"], s["config"])
	}
	if v := e.s.kv.Get("from-job"); v.String() != "hello" {
		t.Errorf("kv from-job = %v", v)
	}
	// Hours later, the windows are empty.
	j := e.s.jobs["w"].cur.cfg
	j.Every.Duration = 2 * time.Hour
	e.load(j)
	if st := e.next("w"); !st.LastScheduled.Equal(t0.Add(2*time.Hour)) || st.LastOutcome != OutcomeOK {
		t.Fatalf("run: %+v, want a good run at 02:00", st)
	}
	if s := e.state("w"); s["kitchen"] != nil {
		t.Errorf("an hour later kitchen = %v, want nothing", s["kitchen"])
	}
}

// TestReload checks that a reload picks up a changed script, keeps the
// previous version running when the new one does not compile, applies a
// new schedule, and stops removed jobs.
func TestReload(t *testing.T) {
	e := newEnv(t)
	path := e.script("v.lua", `function run() state.version = 1 end`)
	other := job("other", e.script("other.lua", `function run() end`), time.Minute)
	j := job("v", path, time.Minute)
	e.load(j, other)
	e.next("v")
	if v := e.state("v")["version"]; v != 1.0 {
		t.Fatalf("version = %v, want 1", v)
	}

	e.script("v.lua", `function run() state.version = 2 end`)
	e.load(j, other)
	e.next("v")
	if v := e.state("v")["version"]; v != 2.0 {
		t.Errorf("after reload: version = %v, want 2", v)
	}

	e.script("v.lua", `function run() state.version = = 3 end`)
	err := e.s.Reload([]conf.Job{j, other})
	if err == nil || !strings.Contains(err.Error(), "v.lua:1:32: syntax error near '='") {
		t.Fatalf("Reload of a broken script = %v, want the syntax error with file and line", err)
	}
	st := e.next("v")
	if v := e.state("v")["version"]; v != 2.0 || !strings.Contains(st.ReloadError, "syntax error") || st.Runs != 3 {
		t.Errorf("after a failed reload: version %v, status %+v; want version 2 still running, the reload error shown", v, st)
	}

	e.script("v.lua", `function run() state.version = 4 end`)
	j.Every.Duration = 2 * time.Hour
	e.load(j)
	if got := e.s.Jobs(); len(got) != 1 || got[0].Name != "v" || got[0].ReloadError != "" || got[0].Schedule != "every 2h" {
		t.Fatalf("jobs = %+v, want v alone, every 2h", got)
	}
	st = e.next("v")
	if !st.LastScheduled.Equal(t0.Add(2*time.Hour)) || e.state("v")["version"] != 4.0 {
		t.Errorf("run at %v with version %v, want 02:00 and 4", st.LastScheduled, e.state("v")["version"])
	}
	if _, ok := e.s.Job("other"); ok {
		t.Error("the removed job is still there")
	}
}
