// Package postgres is the PostgreSQL sink: it stores records in one table,
// idempotently by record id, and answers read-only SQL for scheduler scripts.
//
// The sink does no buffering, batching or retrying of its own: the datastore
// Runner owns those. Write inserts exactly the batch it is given with one
// set-based statement and classifies failures (see classify). When a batch
// fails because of its data, Write bisects it to find the records at fault,
// stores the others, and reports the culprits as Permanent items of a
// *datastore.PartialError.
package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tidemq/tide/core/ratelog"
	"github.com/tidemq/tide/datastore"
)

// Interface guards.
var (
	_ datastore.Sink    = (*Sink)(nil)
	_ datastore.Querier = (*Sink)(nil)
)

// defaultConnectTimeout bounds a connection attempt when the DSN sets no
// connect_timeout: without it, a dial to a black-holed host waits for the
// kernel (minutes) and holds up the Runner's retry loop.
const defaultConnectTimeout = 10 * time.Second

// Sink writes records to a PostgreSQL table. Create it with New. Write and
// Close are called by one goroutine (the Runner); Query may be called
// concurrently with them.
type Sink struct {
	name  string
	opts  Options
	log   *slog.Logger
	table pgx.Identifier
	cfg   *pgxpool.Config

	insertSQL string

	mu   sync.Mutex // serialises Connect and Close
	pool atomic.Pointer[pgxpool.Pool]

	warn ratelog.Limiter // "records rejected", one line every ten seconds
}

// New returns a sink named name (the [[sink]] name, used in logs) for opts.
// It validates opts and does no I/O; a nil log discards.
func New(name string, opts *Options, log *slog.Logger) (*Sink, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return newSink(name, opts, log.With("sink", name, "type", Type))
}

