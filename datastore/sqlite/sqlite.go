// Package sqlite is the embedded default sink (type "sqlite"): every
// message in a local SQLite database (pure Go, modernc.org/sqlite), kept for
// a configurable time, and queryable by scheduler scripts.
//
// The table:
//
//	messages(id TEXT PRIMARY KEY, time INTEGER,  -- Unix milliseconds
//	         topic TEXT, client_id TEXT, username TEXT, qos INTEGER, retain INTEGER,
//	         payload BLOB, payload_json TEXT,     -- the payload when it is JSON, else NULL
//	         content_type TEXT, user_properties TEXT, extra TEXT)  -- JSON objects or NULL
//
// with indexes on (topic, time) and (time). The database is in WAL mode, so
// queries do not block writes; each Write is one transaction whose inserts
// skip ids already stored, which makes replays harmless.
package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/tidemq/tide/conf"
	"github.com/tidemq/tide/datastore"
)

// Type is the sink type name in tide.toml.
const Type = "sqlite"

// Options are the keys of a [[sink]] of type "sqlite".
type Options struct {
	// Path is the database file; default "<persistence.dir>/history.db".
	Path string `toml:"path"`
	// Keep is how long messages are kept; "0s" keeps them forever.
	Keep conf.Duration `toml:"keep"`
}

// DefaultKeep is how long messages are kept unless configured.
const DefaultKeep = 30 * 24 * time.Hour

// Validate checks the options without I/O.
func (o *Options) Validate() error {
	if o.Keep.Duration < 0 {
		return &conf.Error{Key: "keep", Msg: fmt.Sprintf("must not be negative, got %q", o.Keep.String())}
	}
	return nil
}

func defaultOptions() *Options { return &Options{Keep: conf.Duration{Duration: DefaultKeep}} }

func init() {
	conf.RegisterSinkOptions(Type, func() any { return defaultOptions() })
	datastore.Register(Type, func(name string, settings any, env datastore.Env) (datastore.Sink, error) {
		o, err := datastore.Settings(Type, settings, defaultOptions)
		if err != nil {
			return nil, err
		}
		opts := *o
		if opts.Path == "" {
			if env.DataDir == "" {
				return nil, errors.New("sqlite: no path, and no persistence directory to put history.db in")
			}
			opts.Path = filepath.Join(env.DataDir, "history.db")
		}
		return New(opts, env.Log), nil
	})
}

// Retention timing: a pass at Connect and then every RetentionInterval,
// deleting in transactions of retentionBatch rows so writes are never held
// up for long.
const (
	RetentionInterval = 10 * time.Minute
	retentionBatch    = 1000
)

// MaxQueryRows bounds the rows Query returns, so that a script that forgot
// a LIMIT gets an error instead of the whole history in memory.
const MaxQueryRows = 10000

// Sink stores messages in an SQLite database.
type Sink struct {
	opts Options
	log  *slog.Logger

	mu     sync.Mutex
	db     *sql.DB // the one writing connection
	ro     *sql.DB // read-only connections for Query
	insert *sql.Stmt
	stop   chan struct{}
	done   chan struct{}
}

var (
	_ datastore.Sink    = (*Sink)(nil)
	_ datastore.Querier = (*Sink)(nil)
)

// New returns a sink for the options; Connect opens the database.
func New(opts Options, log *slog.Logger) *Sink {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Sink{opts: opts, log: log}
}

// Init checks the options.
func (s *Sink) Init() error {
	if s.opts.Path == "" {
		return errors.New("sqlite: path is empty")
	}
	return s.opts.Validate()
}

const schema = `
CREATE TABLE IF NOT EXISTS messages (
	id TEXT PRIMARY KEY,
	time INTEGER NOT NULL,
	topic TEXT NOT NULL,
	client_id TEXT NOT NULL,
	username TEXT,
	qos INTEGER NOT NULL,
	retain INTEGER NOT NULL,
	payload BLOB,
	payload_json TEXT,
	content_type TEXT,
	user_properties TEXT,
	extra TEXT
);
CREATE INDEX IF NOT EXISTS messages_topic_time ON messages(topic, time);
CREATE INDEX IF NOT EXISTS messages_time ON messages(time);`

