// Package sql is the Lua module "sql": PostgreSQL queries from scripts
// through pgx connection pools.
//
//	local sql = require("sql")
//	local db, err = sql.open(config.dsn)            -- or sql.open(dsn, {max_conns = 4})
//	local rows, err = db:query("SELECT hash FROM users WHERE name = $1", client.username)
//	-- rows = {{hash = "..."}, ...}: one table per row, keyed by column name
//	local n, err = db:exec("UPDATE users SET seen = now() WHERE name = $1", client.username)
//
// Parameters are always bound ($1, $2...), never spliced into the text.
// open does not connect: the pool connects on first use, so an unreachable
// server shows as an error from query or exec, within the hook's deadline.
// Every VM of a plugin that opens the same DSN shares one pool; the pools
// close with the plugin (on reload or shutdown).
package sql

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/big"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	lua "github.com/yuin/gopher-lua"

	"github.com/tidemq/tide/plugins/lualib/luaconv"
)

// Name is the module's name for require.
const Name = "sql"

// MaxRows bounds the rows a query may return, so that a forgotten WHERE
// clause is an error rather than a memory spike on the broker.
const MaxRows = 10000

const handleType = "sql.db"

// Pools holds the connection pools of one plugin, by DSN and options.
type Pools struct {
	mu     sync.Mutex
	pools  map[string]*pgxpool.Pool
	closed bool
}

// NewPools returns an empty set of pools.
func NewPools() *Pools { return &Pools{pools: map[string]*pgxpool.Pool{}} }

// Close closes every pool, waiting for the connections in use to return.
func (p *Pools) Close() {
	p.mu.Lock()
	pools := p.pools
	p.pools, p.closed = map[string]*pgxpool.Pool{}, true
	p.mu.Unlock()
	for _, pool := range pools {
		pool.Close()
	}
}

// Open returns the shared pool of a DSN, creating it on first use.
func (p *Pools) Open(dsn string, maxConns int32) (*pgxpool.Pool, error) {
	key := fmt.Sprintf("%d\x00%s", maxConns, dsn)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, errors.New("sql: plugin is closing")
	}
	if pool, ok := p.pools[key]; ok {
		return pool, nil
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx errors can quote the DSN, password included: say less.
		return nil, fmt.Errorf("sql.open: invalid DSN: %s", redact(err.Error(), dsn))
	}
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("sql.open: %s", redact(err.Error(), dsn))
	}
	p.pools[key] = pool
	return pool, nil
}

func redact(msg, dsn string) string {
	if dsn == "" {
		return msg
	}
	return strings.ReplaceAll(msg, dsn, "<dsn>")
}

// Loader is the lua.LGFunction that require calls: it pushes the module.
func (p *Pools) Loader(L *lua.LState) int {
	mt := L.NewTypeMetatable(handleType)
	methods := L.SetFuncs(L.NewTable(), map[string]lua.LGFunction{
		"query": luaQuery,
		"exec":  luaExec,
	})
	mt.RawSetString("__index", methods)
	mt.RawSetString("__tostring", L.NewFunction(func(L *lua.LState) int {
		L.Push(lua.LString("sql.db"))
		return 1
	}))
	mod := L.NewTable()
	L.SetFuncs(mod, map[string]lua.LGFunction{"open": p.luaOpen})
	L.Push(mod)
	return 1
}

func (p *Pools) luaOpen(L *lua.LState) int {
	dsn := L.CheckString(1)
	var maxConns float64
	if t := L.OptTable(2, nil); t != nil {
		var err error
		if maxConns, err = luaconv.Number(t, "max_conns", 0); err != nil || maxConns < 0 || maxConns > math.MaxInt32 {
			L.ArgError(2, "max_conns must be a positive number")
		}
	}
	pool, err := p.Open(dsn, int32(maxConns))
	if err != nil {
		return luaconv.Fail(L, err)
	}
	ud := L.NewUserData()
	ud.Value = pool
	L.SetMetatable(ud, L.GetTypeMetatable(handleType))
	L.Push(ud)
	return 1
}

func checkPool(L *lua.LState) *pgxpool.Pool {
	ud := L.CheckUserData(1)
	pool, ok := ud.Value.(*pgxpool.Pool)
	if !ok {
		L.ArgError(1, "sql.db expected (call db:query, with a colon)")
	}
	return pool
}

func ctxOf(L *lua.LState) context.Context {
	if ctx := L.Context(); ctx != nil {
		return ctx
	}
	return context.Background()
}

func luaQuery(L *lua.LState) int {
	pool := checkPool(L)
	query := L.CheckString(2)
	rows, err := pool.Query(ctxOf(L), query, luaconv.QueryArgs(L, 3)...)
	if err != nil {
		return luaconv.Fail(L, fmt.Errorf("sql: query: %w", err))
	}
	defer rows.Close()
	fields := rows.FieldDescriptions()
	out := L.NewTable()
	n := 0
	for rows.Next() {
		if n++; n > MaxRows {
			return luaconv.Fail(L, fmt.Errorf("sql: query returned more than %d rows: add a LIMIT", MaxRows))
		}
		vals, err := rows.Values()
		if err != nil {
			return luaconv.Fail(L, fmt.Errorf("sql: query: %w", err))
		}
		row := L.CreateTable(0, len(fields))
		for i, f := range fields {
			row.RawSetString(f.Name, value(L, vals[i]))
		}
		out.Append(row)
	}
	if err := rows.Err(); err != nil {
		return luaconv.Fail(L, fmt.Errorf("sql: query: %w", err))
	}
	L.Push(out)
	return 1
}

func luaExec(L *lua.LState) int {
	pool := checkPool(L)
	query := L.CheckString(2)
	tag, err := pool.Exec(ctxOf(L), query, luaconv.QueryArgs(L, 3)...)
	if err != nil {
		return luaconv.Fail(L, fmt.Errorf("sql: exec: %w", err))
	}
	L.Push(lua.LNumber(tag.RowsAffected()))
	return 1
}

// value converts a column value: numbers to numbers, text to strings,
// bytea to (binary) strings, timestamps to RFC 3339 strings, UUIDs to their
// text form, JSON to tables, NULL to nil.
func value(L *lua.LState, v any) lua.LValue {
	switch x := v.(type) {
	case nil:
		return lua.LNil
	case pgtype.Numeric:
		f, err := x.Float64Value()
		if err != nil || !f.Valid {
			return lua.LNil
		}
		return lua.LNumber(f.Float64)
	case [16]byte:
		u := pgtype.UUID{Bytes: x, Valid: true}
		if b, err := u.MarshalJSON(); err == nil {
			return lua.LString(strings.Trim(string(b), `"`))
		}
	case time.Time:
		return lua.LString(x.Format(time.RFC3339Nano))
	case netip.Prefix:
		return lua.LString(x.String())
	case *big.Int:
		f, _ := new(big.Float).SetInt(x).Float64()
		return lua.LNumber(f)
	case pgtype.Time:
		return lua.LString(time.Duration(x.Microseconds * int64(time.Microsecond)).String())
	case pgtype.Interval:
		d := time.Duration(x.Microseconds)*time.Microsecond + time.Duration(x.Days)*24*time.Hour
		return lua.LNumber(d.Seconds() + float64(x.Months)*30*24*3600)
	}
	return luaconv.ToLua(L, v)
}
