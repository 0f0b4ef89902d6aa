package elasticsearch

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tidemq/tide/datastore"
	"github.com/tidemq/tide/datastore/elasticsearch/estest"
)

func testLogger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{tb}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ tb testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.tb.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// openSink returns a connected sink on srv, with options edited by edit,
// closed at the end of the test.
func openSink(tb testing.TB, srv *estest.Server, edit func(*Options)) *Sink {
	tb.Helper()
	s := unconnected(tb, srv.URL, edit)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Connect(ctx); err != nil {
		tb.Fatalf("Connect: %v", err)
	}
	return s
}

func unconnected(tb testing.TB, url string, edit func(*Options)) *Sink {
	tb.Helper()
	opts := DefaultOptions()
	opts.Addresses = []string{url}
	if edit != nil {
		edit(opts)
	}
	s, err := New("es-test", opts, testLogger(tb))
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	if err := s.Init(); err != nil {
		tb.Fatalf("Init: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(context.Background()); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return s
}

// day is 2024-05-01 in UTC; records are spread from 23:59:58 on.
var day = time.Date(2024, 5, 1, 23, 59, 58, 0, time.UTC)

// makeRecords returns n records, half a second apart from day, so that
// the last ones fall on the next day.
func makeRecords(prefix string, n int) []datastore.Record {
	out := make([]datastore.Record, n)
	for i := range out {
		payload := fmt.Sprintf(`{"temp":%d.5}`, 20+i)
		out[i] = datastore.Record{
			ID:       fmt.Sprintf("%s-%03d", prefix, i),
			Time:     day.Add(time.Duration(i) * 500 * time.Millisecond),
			Topic:    fmt.Sprintf("sensors/%d/temp", i%2),
			ClientID: fmt.Sprintf("client-%d", i%2),
			QoS:      1,
			Payload:  []byte(payload),
			JSON:     []byte(payload),
		}
	}
	return out
}

func write(tb testing.TB, s *Sink, batch []datastore.Record) error {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return s.Write(ctx, batch)
}

// bulkRequests returns the _bulk requests srv received.
func bulkRequests(srv *estest.Server) []estest.Request {
	var out []estest.Request
	for _, r := range srv.Requests() {
		if r.Path == "/_bulk" {
			out = append(out, r)
		}
	}
	return out
}
