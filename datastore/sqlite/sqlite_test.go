package sqlite_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tidemq/tide/conf"
	"github.com/tidemq/tide/datastore"
	"github.com/tidemq/tide/datastore/sinktest"
	"github.com/tidemq/tide/datastore/sqlite"
)

// lookup reads records back with a connection of its own, as a user would.
func lookup(t *testing.T, path, id string) []datastore.Record {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT id, time, topic, client_id, username, qos, retain, payload, payload_json,
		content_type, user_properties, extra FROM messages WHERE id = ?`, id)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []datastore.Record
	for rows.Next() {
		var r datastore.Record
		var ms int64
		var username, js, ctype, props, extra sql.NullString
		if err := rows.Scan(&r.ID, &ms, &r.Topic, &r.ClientID, &username, &r.QoS, &r.Retain, &r.Payload, &js, &ctype, &props, &extra); err != nil {
			t.Fatal(err)
		}
		r.Time = time.UnixMilli(ms)
		r.Username, r.ContentType = username.String, ctype.String
		if js.Valid {
			r.JSON = []byte(js.String)
		}
		if props.Valid {
			if err := json.Unmarshal([]byte(props.String), &r.UserProperties); err != nil {
				t.Fatal(err)
			}
		}
		if extra.Valid {
			if err := json.Unmarshal([]byte(extra.String), &r.Extra); err != nil {
				t.Fatal(err)
			}
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestConformance(t *testing.T) {
	sinktest.Run(t, func(t *testing.T) sinktest.Harness {
		path := filepath.Join(t.TempDir(), "history.db")
		return sinktest.Harness{
			Open:   func(t *testing.T) datastore.Sink { return sqlite.New(sqlite.Options{Path: path}, nil) },
			Lookup: func(t *testing.T, id string) []datastore.Record { return lookup(t, path, id) },
		}
	})
}

func open(t *testing.T, opts sqlite.Options) *sqlite.Sink {
	t.Helper()
	s := sqlite.New(opts, nil)
	if err := s.Init(); err != nil {
		t.Fatal(err)
	}
	if err := s.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

func TestNotADatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notes.txt")
	if err := os.WriteFile(path, []byte(strings.Repeat("this is not a database\n", 100)), 0o644); err != nil {
		t.Fatal(err)
	}
	s := sqlite.New(sqlite.Options{Path: path}, nil)
	err := s.Connect(context.Background())
	if err == nil {
		s.Close(context.Background())
		t.Fatalf("Connect on a text file succeeded")
	}
	if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "not an SQLite database") {
		t.Fatalf("error = %q, want it to name %s and say it is not a database", err, path)
	}
	if !datastore.IsPermanent(err) {
		t.Fatalf("error is not marked permanent: %v", err)
	}
}

func TestUnwritableDirectory(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o644)
	path := filepath.Join(file, "sub", "history.db")
	err := sqlite.New(sqlite.Options{Path: path}, nil).Connect(context.Background())
	if err == nil || !strings.Contains(err.Error(), "sub") {
		t.Fatalf("Connect under a regular file = %v, want an error naming the path", err)
	}
}

func TestQuery(t *testing.T) {
	s := open(t, sqlite.Options{Path: filepath.Join(t.TempDir(), "h.db")})
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	var batch []datastore.Record
	for i := range 6 {
		p := []byte(`{"temp":` + []string{"20", "26", "24", "28", "28", "30"}[i] + `}`)
		batch = append(batch, datastore.Record{ID: "q" + string(rune('a'+i)), Time: base.Add(time.Duration(i) * time.Minute),
			Topic: []string{"home/kitchen/temp", "home/hall/temp"}[i%2], ClientID: "c", QoS: 1, Payload: p, JSON: p})
	}
	if err := s.Write(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	rows, err := s.Query(context.Background(),
		`SELECT topic, count(*) AS n, avg(json_extract(payload_json, '$.temp')) AS avg, max(time) AS last
		 FROM messages WHERE topic LIKE ? AND time >= ? GROUP BY topic ORDER BY topic`,
		"home/%", base.UnixMilli())
	if err != nil {
		t.Fatal(err)
	}
	want := []map[string]any{
		{"topic": "home/hall/temp", "n": int64(3), "avg": 28.0, "last": base.Add(5 * time.Minute).UnixMilli()},
		{"topic": "home/kitchen/temp", "n": int64(3), "avg": 24.0, "last": base.Add(4 * time.Minute).UnixMilli()},
	}
	if len(rows) != len(want) {
		t.Fatalf("got %d rows, want %d: %v", len(rows), len(want), rows)
	}
	for i := range want {
		for k, v := range want[i] {
			if rows[i][k] != v {
				t.Errorf("row %d %s = %#v, want %#v", i, k, rows[i][k], v)
			}
		}
	}
	rows, err = s.Query(context.Background(), `SELECT payload, retain, username FROM messages WHERE id = ?`, "qa")
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := rows[0]["payload"].([]byte); !ok || string(p) != `{"temp":20}` || rows[0]["retain"] != int64(0) || rows[0]["username"] != nil {
		t.Fatalf("row = %#v", rows[0])
	}
	if rows, err := s.Query(context.Background(), `SELECT 1 WHERE 0`); err != nil || rows == nil || len(rows) != 0 {
		t.Fatalf("empty result = %#v, %v; want an empty, non-nil slice", rows, err)
	}
	for _, q := range []string{`DELETE FROM messages`, `INSERT INTO messages(id, time, topic, client_id, qos, retain) VALUES ('x', 0, 't', 'c', 0, 0)`, `PRAGMA query_only = 0; DELETE FROM messages`} {
		if _, err := s.Query(context.Background(), q); err == nil {
			t.Errorf("Query(%q) succeeded on the read-only connection", q)
		}
	}
	if rows, _ := s.Query(context.Background(), `SELECT count(*) AS n FROM messages`); rows[0]["n"] != int64(6) {
		t.Fatalf("rows after refused writes = %v, want 6", rows[0]["n"])
	}
	if _, err := s.Query(context.Background(), `SELEC nonsense`); err == nil {
		t.Fatalf("a syntax error gave no error")
	}
	if rows, _ := s.Query(context.Background(), `PRAGMA journal_mode`); rows[0]["journal_mode"] != "wal" {
		t.Fatalf("journal mode = %v, want wal", rows[0]["journal_mode"])
	}
}

func TestQueryRowLimit(t *testing.T) {
	s := open(t, sqlite.Options{Path: filepath.Join(t.TempDir(), "h.db")})
	_, err := s.Query(context.Background(), `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < ?) SELECT i FROM n`, sqlite.MaxQueryRows+1)
	if err == nil || !strings.Contains(err.Error(), "LIMIT") {
		t.Fatalf("unbounded query = %v, want an error asking for a LIMIT", err)
	}
}

func TestUnencodableExtraIsPermanentItem(t *testing.T) {
	path := filepath.Join(t.TempDir(), "h.db")
	s := open(t, sqlite.Options{Path: path})
	batch := []datastore.Record{
		{ID: "ok1", Time: time.Now(), Topic: "t", ClientID: "c"},
		{ID: "bad", Time: time.Now(), Topic: "t", ClientID: "c", Extra: map[string]any{"x": math.Inf(1)}},
		{ID: "ok2", Time: time.Now(), Topic: "t", ClientID: "c"},
	}
	err := s.Write(context.Background(), batch)
	var pe *datastore.PartialError
	if !errors.As(err, &pe) || len(pe.Items) != 1 || pe.Items[0].Index != 1 || !pe.Items[0].Permanent {
		t.Fatalf("Write = %v, want a PartialError with item 1 permanent", err)
	}
	if got := len(lookup(t, path, "ok1")) + len(lookup(t, path, "ok2")); got != 2 {
		t.Fatalf("the good records were not stored: %d of 2", got)
	}
	if got := lookup(t, path, "bad"); len(got) != 0 {
		t.Fatalf("the bad record was stored")
	}
}

func TestRetention(t *testing.T) {
	path := filepath.Join(t.TempDir(), "h.db")
	// Store old and new messages, then reopen with a keep that covers only
	// the new ones: the pass at Connect deletes the rest.
	s := open(t, sqlite.Options{Path: path})
	now := time.Now()
	var batch []datastore.Record
	for i := range 2500 {
		age := 48 * time.Hour
		if i%5 == 0 {
			age = time.Minute
		}
		batch = append(batch, datastore.Record{ID: "r" + time.Duration(i).String(), Time: now.Add(-age), Topic: "t", ClientID: "c"})
	}
	if err := s.Write(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	s.Close(context.Background())

	s2 := open(t, sqlite.Options{Path: path, Keep: conf.Duration{Duration: 24 * time.Hour}})
	deadline := time.Now().Add(10 * time.Second)
	for {
		rows, err := s2.Query(context.Background(), `SELECT count(*) AS n FROM messages`)
		if err != nil {
			t.Fatal(err)
		}
		if rows[0]["n"] == int64(500) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rows after retention = %v, want 500", rows[0]["n"])
		}
		time.Sleep(10 * time.Millisecond)
	}
	n, err := s2.Prune(now.Add(time.Hour))
	if err != nil || n != 500 {
		t.Fatalf("Prune = %d, %v; want 500", n, err)
	}
}

func TestConfig(t *testing.T) {
	cfg, err := conf.Parse("tide.toml", []byte(`
