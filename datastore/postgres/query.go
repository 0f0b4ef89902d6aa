package postgres

import (
	"context"
	"database/sql/driver"
	"encoding/hex"
	"fmt"
	"math/big"
	"net/netip"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// Query runs one read-only statement with bound arguments ($1, $2, ...) in
// a READ ONLY transaction, so that a script cannot change the data even by
// mistake; PostgreSQL refuses a write with SQLSTATE 25006. Only one
// statement is accepted (the extended protocol refuses "a; b").
//
// Each row is a map from column name to a value that encodes to JSON and
// converts to Lua without surprises:
//
//	PostgreSQL                          Go
//	NULL                                nil
//	smallint, integer, bigint           int64
//	real, double precision              float64
//	numeric (avg, sum of integers)      float64 (scripts compute in float64 anyway)
//	boolean                             bool
//	text, varchar, char, name, enum     string
//	timestamptz, timestamp, date        string, RFC 3339 in UTC with nanoseconds
//	                                    ("2024-05-01T10:00:00.123Z"); date as "2024-05-01"
//	json, jsonb                         decoded: map[string]any, []any, float64, string, bool, nil
//	bytea                               []byte (base64 in JSON)
//	uuid                                string, "xxxxxxxx-xxxx-..."
//	inet, cidr                          string
//	interval                            float64 seconds
//	arrays                              []any of the above
//	anything else                       its text form (string)
//
// A column name that appears twice keeps the last value. More rows than
// query_max_rows is an error rather than a silent truncation.
func (s *Sink) Query(ctx context.Context, sql string, args ...any) ([]map[string]any, error) {
	pool := s.pool.Load()
	if pool == nil {
		return nil, fmt.Errorf("postgres sink %q: not connected", s.name)
	}
	tx, err := pool.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, s.errorf(err, "query")
	}
	// Rollback, not Commit: nothing was written, and it also ends the
	// transaction cleanly if the statement failed.
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		return nil, s.errorf(err, "query")
	}
	defer rows.Close()
	fields := rows.FieldDescriptions()
	out := []map[string]any{}
	for rows.Next() {
		if len(out) == s.opts.QueryMaxRows {
			return nil, fmt.Errorf("postgres sink %q: query returned more than query_max_rows (%d) rows; add a LIMIT or aggregate in SQL", s.name, s.opts.QueryMaxRows)
		}
		vals, err := rows.Values()
		if err != nil {
			return nil, s.errorf(err, "query")
		}
		row := make(map[string]any, len(vals))
		for i, v := range vals {
			row[fields[i].Name] = friendly(v, fields[i].DataTypeOID)
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		return nil, s.errorf(err, "query")
	}
	return out, nil
}

// friendly converts a value from pgx's Rows.Values to a JSON-friendly one
// (see Query).
func friendly(v any, oid uint32) any {
	switch x := v.(type) {
	case nil, bool, string, float64, []byte:
		return x
	case int16:
		return int64(x)
	case int32:
		return int64(x)
	case int64:
		return x
	case float32:
		return float64(x)
	case time.Time:
		if oid == pgtype.DateOID {
			return x.Format(time.DateOnly)
		}
		return x.UTC().Format(time.RFC3339Nano)
	case pgtype.Numeric:
		f, err := x.Float64Value()
		if err != nil || !f.Valid {
			return nil
		}
		return f.Float64
	case *big.Int:
		f, _ := new(big.Float).SetInt(x).Float64()
		return f
	case [16]byte: // uuid
		b := x[:]
		return hex.EncodeToString(b[0:4]) + "-" + hex.EncodeToString(b[4:6]) + "-" + hex.EncodeToString(b[6:8]) + "-" +
			hex.EncodeToString(b[8:10]) + "-" + hex.EncodeToString(b[10:16])
	case netip.Prefix:
		if x.Bits() == x.Addr().BitLen() {
			return x.Addr().String()
		}
		return x.String()
	case pgtype.Interval:
		if !x.Valid {
			return nil
		}
		// Months have no fixed length; 30 days is PostgreSQL's own
		// convention (justify_days, EXTRACT(epoch FROM interval)).
		secs := float64(x.Microseconds)/1e6 + float64(x.Days)*86400 + float64(x.Months)*30*86400
		return secs
	case map[string]any, []any:
		return friendlyJSON(x)
	case fmt.Stringer:
		return x.String()
	case driver.Valuer:
		dv, err := x.Value()
		if err != nil {
			return fmt.Sprint(v)
		}
		return friendly(dv, oid)
	}
	return fmt.Sprint(v)
}

// friendlyJSON walks decoded JSON (from json/jsonb) and arrays, converting
// array elements that are not JSON already.
func friendlyJSON(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = friendlyJSON(e)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = friendly(e, 0)
		}
		return x
	}
	return v
}
