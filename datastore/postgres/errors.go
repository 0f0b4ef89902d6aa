package postgres

import (
	"errors"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// class is what a failed statement means for the records it carried.
type class int

const (
	// temporary failures are retried by the Runner with the same records:
	// the server, network or configuration is at fault, not the data.
	temporary class = iota
	// data failures are caused by (at least) one record; Write isolates it.
	data
	// permanent failures cannot be fixed by retrying the same statement.
	permanent
)

func (c class) String() string {
	return [...]string{"temporary", "data", "permanent"}[c]
}

// classify maps an error of a statement to its class, by SQLSTATE
// (https://www.postgresql.org/docs/current/errcodes-appendix.html).
//
//	SQLSTATE                                   class      why
//	no PgError (dial, I/O, TLS, closed conn,   temporary  the network or server is down;
//	  timeouts, context deadline)                         the same batch succeeds later
//	08 connection exception                    temporary
//	40 serialization failure, deadlock         temporary  retrying is the documented remedy
//	53 too many connections, disk full, OOM    temporary
//	55 lock not available, object in use       temporary
//	57 admin shutdown, cannot connect now,     temporary
//	   query canceled
//	58 system/I/O error, XX internal error     temporary
//	25006 read-only transaction                temporary  a standby after a fail-over
//	28 auth, 3D no database, 3F no schema,     temporary  the operator can fix them while the
//	   42 undefined table/column, privilege              records wait in the spool; dead-
//	                                                      lettering good records would be worse
//	22 data exception (invalid JSON,           data       a record is at fault: isolated, and
//	   invalid UTF-8, out of range),                      only it is rejected (Permanent item)
//	23 integrity (NOT NULL, CHECK, a unique
//	   index besides id), 54 program limit
//	   (an index row too large)
//	anything else (0A feature not supported…)  permanent
func classify(err error) class {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return temporary
	}
	code := pe.Code
	switch {
	case code == "25006":
		return temporary
	case len(code) < 2:
		return permanent
	}
	switch code[:2] {
	case "08", "40", "53", "55", "57", "58", "XX", "28", "3D", "3F", "42":
		return temporary
	case "22", "23", "54":
		return data
	}
	return permanent
}

// describe renders a server error with its detail and the column at fault,
// which the bare message often lacks ("invalid input syntax for type json").
func describe(err error) string {
	if se, ok := err.(*sinkError); ok {
		return se.msg // already described, with its context
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return err.Error()
	}
	var b strings.Builder
	b.WriteString(pe.Message)
	if pe.ColumnName != "" {
		b.WriteString(" (column " + pe.ColumnName + ")")
	}
	if pe.Detail != "" {
		b.WriteString(": " + pe.Detail)
	}
	if pe.Where != "" {
		b.WriteString(" [" + pe.Where + "]")
	}
	b.WriteString(" (SQLSTATE " + pe.Code + ")")
	return b.String()
}
