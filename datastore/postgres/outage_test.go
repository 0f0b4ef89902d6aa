package postgres

import (
	"context"
	"errors"
	"fmt"
	"net"
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

// TestOutage drives a steady stream of records through the sink while the
// connection to PostgreSQL is cut twice, for a few seconds each, and replies
// are lost once, and checks afterwards that every record is in the table
// exactly once: writes that failed were retried, and writes that the server
// committed but could not acknowledge were not stored twice.
//
// Until the datastore Runner exists, a small retry loop stands in for it:
// the same batch is retried until it succeeds, as the Runner does.
func TestOutage(t *testing.T) {
	t.Parallel()
	dsn, _ := testSchema(t)
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	px := newProxy(t, net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port)))
	host, port := px.addr()
	s := newSink(t, withParam(t, withHost(t, dsn, host, port), "connect_timeout", "2"), nil)
	direct := newSink(t, dsn, nil) // to look behind the proxy's back

	// The producer makes one record every millisecond; the writer takes
	// whatever is pending, up to 100, and retries it until it is stored.
	var (
		mu      sync.Mutex
		pending []datastore.Record
		made    int
	)
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
				mu.Lock()
				r := makeRecords("outage", 1)[0]
				r.ID = fmt.Sprintf("outage-%06d", made)
				r.Time = time.Now()
				pending = append(pending, r)
				made++
				mu.Unlock()
			}
		}
	}()

	var failures, unacked atomic.Int64
	written := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		defer close(written)
		for {
			mu.Lock()
			n := min(len(pending), 100)
			batch := append([]datastore.Record(nil), pending[:n]...)
			mu.Unlock()
			if n == 0 {
				select {
				case <-stop:
					mu.Lock()
					left := len(pending)
					mu.Unlock()
					if left == 0 {
						return
					}
				case <-ctx.Done():
					return
				case <-time.After(5 * time.Millisecond):
				}
				continue
			}
			for attempt := 0; ; attempt++ {
				wctx, wcancel := context.WithTimeout(ctx, 3*time.Second)
				err := s.Write(wctx, batch)
				wcancel()
				if err == nil {
					break
				}
				if ctx.Err() != nil {
					return
				}
				var pe *datastore.PartialError
				if datastore.IsPermanent(err) || errors.As(err, &pe) {
					t.Errorf("Write: got %v, want only temporary errors during an outage", err)
					return
				}
				failures.Add(1)
				if attempt == 0 && committed(ctx, direct, batch) {
					unacked.Add(1) // the retry must now insert nothing
				}
				select { // the Runner's back-off, shortened
				case <-time.After(50 * time.Millisecond):
				case <-ctx.Done():
					return
				}
			}
			mu.Lock()
			pending = pending[n:]
			mu.Unlock()
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

	select {
	case <-written:
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatalf("the writer did not drain its backlog within 30s of the last restore")
	}
	if t.Failed() {
		return
	}
	if failures.Load() == 0 || px.cuts.Load() == 0 || unacked.Load() == 0 {
		t.Fatalf("the outage was not exercised: %d failed writes, %d connections cut, %d committed but unacknowledged",
			failures.Load(), px.cuts.Load(), unacked.Load())
	}
	got := queryOne(t, s, `SELECT count(*) AS n, count(DISTINCT id) AS ids, min(id) AS first, max(id) AS last FROM mqtt_messages`)
	want := map[string]any{"n": int64(made), "ids": int64(made), "first": "outage-000000", "last": fmt.Sprintf("outage-%06d", made-1)}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: got %v, want %v", k, got[k], w)
		}
	}
	t.Logf("%d records, %d failed writes retried (%d of them committed but unacknowledged), %d connections cut, %d reply bytes lost",
		made, failures.Load(), unacked.Load(), px.cuts.Load(), px.dropped.Load())
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
