package postgres

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tidemq/tide/datastore"
)

// proxy forwards TCP connections to a target and can cut them: cut closes
// every open connection and makes new ones be closed as soon as they are
// accepted, as a server that is down or a network partition would, until
// restore. While muted, it forwards requests but swallows the replies, so
// that the server commits writes whose acknowledgement never arrives.
type proxy struct {
	ln      net.Listener
	target  string
	down    atomic.Bool
	muted   atomic.Bool
	cuts    atomic.Int64  // connections closed by cut or refused while down
	dropped atomic.Int64  // reply bytes swallowed while muted
	delay   time.Duration // added to every chunk forwarded, each way (set before use)

	mu    sync.Mutex
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

func newProxy(tb testing.TB, target string) *proxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.accept()
	tb.Cleanup(func() {
		ln.Close()
		p.closeAll()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) addr() (host, port string) {
	host, port, _ = net.SplitHostPort(p.ln.Addr().String())
	return host, port
}

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if p.down.Load() {
			p.cuts.Add(1)
			c.Close()
			continue
		}
		up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
		if err != nil {
			c.Close()
			continue
		}
		if !p.track(c, up) {
			continue
		}
		p.wg.Add(2)
		go p.pipe(c, up, true)
		go p.pipe(up, c, false)
	}
}

// track registers a connection pair unless the proxy went down meanwhile.
func (p *proxy) track(c, up net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down.Load() {
		c.Close()
		up.Close()
		return false
	}
	p.conns[c], p.conns[up] = true, true
	return true
}

func (p *proxy) pipe(dst, src net.Conn, replies bool) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && p.delay > 0 {
			time.Sleep(p.delay) // simulated network latency
		}
		if n > 0 {
			if replies && p.muted.Load() {
				p.dropped.Add(int64(n))
			} else if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	dst.Close()
	src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

func (p *proxy) cut() {
	p.mu.Lock()
	p.down.Store(true)
	p.mu.Unlock()
	p.closeAll()
}

// restore ends a cut or a mute; the connections that lost replies are cut,
// since their protocol streams are broken.
func (p *proxy) restore() {
	if p.muted.Swap(false) {
		p.cut()
	}
	p.down.Store(false)
}

func (p *proxy) mute() { p.muted.Store(true) }

func (p *proxy) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // a reset, as when the server's host dies
		}
		c.Close()
		p.cuts.Add(1)
	}
}

// TestOutage drives a steady stream of records through a datastore Runner
// and the sink while the connection to PostgreSQL is cut twice, for a few
// seconds each, and replies are lost once, and checks afterwards that every
// record is in the table exactly once: writes that failed were retried (from
// memory, then from the Runner's disk spool), and writes that the server
// committed but could not acknowledge were not stored twice.
func TestOutage(t *testing.T) {
	t.Parallel()
	dsn, _ := testSchema(t)
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	px := newProxy(t, net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port)))
	host, port := px.addr()
	direct := openSink(t, dsn, nil) // to look behind the proxy's back
	opts := DefaultOptions()
	opts.DSN = withParam(t, withHost(t, dsn, host, port), "connect_timeout", "2")
	pg, err := New("pg-outage", opts, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	sink := &watched{Sink: pg, direct: direct}
	dir := t.TempDir()
	runner, err := datastore.NewRunner(sink, datastore.RunnerOptions{
		Name: "pg-outage", Type: Type, BatchSize: 100, FlushInterval: 20 * time.Millisecond,
		RetryInitial: 50 * time.Millisecond, RetryMax: 500 * time.Millisecond, WriteTimeout: 3 * time.Second,
		SpoolDir: filepath.Join(dir, "spool"), SpoolAfter: time.Second, DeadLetter: filepath.Join(dir, "dead.ndjson"),
		Log: testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := runner.Close(ctx); err != nil {
			t.Errorf("Runner.Close: %v", err)
		}
	})

	// The producer offers one record every millisecond, as the broker's
	// router would.
	var made atomic.Int64
	stop := make(chan struct{})
	var producer sync.WaitGroup
	producer.Add(1)
	go func() {
		defer producer.Done()
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				r := makeRecords("outage", 1)[0]
				r.ID = fmt.Sprintf("outage-%06d", made.Load())
				r.Time = time.Now()
				if err := runner.Accept(context.Background(), r); err != nil {
					t.Errorf("Accept: %v", err)
					return
				}
				made.Add(1)
			}
		}
	}()

	// Up 1s, down 3s, up 1s, replies lost 4s (longer than the 3s write
	// timeout), up 1s, down 2s, up 1s.
	steps := []struct {
		do func()
		d  time.Duration
	}{{px.restore, time.Second}, {px.cut, 3 * time.Second}, {px.restore, time.Second}, {px.mute, 4 * time.Second},
		{px.restore, time.Second}, {px.cut, 2 * time.Second}, {px.restore, time.Second}}
	for _, st := range steps {
		st.do()
		time.Sleep(st.d) // the outage's length is the point of this wait
	}
	close(stop)
	producer.Wait()
	n := made.Load()

	deadline := time.Now().Add(30 * time.Second)
	for {
		got := queryOne(t, direct, "SELECT count(DISTINCT id) AS ids FROM mqtt_messages")["ids"]
		if got == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("30s after the last restore: %v of %d records stored; runner: %+v", got, n, runner.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
	got := queryOne(t, direct, `SELECT count(*) AS n, min(id) AS first, max(id) AS last FROM mqtt_messages`)
	want := map[string]any{"n": n, "first": "outage-000000", "last": fmt.Sprintf("outage-%06d", n-1)}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: got %v, want %v", k, got[k], w)
		}
	}
	st := runner.Stats()
	if st.Dropped != 0 || st.DeadLettered != 0 || st.Refused != 0 {
		t.Errorf("runner: %d dropped, %d dead-lettered, %d refused; want none", st.Dropped, st.DeadLettered, st.Refused)
	}
	// Whether a write is in flight when the replies start to be lost
	// depends on timing; TestLostAcknowledgement makes sure of that case.
	if st.Retried == 0 || px.cuts.Load() == 0 {
		t.Errorf("the outage was not exercised: %d records retried, %d connections cut", st.Retried, px.cuts.Load())
	}
	t.Logf("%d records; runner: %d batches, %d retried, %d spooled, %d replayed; %d writes committed but unacknowledged; %d connections cut",
		n, st.Batches, st.Retried, st.Spooled, st.Replayed, sink.unacked.Load(), px.cuts.Load())
}