const insertSQL = `INSERT INTO messages (id, time, topic, client_id, username, qos, retain, payload, payload_json, content_type, user_properties, extra)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO NOTHING`

func dsn(path string, params ...string) string {
	u := url.URL{Scheme: "file", OmitHost: true, Path: path}
	return u.String() + "?" + strings.Join(params, "&")
}

// Connect opens (creating if needed) the database, its table and indexes,
// and starts the retention.
func (s *Sink) Connect(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db != nil {
		return nil
	}
	path, err := filepath.Abs(s.opts.Path)
	if err != nil {
		return fmt.Errorf("sqlite %s: %w", s.opts.Path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("sqlite %s: %w", path, err)
	}
	db, err := sql.Open("sqlite", dsn(path,
		"_pragma=busy_timeout(10000)", "_pragma=journal_mode(WAL)", "_pragma=synchronous(NORMAL)"))
	if err != nil {
		return s.fail(path, err)
	}
	db.SetMaxOpenConns(1) // SQLite has one writer; more connections only wait on its lock
	if _, err := db.ExecContext(ctx, schema); err != nil {
		db.Close()
		return s.fail(path, err)
	}
	insert, err := db.PrepareContext(ctx, insertSQL)
	if err != nil {
		db.Close()
		return s.fail(path, err)
	}
	ro, err := sql.Open("sqlite", dsn(path, "mode=ro", "_pragma=busy_timeout(10000)", "_query_only=1"))
	if err != nil {
		db.Close()
		return s.fail(path, err)
	}
	ro.SetMaxOpenConns(4)
	if err := ro.PingContext(ctx); err != nil {
		db.Close()
		ro.Close()
		return s.fail(path, err)
	}
	s.db, s.ro, s.insert = db, ro, insert
	s.stop, s.done = make(chan struct{}), make(chan struct{})
	go s.retention(s.stop, s.done)
	return nil
}

// fail describes an open error, naming the file. A file that is not a
// database stays so however often Connect is retried: Permanent tells the
// Runner to log it as an error that needs a human.
func (s *Sink) fail(path string, err error) error {
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_NOTADB:
			return datastore.Permanent(fmt.Errorf("sqlite: %s is not an SQLite database (move it away or set another path): %w", path, err))
		case sqlite3.SQLITE_CORRUPT:
			return datastore.Permanent(fmt.Errorf("sqlite: %s is damaged: %w", path, err))
		}
	}
	return fmt.Errorf("sqlite %s: %w", path, err)
}

type row struct {
	props, extra []byte
}