// newSink is New with a logger that already names the sink.
func newSink(name string, opts *Options, log *slog.Logger) (*Sink, error) {
	if opts == nil {
		return nil, errors.New("postgres: nil options")
	}
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("postgres sink %q: %w", name, err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg, err := pgxpool.ParseConfig(opts.DSN)
	if err != nil { // checked by Validate; kept for safety
		return nil, fmt.Errorf("postgres sink %q: dsn: %w", name, err)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = defaultConnectTimeout
	}
	table, _ := parseTable(opts.Table)
	s := &Sink{
		name:  name,
		opts:  *opts,
		log:   log,
		table: table,
		cfg:   cfg,
	}
	s.insertSQL = fmt.Sprintf(insertTemplate, table.Sanitize())
	return s, nil
}

// Init reports whether the options are valid; New has checked them already,
// so it only guards a Sink built without New.
func (s *Sink) Init() error {
	if s.cfg == nil {
		return errors.New("postgres: sink not created with New")
	}
	return nil
}

// Connect opens the pool, checks that the server answers, creates the table
// and index if asked to, and checks that the insert statement works against
// the table as it is (columns, types, the unique id a conflict needs).
// Failures follow classify: an unreachable server, bad credentials or a
// table with the wrong layout are unmarked (the Runner retries while the
// operator fixes them); only what no retry can fix is marked Permanent.
func (s *Sink) Connect(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.pool.Swap(nil); old != nil {
		old.Close()
	}
	pool, err := pgxpool.NewWithConfig(ctx, s.cfg.Copy())
	if err != nil {
		return fmt.Errorf("postgres sink %q: %w", s.name, err)
	}
	if err := s.prepare(ctx, pool); err != nil {
		pool.Close()
		return s.connectError(err)
	}
	s.pool.Store(pool)
	s.log.Info("connected", "host", s.cfg.ConnConfig.Host, "database", s.cfg.ConnConfig.Database, "table", s.opts.Table)
	return nil
}

func (s *Sink) connectError(err error) error {
	e := s.errorf(err, "connect")
	if classify(err) == permanent {
		return datastore.Permanent(e)
	}
	return e
}

// sinkError names the sink and renders a server error with its detail,
// while still unwrapping to the *pgconn.PgError for callers that inspect it.
type sinkError struct {
	msg string
	err error
}

func (e *sinkError) Error() string { return e.msg }
func (e *sinkError) Unwrap() error { return e.err }

func (s *Sink) errorf(err error, format string, args ...any) error {
	return &sinkError{msg: fmt.Sprintf("postgres sink %q: ", s.name) + fmt.Sprintf(format, args...) + ": " + describe(err), err: err}
}

func (s *Sink) prepare(ctx context.Context, pool *pgxpool.Pool) error {
	if err := pool.Ping(ctx); err != nil {
		return err
	}
	if s.opts.CreateTable {
		if err := s.createTable(ctx, pool); err != nil {
			return err
		}
	}
	// An empty batch runs the real statement: it fails now, with a clear
	// message, if the table lacks a column, has another type, lacks the
	// unique id ON CONFLICT needs, or may not be written to.
	if _, err := pool.Exec(ctx, s.insertSQL, columns{}.args()...); err != nil {
		return &sinkError{msg: fmt.Sprintf("table %s is not usable: %s", s.table.Sanitize(), describe(err)), err: err}
	}
	return nil
}

func (s *Sink) createTable(ctx context.Context, pool *pgxpool.Pool) error {
	t := s.table.Sanitize()
	idx := pgx.Identifier{indexName(s.table[len(s.table)-1])}.Sanitize()
	stmts := []string{
		fmt.Sprintf(createTableTemplate, t),
		fmt.Sprintf("CREATE INDEX IF NOT EXISTS %s ON %s (topic, time)", idx, t),
	}
	for _, q := range stmts {
		_, err := pool.Exec(ctx, q)
		if err != nil && isCreateRace(err) {
			// Two sinks (or brokers) creating the same table at once: IF NOT
			// EXISTS is not atomic in PostgreSQL, and the loser sees a unique
			// violation on the catalog. The second attempt finds the table.
			_, err = pool.Exec(ctx, q)
		}
		if err != nil {
			return &sinkError{msg: fmt.Sprintf("create %s: %s", t, describe(err)), err: err}
		}
	}
	return nil
}

func isCreateRace(err error) bool {
	var pe interface{ SQLState() string }
	if !errors.As(err, &pe) {
		return false
	}
	return pe.SQLState() == "23505" || pe.SQLState() == "42P07"
}

// indexName is the (topic, time) index of table, within PostgreSQL's limit.
func indexName(table string) string {
	const suffix = "_topic_time_idx"
	if len(table) > maxIdentLen-len(suffix) {
		table = table[:maxIdentLen-len(suffix)]
	}
	return table + suffix
}

const createTableTemplate = `CREATE TABLE IF NOT EXISTS %s (
	id              text PRIMARY KEY,
	time            timestamptz NOT NULL,
	topic           text NOT NULL,
	client_id       text NOT NULL,
	username        text,
	qos             smallint NOT NULL,
	retain          boolean NOT NULL,
	payload         bytea NOT NULL,
	payload_json    jsonb,
	content_type    text,
	user_properties jsonb,
	extra           jsonb
)`

// insertTemplate writes a whole batch with one statement whose parameters
// are one array per column. ON CONFLICT (id) DO NOTHING makes a replayed
// batch (after a lost acknowledgement, or from the spool) insert nothing
// twice.
//
// It was chosen over COPY into a session's temporary table followed by
// INSERT ... SELECT ... ON CONFLICT DO NOTHING. On a local socket the two
// are level (the server's work, index upkeep included, dominates); across
// a network the set-based INSERT wins, as it needs one round trip where
// COPY needs four (BEGIN, COPY, INSERT, COMMIT). It also needs no
// transaction and no temporary table, which costs catalog churn per
// session and breaks behind PgBouncer in transaction mode, and one
// statement is what Write's bisection of bad records retries.
// BenchmarkWrite (bench_test.go), batch 500, PostgreSQL 15 on the same
// shared 2-core host (load average about 1.8), records/s of 3 runs:
//
//	go test -run '^$' -bench Write -benchtime 300x -count 3 ./datastore/postgres/
//	unnest, local socket        28629  46686  42190
//	copy,   local socket        44480  48250  52876
//	unnest, 2ms round trip      29750  30803  29943
//	copy,   2ms round trip      19644  19179  14211
//
// (Earlier local runs: unnest 43026 49677 46177, copy 25777 38286 46550.)
const insertTemplate = `INSERT INTO %s
	(id, time, topic, client_id, username, qos, retain, payload, payload_json, content_type, user_properties, extra)
SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::int2[], $7::bool[],
	$8::bytea[], $9::jsonb[], $10::text[], $11::jsonb[], $12::jsonb[])
ON CONFLICT (id) DO NOTHING`

// columns is a batch turned into one array per column. pos maps a row back
// to its index in the batch given to Write.
type columns struct {
	pos      []int
	ids      []string
	times    []time.Time
	topics   []string
	clients  []string
	users    []*string
	qos      []int16
	retain   []bool
	payloads [][]byte
	jsons    [][]byte
	ctypes   []*string
	uprops   [][]byte
	extras   [][]byte
}

func (c columns) args() []any {
	// Empty arrays rather than nil ones (which pgx sends as NULL) keep the
	// statement's meaning obvious for Connect's empty-batch check.
	return []any{
		nonNil(c.ids), nonNil(c.times), nonNil(c.topics), nonNil(c.clients), nonNil(c.users), nonNil(c.qos),
		nonNil(c.retain), nonNil(c.payloads), nonNil(c.jsons), nonNil(c.ctypes), nonNil(c.uprops), nonNil(c.extras),
	}
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func (c columns) len() int { return len(c.ids) }

// slice returns rows [lo, hi) sharing c's arrays.
func (c columns) slice(lo, hi int) columns {
	return columns{
		pos: c.pos[lo:hi], ids: c.ids[lo:hi], times: c.times[lo:hi], topics: c.topics[lo:hi],
		clients: c.clients[lo:hi], users: c.users[lo:hi], qos: c.qos[lo:hi], retain: c.retain[lo:hi],
		payloads: c.payloads[lo:hi], jsons: c.jsons[lo:hi], ctypes: c.ctypes[lo:hi], uprops: c.uprops[lo:hi],
		extras: c.extras[lo:hi],
	}
}

// buildColumns converts a batch. A record whose fields cannot be encoded
// (Extra holding NaN, say) is left out and reported as a Permanent item:
// no statement could ever store it.
func buildColumns(batch []datastore.Record) (columns, []datastore.ItemError) {
	n := len(batch)
	c := columns{
		pos: make([]int, 0, n), ids: make([]string, 0, n), times: make([]time.Time, 0, n),
		topics: make([]string, 0, n), clients: make([]string, 0, n), users: make([]*string, 0, n),
		qos: make([]int16, 0, n), retain: make([]bool, 0, n), payloads: make([][]byte, 0, n),
		jsons: make([][]byte, 0, n), ctypes: make([]*string, 0, n), uprops: make([][]byte, 0, n),
		extras: make([][]byte, 0, n),
	}
	var bad []datastore.ItemError
	for i := range batch {
		r := &batch[i]
		uprops, err := jsonOrNil(len(r.UserProperties) > 0, r.UserProperties)
		if err != nil {
			bad = append(bad, datastore.ItemError{Index: i, Permanent: true, Reason: "user_properties: " + err.Error()})
			continue
		}
		extra, err := jsonOrNil(len(r.Extra) > 0, r.Extra)
		if err != nil {
			bad = append(bad, datastore.ItemError{Index: i, Permanent: true, Reason: "extra: " + err.Error()})
			continue
		}
		payload := r.Payload
		if payload == nil {
			payload = []byte{} // NULL would break NOT NULL; an empty payload is a real MQTT payload
		}
		var js []byte
		if len(r.JSON) > 0 && jsonbCompatible(r.JSON) {
			js = r.JSON
		}
		c.pos = append(c.pos, i)
		c.ids = append(c.ids, r.ID)
		c.times = append(c.times, r.Time)
		c.topics = append(c.topics, r.Topic)
		c.clients = append(c.clients, r.ClientID)
		c.users = append(c.users, nullable(r.Username))
		c.qos = append(c.qos, int16(r.QoS))
		c.retain = append(c.retain, r.Retain)
		c.payloads = append(c.payloads, payload)
		c.jsons = append(c.jsons, js)
		c.ctypes = append(c.ctypes, nullable(r.ContentType))
		c.uprops = append(c.uprops, uprops)
		c.extras = append(c.extras, extra)
	}
	return c, bad
}

// jsonbCompatible reports whether PostgreSQL's jsonb can hold js: valid
// JSON in valid UTF-8, without the \u0000 escape jsonb refuses (SQLSTATE
// 22P05). payload_json is a view of the payload, which is stored whole in
// payload anyway, so a payload jsonb cannot hold leaves it NULL rather
// than getting the record rejected.
func jsonbCompatible(js []byte) bool {
	if !utf8.Valid(js) || !json.Valid(js) {
		return false
	}
	if !bytes.Contains(js, []byte(`\u0000`)) {
		return true
	}
	var v any
	if json.Unmarshal(js, &v) != nil {
		return false
	}
	return !hasNUL(v)
}

func hasNUL(v any) bool {
	switch x := v.(type) {
	case string:
		return strings.IndexByte(x, 0) >= 0
	case []any:
		for _, e := range x {
			if hasNUL(e) {
				return true
			}
		}
	case map[string]any:
		for k, e := range x {
			if strings.IndexByte(k, 0) >= 0 || hasNUL(e) {
				return true
			}
		}
	}
	return false
}

func jsonOrNil(present bool, v any) ([]byte, error) {
	if !present {
		return nil, nil
	}
	return json.Marshal(v)
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// Write stores batch with one statement. It returns nil when every record is
// stored (or was already), an unmarked error when the whole batch should be
// retried, or a *datastore.PartialError naming the records that failed: the
// ones at fault are Permanent, and the ones that could not be tried because
// the server failed meanwhile are not.
func (s *Sink) Write(ctx context.Context, batch []datastore.Record) error {
	pool := s.pool.Load()
	if pool == nil {
		return fmt.Errorf("postgres sink %q: not connected", s.name)
	}
	if len(batch) == 0 {
		return nil
	}
	cols, bad := buildColumns(batch)
	if cols.len() > 0 {
		err := s.insert(ctx, pool, cols)
		switch cl := classify(err); {
		case err == nil:
		case cl == temporary:
			return s.errorf(err, "write %d records", cols.len())
		case cl == permanent:
			return datastore.Permanent(s.errorf(err, "write %d records", cols.len()))
		default:
			bad = s.isolate(ctx, pool, cols, err, bad)
		}
	}
	if len(bad) == 0 {
		return nil
	}
	perm := 0
	for _, it := range bad {
		if it.Permanent {
			perm++
		}
	}
	if perm > 0 {
		if ok, suppressed := s.warn.Allow("records rejected"); ok {
			s.log.Warn("records rejected", "rejected", perm, "batch", len(batch), "first_reason", firstPermanent(bad), "suppressed_warnings", suppressed)
		}
	}
	return &datastore.PartialError{Items: sortItems(bad)}
}

func (s *Sink) insert(ctx context.Context, pool *pgxpool.Pool, c columns) error {
	_, err := pool.Exec(ctx, s.insertSQL, c.args()...)
	return err
}

// isolate finds the records at fault in a batch that failed with a data
// error by bisection: each half is written on its own (and stays written,
// which is safe because writes are idempotent), and the half that fails is
// split again, down to single records. One bad record in a batch of 500
// costs about 18 statements instead of 500. If the server fails in the
// middle, the records not yet settled are reported as temporary items.
func (s *Sink) isolate(ctx context.Context, pool *pgxpool.Pool, c columns, first error, bad []datastore.ItemError) []datastore.ItemError {
	var down error // set once the server fails: the rest is not tried
	mark := func(c columns, permanent bool, err error) {
		for _, p := range c.pos {
			bad = append(bad, datastore.ItemError{Index: p, Permanent: permanent, Reason: describe(err)})
		}
	}
	var walk func(c columns, err error)
	walk = func(c columns, err error) { // err is nil when c has not been tried yet
		if down != nil {
			mark(c, false, down)
			return
		}
		if err == nil {
			if err = s.insert(ctx, pool, c); err == nil {
				return
			}
		}
		switch classify(err) {
		case temporary:
			down = err
			mark(c, false, err)
		case permanent:
			mark(c, true, err)
		default:
			if c.len() == 1 {
				mark(c, true, err)
				return
			}
			mid := c.len() / 2
			walk(c.slice(0, mid), nil)
			walk(c.slice(mid, c.len()), nil)
		}
	}
	walk(c, first)
	return bad
}

func firstPermanent(items []datastore.ItemError) string {
	for _, it := range items {
		if it.Permanent {
			return it.Reason
		}
	}
	return ""
}

func sortItems(items []datastore.ItemError) []datastore.ItemError {
	// Insertion sort: items are few and nearly sorted (the encoding
	// failures come first, then the bisection's in order).
	for i := 1; i < len(items); i++ {
		for j := i; j > 0 && items[j].Index < items[j-1].Index; j-- {
			items[j], items[j-1] = items[j-1], items[j]
		}
	}
	return items
}

// Close closes the pool, waiting for Query calls in progress until ctx ends.
func (s *Sink) Close(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	pool := s.pool.Swap(nil)
	if pool == nil {
		return nil
	}
	done := make(chan struct{})
	go func() {
		pool.Close()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("postgres sink %q: close: %w", s.name, ctx.Err())
	}
}