// TestLostAcknowledgement commits a write whose reply never arrives, and
// checks that the retry the Runner would make stores nothing twice.
func TestLostAcknowledgement(t *testing.T) {
	t.Parallel()
	dsn, _ := testSchema(t)
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	px := newProxy(t, net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port)))
	host, port := px.addr()
	direct := openSink(t, dsn, nil)
	s := openSink(t, withHost(t, dsn, host, port), nil)
	if err := write(t, s, makeRecords("a", 10)); err != nil { // leaves an idle connection in the pool
		t.Fatalf("first Write: %v", err)
	}
	batch := makeRecords("b", 50)
	px.mute()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	err = s.Write(ctx, batch)
	cancel()
	if err == nil || datastore.IsPermanent(err) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Write without replies: got %v, want a temporary error wrapping context.DeadlineExceeded", err)
	}
	if !committed(context.Background(), direct, batch) {
		t.Fatalf("the server did not commit the write whose reply was lost: the test proves nothing")
	}
	px.restore()
	if err := write(t, s, batch); err != nil {
		t.Fatalf("retry: %v", err)
	}
	got := queryOne(t, direct, "SELECT count(*) AS n, count(*) FILTER (WHERE id LIKE 'b-%') AS b FROM mqtt_messages")
	if got["n"] != int64(60) || got["b"] != int64(50) {
		t.Errorf("rows: got %v, want 60 in all and 50 of the retried batch", got)
	}
}

// watched is the sink as the Runner sees it, counting the failed writes
// whose records were all stored nonetheless: the server committed them and
// the acknowledgement was lost, so the Runner's retry must insert nothing.
type watched struct {
	*Sink
	direct  *Sink
	unacked atomic.Int64
}

func (w *watched) Write(ctx context.Context, batch []datastore.Record) error {
	err := w.Sink.Write(ctx, batch)
	var pe *datastore.PartialError
	if err != nil && !errors.As(err, &pe) && committed(context.Background(), w.direct, batch) {
		w.unacked.Add(1)
	}
	return err
}

// committed reports whether every record of batch is in the table already.
func committed(ctx context.Context, s *Sink, batch []datastore.Record) bool {
	ids := make([]string, len(batch))
	for i, r := range batch {
		ids[i] = r.ID
	}
	rows, err := s.Query(ctx, "SELECT count(*) AS n FROM mqtt_messages WHERE id = ANY($1)", ids)
	return err == nil && len(rows) == 1 && rows[0]["n"] == int64(len(batch))
}