// Write stores the batch in one transaction. Records whose extra fields
// cannot be encoded as JSON fail permanently (a *PartialError); everything
// else that fails is the database's problem (disk full, locked, I/O) and
// temporary.
func (s *Sink) Write(ctx context.Context, batch []datastore.Record) error {
	if len(batch) == 0 {
		return nil
	}
	s.mu.Lock()
	db, insert := s.db, s.insert
	s.mu.Unlock()
	if db == nil {
		return errors.New("sqlite: not connected")
	}
	rows := make([]row, len(batch))
	var bad []datastore.ItemError
	for i := range batch {
		r := &batch[i]
		var err error
		if len(r.UserProperties) > 0 {
			rows[i].props, err = json.Marshal(r.UserProperties)
		}
		if err == nil && len(r.Extra) > 0 {
			rows[i].extra, err = json.Marshal(r.Extra)
		}
		if err != nil {
			bad = append(bad, datastore.ItemError{Index: i, Permanent: true, Reason: "extra fields are not encodable as JSON: " + err.Error()})
			rows[i].props = nil
		}
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: %w", err)
	}
	defer tx.Rollback()
	stmt := tx.StmtContext(ctx, insert)
	next := 0
	for i := range batch {
		if next < len(bad) && bad[next].Index == i {
			next++
			continue
		}
		r := &batch[i]
		if _, err := stmt.ExecContext(ctx, r.ID, r.Time.UnixMilli(), r.Topic, r.ClientID, nullString(r.Username),
			int(r.QoS), r.Retain, nonNilBytes(r.Payload), nullBytes(r.JSON), nullString(r.ContentType),
			nullBytes(rows[i].props), nullBytes(rows[i].extra)); err != nil {
			return fmt.Errorf("sqlite: insert: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: commit: %w", err)
	}
	if len(bad) > 0 {
		return &datastore.PartialError{Items: bad}
	}
	return nil
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// nullBytes stores JSON as TEXT, so that SQLite's json functions work on it.
func nullBytes(b []byte) any {
	if b == nil {
		return nil
	}
	return string(b)
}

// nonNilBytes keeps an empty payload an empty BLOB rather than NULL.
func nonNilBytes(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// Query runs a read-only statement (writes fail: the connection is opened
// read-only) with bound arguments. Values come back as int64, float64,
// string, []byte or nil; time is Unix milliseconds, retain 0 or 1.
func (s *Sink) Query(ctx context.Context, query string, args ...any) ([]map[string]any, error) {
	s.mu.Lock()
	ro := s.ro
	s.mu.Unlock()
	if ro == nil {
		return nil, errors.New("sqlite: not connected")
	}
	rows, err := ro.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	out := []map[string]any{}
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if len(out) == MaxQueryRows {
			return nil, fmt.Errorf("sqlite: query returns more than %d rows: add a LIMIT or aggregate", MaxQueryRows)
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, fmt.Errorf("sqlite: %w", err)
		}
		m := make(map[string]any, len(cols))
		for i, c := range cols {
			m[c] = vals[i]
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	return out, nil
}

// retention deletes messages older than Keep, at start and then every
// RetentionInterval.
func (s *Sink) retention(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	if s.opts.Keep.Duration <= 0 {
		return
	}
	t := time.NewTicker(RetentionInterval)
	defer t.Stop()
	for {
		if n, err := s.Prune(time.Now().Add(-s.opts.Keep.Duration)); err != nil {
			s.log.Error("sqlite retention failed", "err", err)
		} else if n > 0 {
			s.log.Info("sqlite retention: old messages deleted", "deleted", n, "keep", s.opts.Keep.String())
		}
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

// Prune deletes the messages older than before, in small transactions, and
// returns how many. Retention calls it; it is exported for tests and tools.
func (s *Sink) Prune(before time.Time) (int64, error) {
	s.mu.Lock()
	db, stop := s.db, s.stop
	s.mu.Unlock()
	if db == nil {
		return 0, errors.New("sqlite: not connected")
	}
	var total int64
	for {
		select {
		case <-stop:
			return total, nil
		default:
		}
		res, err := db.Exec(`DELETE FROM messages WHERE rowid IN (SELECT rowid FROM messages WHERE time < ? LIMIT ?)`,
			before.UnixMilli(), retentionBatch)
		if err != nil {
			return total, fmt.Errorf("sqlite %s: %w", s.opts.Path, err)
		}
		n, _ := res.RowsAffected()
		total += n
		if n < retentionBatch {
			return total, nil
		}
	}
}

// Close stops the retention and closes the database.
func (s *Sink) Close(ctx context.Context) error {
	s.mu.Lock()
	db, ro, stop, done := s.db, s.ro, s.stop, s.done
	s.db, s.ro, s.insert, s.stop = nil, nil, nil, nil
	s.mu.Unlock()
	if db == nil {
		return nil
	}
	close(stop)
	<-done
	return errors.Join(ro.Close(), db.Close())
}
