package datastore_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/tidemq/tide/core"
	"github.com/tidemq/tide/datastore"
	"github.com/tidemq/tide/datastore/sqlite"
)

func testLogger() *slog.Logger {
	if os.Getenv("TIDE_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// startBroker runs a broker on an ephemeral loopback port.
func startBroker(t testing.TB) (*core.Server, string) {
	t.Helper()
	s := core.New(core.Options{SysInterval: -1}, testLogger())
	addr, err := s.ListenTCP("127.0.0.1:0", core.ListenerOptions{Name: "test", AllowAnonymous: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("broker shutdown: %v", err)
		}
	})
	return s, addr.String()
}

// startPipeline runs Router → Runner → sink on the broker's bus; the
// returned stop closes the Router (and so the Runner and the sink).
func startPipeline(t testing.TB, srv *core.Server, sink datastore.Sink, opts datastore.RunnerOptions, topics ...string) (*datastore.Router, func()) {
	t.Helper()
	if opts.Name == "" {
		opts.Name = "history"
	}
	opts.Log = testLogger()
	r, err := datastore.NewRunner(sink, opts)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := datastore.NewRouter([]*datastore.Runner{r}, []datastore.Route{{Topics: topics, Sinks: []string{opts.Name}}}, datastore.RouterOptions{Log: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	rt.Start(srv.Bus())
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := rt.Close(ctx); err != nil {
			t.Errorf("router close: %v", err)
		}
	}
	t.Cleanup(stop)
	return rt, stop
}

func dialV5(t testing.TB, addr, id string) *paho.Client {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{ClientID: id, Conn: conn, OnClientError: func(error) {}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30}); err != nil {
		t.Fatalf("connect %s: %v", id, err)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c
}

func publish(c *paho.Client, p *paho.Publish) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := c.Publish(ctx, p)
	return err
}

func query(t testing.TB, q datastore.Querier, sql string, args ...any) []map[string]any {
	t.Helper()
	rows, err := q.Query(context.Background(), sql, args...)
	if err != nil {
		t.Fatalf("query %q: %v", sql, err)
	}
	return rows
}

func count(t testing.TB, q datastore.Querier) int64 {
	return query(t, q, `SELECT count(*) AS n FROM messages`)[0]["n"].(int64)
}

func waitCount(t testing.TB, q datastore.Querier, want int64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		n := count(t, q)
		if n == want {
			return
		}
		if n > want || time.Now().After(deadline) {
			t.Fatalf("messages stored = %d, want %d", n, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestEndToEndSQLite(t *testing.T) {
	dir := t.TempDir()
	srv, addr := startBroker(t)
	sink := sqlite.New(sqlite.Options{Path: filepath.Join(dir, "history.db")}, nil)
	_, _ = startPipeline(t, srv, sink, datastore.RunnerOptions{BatchSize: 50, FlushInterval: 20 * time.Millisecond, SpoolDir: filepath.Join(dir, "spool")}, "sensors/#")

	c := dialV5(t, addr, "pub-v5")
	const n = 200
	for i := range n {
		err := publish(c, &paho.Publish{Topic: fmt.Sprintf("sensors/room%d/temp", i%4), QoS: 1,
			Payload: []byte(fmt.Sprintf(`{"seq":%d,"temp":%d.5}`, i, 20+i%5)),
			Properties: &paho.PublishProperties{ContentType: "application/json",
				User: paho.UserProperties{{Key: "site", Value: "lab"}}}})
		if err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	if err := publish(c, &paho.Publish{Topic: "elsewhere/x", QoS: 1, Payload: []byte("not routed")}); err != nil {
		t.Fatal(err)
	}
	if err := publish(c, &paho.Publish{Topic: "sensors/raw", QoS: 0, Payload: []byte{0xde, 0xad, 0xbe, 0xef}}); err != nil {
		t.Fatal(err)
	}

	// A 3.1.1 client too.
	o := mqtt3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("pub-v3").SetProtocolVersion(4)
	c3 := mqtt3.NewClient(o)
	if tok := c3.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("v3 connect: %v", tok.Error())
	}
	defer c3.Disconnect(100)
	if tok := c3.Publish("sensors/v3", 1, true, "21"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("v3 publish: %v", tok.Error())
	}

	waitCount(t, sink, n+2)
	rows := query(t, sink, `SELECT client_id, qos, retain, content_type, user_properties, json_extract(payload_json, '$.temp') AS temp
		FROM messages WHERE json_extract(payload_json, '$.seq') = ?`, 7)
	if len(rows) != 1 {
		t.Fatalf("rows for seq 7: %v", rows)
	}
	want := map[string]any{"client_id": "pub-v5", "qos": int64(1), "retain": int64(0), "content_type": "application/json",
		"user_properties": `{"site":"lab"}`, "temp": 22.5}
	for k, v := range want {
		if rows[0][k] != v {
			t.Errorf("%s = %#v, want %#v", k, rows[0][k], v)
		}
	}
	raw := query(t, sink, `SELECT payload, payload_json, qos FROM messages WHERE topic = ?`, "sensors/raw")
	if len(raw) != 1 || string(raw[0]["payload"].([]byte)) != "\xde\xad\xbe\xef" || raw[0]["payload_json"] != nil || raw[0]["qos"] != int64(0) {
		t.Fatalf("binary message row = %v", raw)
	}
	v3 := query(t, sink, `SELECT client_id, retain, payload_json FROM messages WHERE topic = ?`, "sensors/v3")
	if len(v3) != 1 || v3[0]["client_id"] != "pub-v3" || v3[0]["retain"] != int64(1) || v3[0]["payload_json"] != "21" {
		t.Fatalf("v3 message row = %v", v3)
	}
	// Time-ordered ids and the topic index make this the typical history query.
	hist := query(t, sink, `SELECT id, time FROM messages WHERE topic = ? ORDER BY time DESC LIMIT 3`, "sensors/room1/temp")
	if len(hist) != 3 || hist[0]["time"].(int64) < hist[2]["time"].(int64) {
		t.Fatalf("history = %v", hist)
	}
}

// outageSink makes a sink unavailable on demand: the store is fine, the way
// to it is not.
type outageSink struct {
	datastore.Sink
	down atomic.Bool
}

var errOutage = errors.New("store unreachable (test outage)")

func (o *outageSink) Connect(ctx context.Context) error {
	if o.down.Load() {
		return errOutage
	}
	return o.Sink.Connect(ctx)
}

func (o *outageSink) Write(ctx context.Context, b []datastore.Record) error {
	if o.down.Load() {
		return errOutage
	}
	return o.Sink.Write(ctx, b)
}

// TestOutageLosesNothing publishes QoS 1 messages steadily through a real
// broker while the store is unreachable for several seconds, restarts the
// pipeline in the middle of the outage, and checks that every acknowledged
// message is stored exactly once, in publish order.
func TestOutageLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("outage test takes several seconds")
	}
	dir := t.TempDir()
	db := filepath.Join(dir, "history.db")
	opts := datastore.RunnerOptions{BatchSize: 100, FlushInterval: 20 * time.Millisecond, QueueSize: 500,
		RetryInitial: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond,
		SpoolDir: filepath.Join(dir, "spool"), SpoolAfter: 300 * time.Millisecond}

	var acked atomic.Int64
	run := func(addr string, from int, d time.Duration, during func(elapsed time.Duration)) int {
		c := dialV5(t, addr, "steady-"+strconv.Itoa(from))
		start := time.Now()
		i := from
		for ; time.Since(start) < d; i++ {
			if during != nil {
				during(time.Since(start))
			}
			if err := publish(c, &paho.Publish{Topic: "plant/line1/count", QoS: 1, Payload: []byte(strconv.Itoa(i))}); err != nil {
				t.Fatalf("publish %d: %v", i, err)
			}
			acked.Add(1)
			time.Sleep(time.Millisecond)
		}
		return i
	}

	// Phase 1: healthy for 1s, then down; the pipeline is stopped (as at a
	// broker restart) while the store is still down.
	srv1, addr1 := startBroker(t)
	sink1 := &outageSink{Sink: sqlite.New(sqlite.Options{Path: db}, nil)}
	rt1, stop1 := startPipeline(t, srv1, sink1, opts, "plant/#")
	next := run(addr1, 0, 2500*time.Millisecond, func(e time.Duration) {
		if e > time.Second {
			sink1.down.Store(true)
		}
	})
	stop1()
	s1 := rt1.Runner("history").Stats()
	if s1.Spooled == 0 {
		t.Fatalf("nothing was spooled during the outage: %+v", s1)
	}

	// Phase 2: a new broker and pipeline on the same spool and database;
	// the store stays down for another 1.5s, then comes back.
	srv2, addr2 := startBroker(t)
	inner := sqlite.New(sqlite.Options{Path: db}, nil)
	sink2 := &outageSink{Sink: inner}
	sink2.down.Store(true)
	rt2, _ := startPipeline(t, srv2, sink2, opts, "plant/#")
	end := run(addr2, next, 3*time.Second, func(e time.Duration) {
		if e > 1500*time.Millisecond {
			sink2.down.Store(false)
		}
	})
	if int64(end) != acked.Load() {
		t.Fatalf("published %d, acknowledged %d", end, acked.Load())
	}

	waitCount(t, inner, acked.Load())
	rows := query(t, inner, `SELECT CAST(payload AS TEXT) AS seq FROM messages ORDER BY rowid`)
	for i, r := range rows {
		if r["seq"] != strconv.Itoa(i) {
			t.Fatalf("row %d holds message %v: lost, duplicated or out of order", i, r["seq"])
		}
	}
	s2 := rt2.Runner("history").Stats()
	if s1.Dropped+s2.Dropped+s1.Refused+s2.Refused != 0 || rt1.Stats().BusDropped+rt2.Stats().BusDropped != 0 {
		t.Fatalf("losses counted: run 1 %+v, run 2 %+v", s1, s2)
	}
	t.Logf("%d messages acknowledged and stored once, in order; run 1: %d spooled; run 2: %d spooled, %d replayed, %d write attempts retried",
		acked.Load(), s1.Spooled, s2.Spooled, s2.Replayed, s1.Retried+s2.Retried)
}
