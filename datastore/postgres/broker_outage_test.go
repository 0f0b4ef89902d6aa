package postgres

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tidemq/tide/core"
	"github.com/tidemq/tide/core/packet"
	"github.com/tidemq/tide/datastore"
)

// TestOutageThroughBroker is the outage test end to end: an MQTT
// client publishes a steady stream of numbered QoS 1 messages through the
// broker, whose route sends them to PostgreSQL behind a proxy that cuts the
// database off for seconds at a time. Afterwards every message the broker
// acknowledged (PUBACK) is in the table exactly once.
func TestOutageThroughBroker(t *testing.T) {
	t.Parallel()
	dsn, _ := testSchema(t)
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	px := newProxy(t, net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port)))
	host, port := px.addr()
	direct := openSink(t, dsn, nil)
	opts := DefaultOptions()
	opts.DSN = withParam(t, withHost(t, dsn, host, port), "connect_timeout", "2")
	pg, err := New("archive", opts, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	runner, err := datastore.NewRunner(pg, datastore.RunnerOptions{
		Name: "archive", Type: Type, BatchSize: 100, FlushInterval: 20 * time.Millisecond,
		RetryInitial: 50 * time.Millisecond, RetryMax: 500 * time.Millisecond, WriteTimeout: 3 * time.Second,
		SpoolDir: filepath.Join(dir, "spool"), SpoolAfter: time.Second, DeadLetter: filepath.Join(dir, "dead.ndjson"),
		Log: testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	rt, err := datastore.NewRouter([]*datastore.Runner{runner}, []datastore.Route{{Topics: []string{"plant/#"}, Sinks: []string{"archive"}}},
		datastore.RouterOptions{Log: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	srv := core.New(core.Options{SysInterval: -1}, testLogger(t))
	rt.Start(srv.Bus())
	srv.SetBackpressure(rt)
	addr, err := srv.ListenTCP("127.0.0.1:0", core.ListenerOptions{AllowAnonymous: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		if err := rt.Close(ctx); err != nil {
			t.Errorf("Router.Close: %v", err)
		}
	})

	// The publisher: QoS 1, one message every millisecond, 20 in flight.
	conn, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := packet.NewReader(conn)
	r.Version = packet.V5
	conn.Write(packet.Encode(&packet.Connect{ClientID: "plant", CleanStart: true}, packet.V5))
	if p, _, err := r.ReadPacket(); err != nil || p.(*packet.Connack).ReasonCode != 0 {
		t.Fatalf("connect: %v %v", p, err)
	}
	var mu sync.Mutex
	acked := map[uint16]int{} // packet id -> message number, for the acks to come
	var ackedNums []int
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			p, _, err := r.ReadPacket()
			if err != nil {
				return
			}
			if a, ok := p.(*packet.Ack); ok && a.Kind == packet.PUBACK {
				mu.Lock()
				ackedNums = append(ackedNums, acked[a.PacketID])
				delete(acked, a.PacketID)
				mu.Unlock()
			}
		}
	}()
	stop := make(chan struct{})
	var producer sync.WaitGroup
	producer.Add(1)
	go func() {
		defer producer.Done()
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for n := 1; ; n++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			for {
				mu.Lock()
				inflight := len(acked)
				mu.Unlock()
				if inflight < 20 {
					break
				}
				time.Sleep(time.Millisecond) // the broker holds acks back while the sink is saturated
			}
			pid := uint16(n%60000 + 1)
			mu.Lock()
			acked[pid] = n
			mu.Unlock()
			if _, err := conn.Write(packet.Encode(&packet.Publish{Topic: "plant/line1", QoS: 1, PacketID: pid, Payload: []byte(strconv.Itoa(n))}, packet.V5)); err != nil {
				t.Errorf("publish: %v", err)
				return
			}
		}
	}()

	steps := []struct {
		do func()
		d  time.Duration
	}{{px.restore, time.Second}, {px.cut, 3 * time.Second}, {px.restore, time.Second}, {px.cut, 2 * time.Second}, {px.restore, time.Second}}
	for _, st := range steps {
		st.do()
		time.Sleep(st.d) // the outage's length is the point of this wait
	}
	close(stop)
	producer.Wait()
	time.Sleep(200 * time.Millisecond) // the last acks
	mu.Lock()
	nums := append([]int(nil), ackedNums...)
	mu.Unlock()
	if len(nums) < 1000 {
		t.Fatalf("only %d messages acknowledged", len(nums))
	}

	deadline := time.Now().Add(30 * time.Second)
	for {
		got := queryOne(t, direct, "SELECT count(*) AS n FROM mqtt_messages WHERE payload = ANY($1::bytea[])", toBytea(nums))["n"]
		if got == int64(len(nums)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("30s after the last restore: %v of %d acknowledged messages stored; runner %+v", got, len(nums), runner.Stats())
		}
		time.Sleep(50 * time.Millisecond)
	}
	dups := queryOne(t, direct, "SELECT count(*) - count(DISTINCT payload) AS d FROM mqtt_messages")["d"]
	if dups != int64(0) {
		t.Fatalf("%v messages stored twice", dups)
	}
	st := runner.Stats()
	if st.Retried == 0 || px.cuts.Load() == 0 {
		t.Errorf("the outage was not exercised: %d retried, %d cuts", st.Retried, px.cuts.Load())
	}
	if d := srv.Bus().Subscribers()[0].Dropped(); d != 0 {
		t.Errorf("the bus dropped %d events", d)
	}
	t.Logf("%d acknowledged messages stored once; runner: %d retried, %d spooled, %d replayed", len(nums), st.Retried, st.Spooled, st.Replayed)
}

func toBytea(nums []int) [][]byte {
	out := make([][]byte, len(nums))
	for i, n := range nums {
		out[i] = []byte(strconv.Itoa(n))
	}
	return out
}
