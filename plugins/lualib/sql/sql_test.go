package sql

import (
	"context"
	"strings"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/tidemq/tide/datastore/postgres/pgtest"
)

func run(t *testing.T, p *Pools, ctx context.Context, src string, dsn string) string {
	t.Helper()
	L := lua.NewState()
	defer L.Close()
	if ctx != nil {
		L.SetContext(ctx)
	}
	L.PreloadModule(Name, p.Loader)
	fn, err := L.LoadString(`local sql = require("sql") local dsn = ... ` + src)
	if err != nil {
		t.Fatal(err)
	}
	top := L.GetTop()
	L.Push(fn)
	L.Push(lua.LString(dsn))
	if err := L.PCall(1, lua.MultRet, nil); err != nil {
		msg, _, _ := strings.Cut(err.Error(), "\nstack traceback")
		return "raised: " + msg
	}
	var out []string
	for i := top + 1; i <= L.GetTop(); i++ {
		out = append(out, L.Get(i).String())
	}
	return strings.Join(out, " ")
}

func TestQueryExec(t *testing.T) {
	dsn, conn := pgtest.Schema(t)
	ctx := context.Background()
	if _, err := conn.Exec(ctx, `CREATE TABLE users (name text PRIMARY KEY, hash text, n int, score numeric, seen timestamptz, data jsonb, id uuid)`); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO users VALUES ('alice', 'h1', 3, 1.5, '2024-05-01T10:00:00Z', '{"role":"admin"}', '6ba7b810-9dad-11d1-80b4-00c04fd430c8'),
		('bob', 'h2', NULL, NULL, NULL, NULL, NULL)`); err != nil {
		t.Fatal(err)
	}
	p := NewPools()
	defer p.Close()
	cases := []struct{ src, want string }{
		{`local db = sql.open(dsn) local rows = db:query("SELECT name, hash, n FROM users ORDER BY name") return #rows, rows[1].name, rows[1].n, rows[2].name, rows[2].n`, "2 alice 3 bob nil"},
		{`local db = sql.open(dsn) local rows = db:query("SELECT hash FROM users WHERE name = $1", "alice") return #rows, rows[1].hash`, "1 h1"},
		// A bound parameter is data, never SQL.
		{`local db = sql.open(dsn) local rows = db:query("SELECT hash FROM users WHERE name = $1", "x' OR '1'='1") return #rows`, "0"},
		{`local db = sql.open(dsn) local r = db:query("SELECT score, seen, data, id FROM users WHERE name = $1", "alice")[1] return r.score, r.seen, r.data.role, r.id`,
			"1.5 2024-05-01T10:00:00Z admin 6ba7b810-9dad-11d1-80b4-00c04fd430c8"},
		{`local db = sql.open(dsn) return db:exec("UPDATE users SET n = $1 WHERE name = $2", 7, "bob")`, "1"},
		{`local db = sql.open(dsn) return db:query("SELECT n FROM users WHERE name = $1", "bob")[1].n`, "7"},
		{`local db = sql.open(dsn) local rows, err = db:query("SELECT nope FROM users") return rows, err:find("column \"nope\" does not exist", 1, true) ~= nil`, "nil true"},
		{`local db = sql.open(dsn) return db:query("SELECT 1", {})`, "raised: <string>:1: bad argument #3 to query (a parameter must be nil, a boolean, a number or a string, not a table)"},
		{`return sql.open("postgres://%%%")`, "nil sql.open: invalid DSN: cannot parse `<dsn>`: failed to parse as URL (invalid percent-encoded token: \"%%%\")"},
	}
	for _, tc := range cases {
		if got := run(t, p, nil, tc.src, dsn); got != tc.want {
			t.Errorf("%s\n = %q\nwant %q", tc.src, got, tc.want)
		}
	}
	// Every open of the same DSN shares one pool.
	if n := len(p.pools); n != 1 {
		t.Errorf("%d pools, want 1", n)
	}
}

func TestUnreachable(t *testing.T) {
	p := NewPools()
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	got := run(t, p, ctx, `local db = assert(sql.open(dsn)) local rows, err = db:query("SELECT 1") return rows, err:find("sql: query:", 1, true) == 1`, "postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=1")
	if got != "nil true" {
		t.Errorf("query on an unreachable server = %q, want nil and an error", got)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("took %v", took)
	}
	p.Close()
	if _, err := p.Open("postgres://x@127.0.0.1/db", 0); err == nil {
		t.Error("open after close succeeded")
	}
}
