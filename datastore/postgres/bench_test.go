package postgres

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tidemq/tide/datastore"
)

// BenchmarkWrite compares the two idempotent ways to write a batch of 500:
// the one Write uses (one INSERT ... SELECT FROM unnest(arrays) ... ON
// CONFLICT DO NOTHING) and COPY into a session's temporary table followed by
// INSERT ... SELECT ... ON CONFLICT DO NOTHING in one transaction (writeCopy
// below, kept here only to be measured). Each iteration writes 500 new
// records with ~40-byte JSON payloads into a table that grows as it would.
//
//	TIDE_TEST_POSTGRES=postgres://postgres@127.0.0.1:5432/test?sslmode=disable \
//	  go test -run '^$' -bench Write -benchtime 300x -count 3 ./datastore/postgres/
//
// The 2ms round trip goes through the test proxy (outage_test.go), which
// delays every chunk it forwards by 1ms each way. Results: see the comment
// on insertTemplate in postgres.go.
func BenchmarkWrite(b *testing.B) {
	const batchSize = 500
	for _, rtt := range []time.Duration{0, 2 * time.Millisecond} {
		for _, bc := range []struct {
			name  string
			write func(s *Sink, ctx context.Context, batch []datastore.Record) error
		}{
			{"unnest", (*Sink).Write},
			{"copy", newCopyWriter().write},
		} {
			b.Run(fmt.Sprintf("%s/rtt=%v", bc.name, rtt), func(b *testing.B) {
				benchWrite(b, batchSize, rtt, bc.write)
			})
		}
	}
}

// benchWrite writes b.N batches, through a proxy adding rtt/2 each way
// when rtt > 0, as a database on another host would.
func benchWrite(b *testing.B, batchSize int, rtt time.Duration, write func(s *Sink, ctx context.Context, batch []datastore.Record) error) {
	dsn, _ := testSchema(b)
	if rtt > 0 {
		cfg, err := pgconn.ParseConfig(dsn)
		if err != nil {
			b.Fatal(err)
		}
		px := newProxy(b, net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port)))
		px.delay = rtt / 2
		host, port := px.addr()
		dsn = withHost(b, dsn, host, port)
	}
	s := openSink(b, dsn, nil)
	name := strings.ReplaceAll(b.Name(), "/", "-")
	ctx := context.Background()
	batches := make([][]datastore.Record, b.N)
	for i := range batches {
		batches[i] = makeRecords(fmt.Sprintf("%s-%d", name, i), batchSize)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := write(s, ctx, batches[i]); err != nil {
			b.Fatalf("write: %v", err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*batchSize)/b.Elapsed().Seconds(), "records/s")
	if got := queryOne(b, s, "SELECT count(*) AS n FROM mqtt_messages")["n"]; got != int64(b.N*batchSize) {
		b.Fatalf("rows: got %v, want %d", got, b.N*batchSize)
	}
}

// copyWriter is the COPY-based alternative to Write. Each connection gets
// its staging table once (ON COMMIT DELETE ROWS empties it at each commit),
// so a write costs BEGIN, COPY, INSERT ... SELECT and COMMIT.
type copyWriter struct {
	mu     sync.Mutex
	staged map[*pgx.Conn]bool
}

func newCopyWriter() *copyWriter { return &copyWriter{staged: map[*pgx.Conn]bool{}} }

var copyColumns = []string{"id", "time", "topic", "client_id", "username", "qos", "retain", "payload",
	"payload_json", "content_type", "user_properties", "extra"}

func (w *copyWriter) write(s *Sink, ctx context.Context, batch []datastore.Record) error {
	cols, _ := buildColumns(batch)
	pool := s.pool.Load()
	return pool.AcquireFunc(ctx, func(c *pgxpool.Conn) error {
		conn := c.Conn()
		w.mu.Lock()
		staged := w.staged[conn]
		w.mu.Unlock()
		if !staged {
			_, err := conn.Exec(ctx, `CREATE TEMP TABLE tide_stage (LIKE `+s.table.Sanitize()+` INCLUDING DEFAULTS) ON COMMIT DELETE ROWS`)
			if err != nil {
				return err
			}
			w.mu.Lock()
			w.staged[conn] = true
			w.mu.Unlock()
		}
		tx, err := conn.Begin(ctx)
		if err != nil {
			return err
		}
		defer func() { _ = tx.Rollback(ctx) }()
		rows := pgx.CopyFromSlice(cols.len(), func(i int) ([]any, error) {
			return []any{cols.ids[i], cols.times[i], cols.topics[i], cols.clients[i], cols.users[i], cols.qos[i],
				cols.retain[i], cols.payloads[i], cols.jsons[i], cols.ctypes[i], cols.uprops[i], cols.extras[i]}, nil
		})
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"tide_stage"}, copyColumns, rows); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO `+s.table.Sanitize()+` SELECT * FROM tide_stage ON CONFLICT (id) DO NOTHING`); err != nil {
			return err
		}
		return tx.Commit(ctx)
	})
}