[persistence]
dir = "/var/lib/tide"

[[sink]]
name = "history"
type = "sqlite"
keep = "7d"

[[sink]]
name = "other"
type = "sqlite"
path = "/tmp/other.db"
keep = "0s"
`))
	if err != nil {
		t.Fatal(err)
	}
	o, ok := cfg.Sinks[0].Settings.(*sqlite.Options)
	if !ok || o.Keep.Duration != 7*24*time.Hour || o.Path != "" {
		t.Fatalf("settings = %#v", cfg.Sinks[0].Settings)
	}
	if o := cfg.Sinks[1].Settings.(*sqlite.Options); o.Path != "/tmp/other.db" || o.Keep.Duration != 0 {
		t.Fatalf("settings = %#v", o)
	}
	s, err := datastore.NewSink("sqlite", "history", cfg.Sinks[0].Settings, datastore.Env{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Init(); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct{ toml, want string }{
		{"keep = \"-1d\"", "bad.toml:5: sink[0].keep: must not be negative"},
		{"keep = 30", "bad.toml:5: sink[0].keep: invalid duration 30"},
		{"pth = \"x.db\"", `bad.toml:5: sink[0].pth: unknown key (did you mean "path"?)`},
	} {
		_, err = conf.Parse("bad.toml", []byte("\n[[sink]]\nname = \"history\"\ntype = \"sqlite\"\n"+tc.toml+"\n"))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.toml, err, tc.want)
		}
	}
	if _, err := datastore.NewSink("sqlite", "h", nil, datastore.Env{}); err == nil {
		t.Fatalf("a sink without path or data directory was built")
	}
}
