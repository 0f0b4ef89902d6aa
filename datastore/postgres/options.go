package postgres

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tidemq/tide/conf"
	"github.com/tidemq/tide/datastore"
)

// Type is the sink type name used in [[sink]] tables.
const Type = "postgres"

func init() {
	conf.RegisterSinkOptions(Type, func() any { return DefaultOptions() })
	datastore.Register(Type, factory)
}

// factory builds a sink from the Options conf decoded (nil: the defaults).
func factory(name string, settings any, env datastore.Env) (datastore.Sink, error) {
	opts, err := datastore.Settings(Type, settings, DefaultOptions)
	if err != nil {
		return nil, err
	}
	// env.Log already names the sink.
	return newSink(name, opts, env.Log.With("type", Type))
}

// Options are the keys of a [[sink]] table of type "postgres".
type Options struct {
	// DSN is a libpq connection string, URL or key=value. The pool keys
	// pgxpool understands (pool_max_conns, pool_max_conn_lifetime, ...) are
	// accepted too. Required.
	DSN string `toml:"dsn"`
	// Table is the table messages are written to, "name" or "schema.name",
	// in lower case (default "mqtt_messages").
	Table string `toml:"table"`
	// CreateTable creates the table and its (topic, time) index when they
	// do not exist (default true).
	CreateTable bool `toml:"create_table"`
	// QueryMaxRows bounds the rows Query returns, so that a script's
	// forgotten LIMIT cannot exhaust the broker's memory (default 10000).
	QueryMaxRows int `toml:"query_max_rows"`
}

// DefaultOptions returns the options of a [[sink]] that sets only dsn.
func DefaultOptions() *Options {
	return &Options{Table: "mqtt_messages", CreateTable: true, QueryMaxRows: 10000}
}

// identRE is an SQL identifier that needs no quoting. Upper case is refused:
// the table is created quoted, and a script writing FROM Messages (folded to
// messages by PostgreSQL) would not find a table named "Messages".
var identRE = regexp.MustCompile(`^[a-z_][a-z0-9_$]*$`)

// maxIdentLen is PostgreSQL's NAMEDATALEN-1: longer names are truncated by
// the server, which would make the table name differ from the configured one.
const maxIdentLen = 63

// Validate checks the options without doing any I/O. Its errors name the
// key at fault, so that conf reports them with their line.
func (o *Options) Validate() error {
	var errs conf.Errors
	add := func(key, format string, args ...any) {
		errs = append(errs, &conf.Error{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	if strings.TrimSpace(o.DSN) == "" {
		// pgx accepts "" (everything from PG* environment variables), which
		// would make a forgotten key connect somewhere unexpected.
		add("dsn", "missing (required): a PostgreSQL connection string such as \"postgres://user:pass@host:5432/db\"")
	} else if _, err := pgxpool.ParseConfig(o.DSN); err != nil {
		// pgx redacts the password from its parse errors.
		add("dsn", "invalid connection string: %v", err)
	}
	if _, err := parseTable(o.Table); err != nil {
		add("table", "%v", err)
	}
	if o.QueryMaxRows < 1 {
		add("query_max_rows", "must be at least 1, got %d", o.QueryMaxRows)
	}
	if len(errs) == 0 {
		return nil
	}
	return errs
}

// parseTable splits "name" or "schema.name" into a quoted-ready identifier.
func parseTable(s string) (pgx.Identifier, error) {
	if s == "" {
		return nil, fmt.Errorf("must not be empty")
	}
	parts := strings.Split(s, ".")
	if len(parts) > 2 {
		return nil, fmt.Errorf("%q: want \"table\" or \"schema.table\"", s)
	}
	for _, p := range parts {
		switch {
		case len(p) > maxIdentLen:
			return nil, fmt.Errorf("%q: %q is longer than PostgreSQL's %d-byte limit", s, p, maxIdentLen)
		case !identRE.MatchString(p):
			return nil, fmt.Errorf("%q: %q is not a lower-case SQL identifier (letters a-z, digits, _ and $, not starting with a digit)", s, p)
		}
	}
	return pgx.Identifier(parts), nil
}
