package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tidemq/tide/datastore"
)

const enableHint = "PostgreSQL tests need a server: set TIDE_TEST_POSTGRES=postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// baseDSN is the DSN of the test server; the test is skipped without one,
// or fails when TIDE_REQUIRE_SERVICES=1 says the services must be there.
func baseDSN(tb testing.TB) string {
	tb.Helper()
	dsn := os.Getenv("TIDE_TEST_POSTGRES")
	if dsn == "" {
		if os.Getenv("TIDE_REQUIRE_SERVICES") == "1" {
			tb.Fatalf("TIDE_REQUIRE_SERVICES=1 but TIDE_TEST_POSTGRES is unset. %s", enableHint)
		}
		tb.Skip(enableHint)
	}
	return dsn
}

func randomName(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// withParam adds a key to a DSN in URL or key=value form.
func withParam(tb testing.TB, dsn, key, value string) string {
	tb.Helper()
	if strings.Contains(dsn, "://") {
		u, err := url.Parse(dsn)
		if err != nil {
			tb.Fatalf("parse DSN: %v", err)
		}
		q := u.Query()
		q.Set(key, value)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return dsn + " " + key + "=" + value
}

// withHost points a DSN at another host and port.
func withHost(tb testing.TB, dsn, host, port string) string {
	tb.Helper()
	if strings.Contains(dsn, "://") {
		u, err := url.Parse(dsn)
		if err != nil {
			tb.Fatalf("parse DSN: %v", err)
		}
		u.Host = host + ":" + port
		return u.String()
	}
	// In key=value form, a later key wins.
	return dsn + " host=" + host + " port=" + port
}

// testSchema creates a schema for this test alone, dropped at the end, and
// returns a DSN whose search_path is that schema, so that tests running in
// parallel never see each other's tables.
func testSchema(tb testing.TB) (dsn, schema string) {
	tb.Helper()
	base := baseDSN(tb)
	schema = randomName("tide_test_")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		tb.Fatalf("connect to %s: %v (%s)", redact(base), err, enableHint)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		tb.Fatalf("create schema: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			tb.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			tb.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return withParam(tb, base, "search_path", schema), schema
}

func redact(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		return u.Redacted()
	}
	return dsn
}

func testLogger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{tb}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ tb testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.tb.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// openSink returns a connected sink on dsn, closed at the end of the test.
func openSink(tb testing.TB, dsn string, edit func(*Options)) *Sink {
	tb.Helper()
	opts := DefaultOptions()
	opts.DSN = dsn
	if edit != nil {
		edit(opts)
	}
	s, err := New("pg-test", opts, testLogger(tb))
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	if err := s.Init(); err != nil {
		tb.Fatalf("Init: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Connect(ctx); err != nil {
		tb.Fatalf("Connect: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return s
}

// makeRecords returns n records with ids prefix-0000 ..., JSON payloads and
// every field set, one millisecond apart.
func makeRecords(prefix string, n int) []datastore.Record {
	base := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	out := make([]datastore.Record, n)
	for i := range out {
		payload := fmt.Sprintf(`{"temp":%d.5,"unit":"C","seq":%d}`, 20+i%10, i)
		out[i] = datastore.Record{
			ID:             fmt.Sprintf("%s-%05d", prefix, i),
			Time:           base.Add(time.Duration(i) * time.Millisecond),
			Topic:          fmt.Sprintf("sensors/%d/temp", i%4),
			ClientID:       fmt.Sprintf("client-%d", i%4),
			Username:       "alice",
			QoS:            byte(i % 3),
			Retain:         i%5 == 0,
			Payload:        []byte(payload),
			JSON:           []byte(payload),
			ContentType:    "application/json",
			UserProperties: map[string]string{"site": "lab"},
			Extra:          map[string]any{"n": i},
		}
	}
	return out
}

func queryOne(tb testing.TB, s *Sink, sql string, args ...any) map[string]any {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rows, err := s.Query(ctx, sql, args...)
	if err != nil {
		tb.Fatalf("Query(%q): %v", sql, err)
	}
	if len(rows) != 1 {
		tb.Fatalf("Query(%q): got %d rows, want 1", sql, len(rows))
	}
	return rows[0]
}

func write(tb testing.TB, s *Sink, batch []datastore.Record) error {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return s.Write(ctx, batch)
}
