// Package datastore stores the messages that flow through the broker in
// sinks (PostgreSQL, Elasticsearch, the embedded SQLite default). A Runner
// per sink owns the queue, batching, retry with back-off, the disk spool and
// the drop policy; sinks only write batches. The broker's hot path never
// waits for a sink: it emits events, and routes feed Runners from the bus.
//
// Wiring (cmd/tide), with the sink packages imported for their init:
//
//	rt, err := datastore.FromConfig(cfg, log)       // sinks, Runners, routes; replays spools
//	rt.Start(srv.Bus())                             // Router consumes Publish events
//	srv.AddSysSource(rt.Sys)                        // figures under $SYS/broker/datastore/...
//	plugins.SetSinkWriter(datastore.MapWriter{Router: rt}) // Lua sink.write
//	// the broker asks rt (a datastore.Saturation) before acknowledging QoS 1/2
//	...
//	srv.Shutdown(ctx); rt.Close(ctx)                // drain the bus queue, flush, spool the rest
package datastore

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Record is one stored message.
type Record struct {
	// ID is unique per message (event.Message.ID); stores use it to make
	// writes idempotent.
	ID       string    `json:"id"`
	Time     time.Time `json:"time"`
	Topic    string    `json:"topic"`
	ClientID string    `json:"client_id"`
	Username string    `json:"username,omitempty"`
	QoS      byte      `json:"qos"`
	Retain   bool      `json:"retain"`
	Payload  []byte    `json:"payload"`
	// JSON is the payload when it parses as JSON (nil otherwise).
	JSON           []byte            `json:"payload_json,omitempty"`
	ContentType    string            `json:"content_type,omitempty"`
	UserProperties map[string]string `json:"user_properties,omitempty"`
	// Extra are fields added by a Lua script (sink.write).
	Extra map[string]any `json:"extra,omitempty"`
}

// Sink writes batches of records to one store. The Runner calls Init once,
// Connect until it succeeds, Write for each batch, and Close once after the
// last Write.
type Sink interface {
	// Init validates the configuration without doing I/O.
	Init() error
	// Connect opens connections and prepares the store (tables, templates).
	// It may fail; the Runner retries it with back-off.
	Connect(ctx context.Context) error
	// Write stores a batch. It does no buffering of its own and is idempotent
	// per record ID. It returns nil, a *PartialError naming the records that
	// failed, or an error marked Permanent (the batch goes to the dead-letter
	// file) or not (the batch is retried).
	Write(ctx context.Context, batch []Record) error
	// Close releases the sink's resources.
	Close(ctx context.Context) error
}

// Querier is implemented by sinks that scheduler scripts can query with SQL.
type Querier interface {
	// Query runs a read-only statement with bound arguments and returns the
	// rows as column-name maps.
	Query(ctx context.Context, sql string, args ...any) ([]map[string]any, error)
}

// Searcher is implemented by sinks that answer Elasticsearch searches.
type Searcher interface {
	// Search runs a search request body against index and returns the
	// decoded response.
	Search(ctx context.Context, index string, body []byte) (map[string]any, error)
}

// ItemError is the failure of one record of a batch.
type ItemError struct {
	// Index is the record's position in the batch.
	Index int
	// Permanent failures go to the dead-letter file; others are retried.
	Permanent bool
	Reason    string
}

// PartialError reports that some records of a batch failed and the rest
// were stored.
type PartialError struct {
	Items []ItemError
}

// Error summarises the failures.
func (e *PartialError) Error() string {
	perm := 0
	for _, it := range e.Items {
		if it.Permanent {
			perm++
		}
	}
	return fmt.Sprintf("%d records failed (%d permanently)", len(e.Items), perm)
}

type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent marks err as one that retrying cannot fix.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// IsPermanent reports whether err was marked Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}
