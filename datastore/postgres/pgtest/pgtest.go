// Package pgtest gives tests (of the plugins, the scheduler) a PostgreSQL schema of
// their own on the server named by TIDE_TEST_POSTGRES.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Env names the variable holding the server's DSN.
const Env = "TIDE_TEST_POSTGRES"

// Schema creates a fresh schema, dropped when the test ends, and returns a
// DSN whose connections use it (search_path) and a connection for setting
// up tables. Without TIDE_TEST_POSTGRES the test is skipped, or fails when
// TIDE_REQUIRE_SERVICES=1.
func Schema(t testing.TB) (string, *pgx.Conn) {
	t.Helper()
	base := os.Getenv(Env)
	if base == "" {
		msg := "PostgreSQL tests need " + Env + ", e.g. " + Env + "=postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
		if os.Getenv("TIDE_REQUIRE_SERVICES") == "1" {
			t.Fatal(msg + " (TIDE_REQUIRE_SERVICES=1)")
		}
		t.Skip(msg)
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	schema := "tide_test_" + hex.EncodeToString(b)
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("%s: %v", Env, err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	dsn := u.String()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connect to %s: %v", Env, err)
	}
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		admin.Close(ctx)
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := admin.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema: %v", err)
		}
		admin.Close(ctx)
	})
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect with search_path: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return dsn, conn
}
