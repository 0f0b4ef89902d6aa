package postgres

import (
	"context"
	"errors"
	"math"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tidemq/tide/conf"
	"github.com/tidemq/tide/datastore"
)

func TestConnectCreatesTableAndIndex(t *testing.T) {
	t.Parallel()
	dsn, schema := testSchema(t)
	s := openSink(t, dsn, nil)
	// A second Connect (the Runner reconnecting) finds everything in place.
	if err := s.Connect(context.Background()); err != nil {
		t.Fatalf("second Connect: %v", err)
	}
	rows, err := s.Query(context.Background(),
		`SELECT column_name, data_type FROM information_schema.columns
		 WHERE table_schema = $1 AND table_name = 'mqtt_messages' ORDER BY ordinal_position`, schema)
	if err != nil {
		t.Fatalf("columns: %v", err)
	}
	var got []string
	for _, r := range rows {
		got = append(got, r["column_name"].(string)+" "+r["data_type"].(string))
	}
	want := []string{"id text", "time timestamp with time zone", "topic text", "client_id text", "username text",
		"qos smallint", "retain boolean", "payload bytea", "payload_json jsonb", "content_type text",
		"user_properties jsonb", "extra jsonb"}
	if strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Errorf("columns:\n got %v\nwant %v", got, want)
	}
	idx := queryOne(t, s, `SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND indexname = 'mqtt_messages_topic_time_idx'`, schema)
	if def := idx["indexdef"].(string); !strings.HasSuffix(def, "USING btree (topic, "+`"time")`) {
		t.Errorf("index: got %s, want a btree on (topic, time)", def)
	}
	pk := queryOne(t, s, `SELECT count(*) AS n FROM pg_indexes WHERE schemaname = $1 AND tablename = 'mqtt_messages' AND indexdef LIKE '%UNIQUE%(id)'`, schema)
	if pk["n"] != int64(1) {
		t.Errorf("primary key on id: got %v unique indexes, want 1", pk["n"])
	}
}

func TestSchemaQualifiedTable(t *testing.T) {
	t.Parallel()
	_, schema := testSchema(t)
	s := openSink(t, baseDSN(t), func(o *Options) { o.Table = schema + ".archive" })
	if err := write(t, s, makeRecords("q", 3)); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if got := queryOne(t, s, "SELECT count(*) AS n FROM "+schema+".archive")["n"]; got != int64(3) {
		t.Errorf("rows: got %v, want 3", got)
	}
}

func TestConnectRefusesUnusableTable(t *testing.T) {
	t.Parallel()
	dsn, _ := testSchema(t)
	admin := openSink(t, dsn, func(o *Options) { o.Table = "other" })
	pool := admin.pool.Load()
	if _, err := pool.Exec(context.Background(), "CREATE TABLE mqtt_messages (id integer)"); err != nil {
		t.Fatal(err)
	}
	opts := DefaultOptions()
	opts.DSN, opts.CreateTable = dsn, false
	s, err := New("pg-bad-table", opts, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	err = s.Connect(context.Background())
	if err == nil {
		_ = s.Close(context.Background())
		t.Fatal("Connect: got nil, want an error for a table without the expected columns")
	}
	if !strings.Contains(err.Error(), `table "mqtt_messages" is not usable`) || !strings.Contains(err.Error(), "42703") {
		t.Errorf("Connect error: got %q, want it to name the table and SQLSTATE 42703 (undefined column)", err)
	}
	if datastore.IsPermanent(err) {
		t.Errorf("Connect error: got permanent, want temporary (the operator can fix the table while the Runner retries)")
	}
}

func TestWriteReplayInsertsNothingTwice(t *testing.T) {
	t.Parallel()
	dsn, _ := testSchema(t)
	s := openSink(t, dsn, nil)
	batch := makeRecords("r", 200)
	for i := 0; i < 3; i++ {
		if err := write(t, s, batch); err != nil {
			t.Fatalf("Write #%d: %v", i+1, err)
		}
	}
	// An overlapping batch, and one with a duplicate id inside it.
	more := append(makeRecords("r", 250)[150:], batch[0])
	if err := write(t, s, more); err != nil {
		t.Fatalf("overlapping Write: %v", err)
	}
	got := queryOne(t, s, "SELECT count(*) AS n, count(DISTINCT id) AS ids FROM mqtt_messages")
	if got["n"] != int64(250) || got["ids"] != int64(250) {
		t.Errorf("rows: got %v, want 250 rows with 250 distinct ids", got)
	}
	if err := write(t, s, nil); err != nil {
		t.Errorf("empty Write: got %v, want nil", err)
	}
}

func TestRecordRoundTripAndJSONQueries(t *testing.T) {
	t.Parallel()
	dsn, _ := testSchema(t)
	s := openSink(t, dsn, nil)
	recs := makeRecords("j", 10)
	plain := datastore.Record{ID: "plain", Time: recs[0].Time, Topic: "raw/bytes", ClientID: "c", Payload: []byte{0, 1, 0xff}}
	empty := datastore.Record{ID: "empty", Time: recs[0].Time, Topic: "raw/empty", ClientID: "c"}
	if err := write(t, s, append(recs, plain, empty)); err != nil {
		t.Fatalf("Write: %v", err)
	}
	avg := queryOne(t, s, `SELECT avg((payload_json->>'temp')::float) AS avg, count(*) AS n
		FROM mqtt_messages WHERE payload_json->>'unit' = $1`, "C")
	if avg["avg"] != 25.0 || avg["n"] != int64(10) {
		t.Errorf("avg of payload_json->>'temp': got %v, want avg 25 over 10 rows", avg)
	}
	row := queryOne(t, s, `SELECT * FROM mqtt_messages WHERE id = $1`, "j-00003")
	want := map[string]any{
		"id": "j-00003", "time": "2024-05-01T10:00:00.003Z", "topic": "sensors/3/temp", "client_id": "client-3",
		"username": "alice", "qos": int64(0), "retain": false, "content_type": "application/json",
	}
	for k, w := range want {
		if row[k] != w {
			t.Errorf("%s: got %#v, want %#v", k, row[k], w)
		}
	}
	if got := string(row["payload"].([]byte)); got != `{"temp":23.5,"unit":"C","seq":3}` {
		t.Errorf("payload: got %s", got)
	}
	if got := row["payload_json"].(map[string]any)["temp"]; got != 23.5 {
		t.Errorf("payload_json.temp: got %v, want 23.5", got)
	}
	if got := row["user_properties"].(map[string]any)["site"]; got != "lab" {
		t.Errorf("user_properties.site: got %v, want lab", got)
	}
	if got := row["extra"].(map[string]any)["n"]; got != 3.0 {
		t.Errorf("extra.n: got %v, want 3", got)
	}
	row = queryOne(t, s, `SELECT payload, payload_json, username, content_type, user_properties, extra FROM mqtt_messages WHERE id = 'plain'`)
	if got := row["payload"].([]byte); string(got) != "\x00\x01\xff" {
		t.Errorf("binary payload: got %v", got)
	}
	for _, k := range []string{"payload_json", "username", "content_type", "user_properties", "extra"} {
		if row[k] != nil {
			t.Errorf("%s of a plain record: got %#v, want NULL", k, row[k])
		}
	}
	row = queryOne(t, s, `SELECT octet_length(payload) AS n FROM mqtt_messages WHERE id = 'empty'`)
	if row["n"] != int64(0) {
		t.Errorf("empty payload: got length %v, want 0 (not NULL)", row["n"])
	}
}

func TestBadRecordsAreIsolated(t *testing.T) {
	t.Parallel()
	dsn, _ := testSchema(t)
	s := openSink(t, dsn, nil)
	batch := makeRecords("b", 50)
	batch[17].ContentType = "text/\x00plain"                    // 22021 invalid byte sequence: 0x00
	batch[33].Extra = map[string]any{"note": "nul\x00byte"}     // 22P05 \u0000 cannot be converted to text
	batch[40].Extra = map[string]any{"ratio": math.NaN()}       // cannot be encoded at all: never sent
	batch[45].Topic = string([]byte{'t', 0xff, 0xfe, '/', 'x'}) // 22021 invalid byte sequence for UTF8
	err := write(t, s, batch)
	var pe *datastore.PartialError
	if !errors.As(err, &pe) {
		t.Fatalf("Write: got %v, want a *PartialError", err)
	}
	wantIdx := []int{17, 33, 40, 45}
	wantCode := []string{"22021", "22P05", "NaN", "22021"}
	if len(pe.Items) != len(wantIdx) {
		t.Fatalf("items: got %+v, want records %v", pe.Items, wantIdx)
	}
	for i, it := range pe.Items {
		if it.Index != wantIdx[i] || !it.Permanent || !strings.Contains(it.Reason, wantCode[i]) {
			t.Errorf("item %d: got %+v, want index %d, permanent, reason mentioning %s", i, it, wantIdx[i], wantCode[i])
		}
	}
	if got := queryOne(t, s, "SELECT count(*) AS n FROM mqtt_messages")["n"]; got != int64(46) {
		t.Errorf("rows stored: got %v, want the 46 good records", got)
	}
	// The Runner retries nothing here, but a replay of the whole batch must
	// give the same answer and store nothing twice.
	err = write(t, s, batch)
	if !errors.As(err, &pe) || len(pe.Items) != 4 {
		t.Errorf("replay: got %v, want the same 4 items", err)
	}
	if got := queryOne(t, s, "SELECT count(*) AS n FROM mqtt_messages")["n"]; got != int64(46) {
		t.Errorf("rows after replay: got %v, want 46", got)
	}
}

// TestPayloadsJSONBCannotHold stores records whose JSON jsonb refuses with
// a NULL payload_json instead of rejecting them: the payload is kept whole.
func TestPayloadsJSONBCannotHold(t *testing.T) {
	t.Parallel()
	dsn, _ := testSchema(t)
	s := openSink(t, dsn, nil)
	batch := makeRecords("n", 4)
	batch[0].JSON = []byte(`{"note":"nul\u0000byte"}`)      // 22P05 in jsonb
	batch[1].JSON = []byte(`{"temp":`)                      // not JSON
	batch[2].JSON = []byte("{\"a\":\"\xff\"}")              // not UTF-8
	batch[3].JSON = []byte(`{"escaped":"\\u0000 is text"}`) // a backslash, then u0000: fine
	if err := write(t, s, batch); err != nil {
		t.Fatalf("Write: %v", err)
	}
	rows, err := s.Query(context.Background(), "SELECT id, payload_json IS NULL AS null_json, payload FROM mqtt_messages ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range rows {
		if want := i < 3; r["null_json"] != want {
			t.Errorf("%s: payload_json IS NULL = %v, want %v", r["id"], r["null_json"], want)
		}
		if got := string(r["payload"].([]byte)); got != string(batch[i].Payload) {
			t.Errorf("%s: payload %q, want %q", r["id"], got, batch[i].Payload)
		}
	}
}

func TestQuery(t *testing.T) {
	t.Parallel()
	dsn, _ := testSchema(t)
	s := openSink(t, dsn, func(o *Options) { o.QueryMaxRows = 20 })
	if err := write(t, s, makeRecords("q", 12)); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rows, err := s.Query(ctx, `SELECT topic, count(*) AS n, max(time) AS last, round(avg((payload_json->>'temp')::numeric), 2) AS avg
		FROM mqtt_messages WHERE topic LIKE $1 AND qos >= $2 GROUP BY topic ORDER BY topic`, "sensors/%", 0)
	if err != nil {
		t.Fatalf("Query: %v", err)
	}
	if len(rows) != 4 {
		t.Fatalf("rows: got %d, want 4 topics", len(rows))
	}
	want := map[string]any{"topic": "sensors/0/temp", "n": int64(3), "last": "2024-05-01T10:00:00.008Z", "avg": 24.5}
	for k, w := range want {
		if rows[0][k] != w {
			t.Errorf("%s: got %#v, want %#v", k, rows[0][k], w)
		}
	}

	types := queryOne(t, s, `SELECT 1::int2 AS i2, 2::int4 AS i4, 3::int8 AS i8, 1.5::float4 AS f4, 2.5::numeric AS num,
		'2024-05-01'::date AS d, '00000000-0000-0000-0000-0000000000ff'::uuid AS u, '10.0.0.1'::inet AS ip,
		'1 day 2 seconds'::interval AS iv, ARRAY[1,2] AS arr, '{"a":[1,"x",null]}'::jsonb AS js, NULL::text AS nothing`)
	wantTypes := map[string]any{"i2": int64(1), "i4": int64(2), "i8": int64(3), "f4": 1.5, "num": 2.5, "d": "2024-05-01",
		"u": "00000000-0000-0000-0000-0000000000ff", "ip": "10.0.0.1", "iv": 86402.0, "nothing": nil}
	for k, w := range wantTypes {
		if types[k] != w {
			t.Errorf("%s: got %#v (%T), want %#v", k, types[k], types[k], w)
		}
	}
	if arr, ok := types["arr"].([]any); !ok || len(arr) != 2 || arr[0] != int64(1) {
		t.Errorf("arr: got %#v, want []any{int64(1), int64(2)}", types["arr"])
	}
	if js, ok := types["js"].(map[string]any); !ok || len(js["a"].([]any)) != 3 {
		t.Errorf("js: got %#v, want decoded JSON", types["js"])
	}

	// Read only: a write is refused by the server, and nothing changes.
	_, err = s.Query(ctx, "DELETE FROM mqtt_messages")
	var pg *pgconn.PgError
	if !errors.As(err, &pg) || pg.Code != "25006" {
		t.Errorf("DELETE: got %v, want SQLSTATE 25006 read_only_sql_transaction", err)
	}
	if _, err := s.Query(ctx, "SELECT 1; DELETE FROM mqtt_messages"); err == nil {
		t.Errorf("two statements: got nil, want an error")
	}
	if got := queryOne(t, s, "SELECT count(*) AS n FROM mqtt_messages")["n"]; got != int64(12) {
		t.Errorf("rows after refused writes: got %v, want 12", got)
	}
	if _, err := s.Query(ctx, "SELECT * FROM generate_series(1, 21)"); err == nil || !strings.Contains(err.Error(), "query_max_rows (20)") {
		t.Errorf("21 rows with query_max_rows 20: got %v, want an error naming the limit", err)
	}
	if _, err := s.Query(ctx, "SELECT nope FROM mqtt_messages"); err == nil || !strings.Contains(err.Error(), "42703") {
		t.Errorf("bad column: got %v, want SQLSTATE 42703", err)
	}
	if rows, err := s.Query(ctx, "SELECT 1 WHERE false"); err != nil || rows == nil || len(rows) != 0 {
		t.Errorf("no rows: got %#v %v, want an empty, non-nil slice", rows, err)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Options)
		key  string
		msg  string
	}{
		{"missing dsn", func(o *Options) { o.DSN = "" }, "dsn", "missing (required)"},
		{"bad dsn syntax", func(o *Options) { o.DSN = "postgres://u:secret@host:notaport/db" }, "dsn", "invalid connection string"},
		{"bad dsn key", func(o *Options) { o.DSN = "host=h sslmode=sometimes" }, "dsn", "sslmode"},
		{"bad pool key", func(o *Options) { o.DSN = "postgres://h/db?pool_max_conns=zero" }, "dsn", "pool_max_conns"},
		{"empty table", func(o *Options) { o.Table = "" }, "table", "must not be empty"},
		{"upper-case table", func(o *Options) { o.Table = "Messages" }, "table", "lower-case"},
		{"injection", func(o *Options) { o.Table = "m; DROP TABLE x" }, "table", "not a lower-case SQL identifier"},
		{"three parts", func(o *Options) { o.Table = "a.b.c" }, "table", `want "table" or "schema.table"`},
		{"too long", func(o *Options) { o.Table = strings.Repeat("t", 64) }, "table", "63-byte"},
		{"query_max_rows", func(o *Options) { o.QueryMaxRows = 0 }, "query_max_rows", "at least 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := DefaultOptions()
			o.DSN = "postgres://tide@localhost:5432/tide"
			tc.edit(o)
			err := o.Validate()
			var es conf.Errors
			if !errors.As(err, &es) || len(es) != 1 {
				t.Fatalf("Validate: got %v, want one conf.Error", err)
			}
			if es[0].Key != tc.key || !strings.Contains(es[0].Msg, tc.msg) {
				t.Errorf("Validate: got %s: %s, want key %s and a message containing %q", es[0].Key, es[0].Msg, tc.key, tc.msg)
			}
			if strings.Contains(es[0].Msg, "secret") {
				t.Errorf("Validate leaks the password: %s", es[0].Msg)
			}
			if _, err := New("x", o, nil); err == nil {
				t.Errorf("New: got nil, want the validation error")
			}
		})
	}
	o := DefaultOptions()
	o.DSN = "host=db.example user=tide pool_max_conns=4 connect_timeout=3"
	o.Table = "tide.messages"
	if err := o.Validate(); err != nil {
		t.Errorf("valid options: got %v", err)
	}
}

func TestConfigFile(t *testing.T) {
	file := `
[[sink]]
name = "archive"
type = "postgres"
dsn = "postgres://tide:pw@db:5432/tide"
table = "archive.messages"

[[sink]]
name = "broken"
type = "postgres"
dsn = "postgres://tide@db:port/tide"
table = "Bad Name"

[[route]]
topics = ["#"]
sinks = ["archive", "broken"]
`
	_, err := conf.Parse("tide.toml", []byte(file))
	var es conf.Errors
	if !errors.As(err, &es) {
		t.Fatalf("Parse: got %v, want conf.Errors", err)
	}
	got := err.Error()
	for _, want := range []string{"tide.toml:11: sink[1].dsn: invalid connection string", "tide.toml:12: sink[1].table:"} {
		if !strings.Contains(got, want) {
			t.Errorf("errors:\n%s\nwant one containing %q", got, want)
		}
	}
	if len(es) != 2 {
		t.Errorf("errors: got %d, want 2 (the valid sink reports nothing):\n%s", len(es), got)
	}

	c, err := conf.Parse("tide.toml", []byte(file[:strings.Index(file, "[[sink]]\nname = \"broken\"")]+"[[route]]\ntopics = [\"#\"]\nsinks = [\"archive\"]\n"))
	if err != nil {
		t.Fatalf("Parse valid: %v", err)
	}
	o, ok := c.Sinks[0].Settings.(*Options)
	if !ok {
		t.Fatalf("Settings: got %T, want *Options", c.Sinks[0].Settings)
	}
	if o.Table != "archive.messages" || !o.CreateTable || o.QueryMaxRows != 10000 {
		t.Errorf("decoded options: got %+v, want table archive.messages and the defaults", o)
	}
}

func TestConnectUnreachableIsTemporary(t *testing.T) {
	t.Parallel()
	// A port nobody listens on: bind one, then close it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	opts := DefaultOptions()
	opts.DSN = "postgres://tide@" + addr + "/tide?sslmode=disable&connect_timeout=2"
	s, err := New("pg-down", opts, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	err = s.Connect(ctx)
	if err == nil {
		t.Fatal("Connect: got nil, want an error")
	}
	if datastore.IsPermanent(err) {
		t.Errorf("Connect: got a permanent error, want temporary: %v", err)
	}
	if !strings.Contains(err.Error(), `postgres sink "pg-down": connect`) || !strings.Contains(err.Error(), addr) {
		t.Errorf("Connect error: got %q, want it to name the sink and the address", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Connect took %v, want a prompt failure", d)
	}
	if err := s.Write(ctx, makeRecords("x", 1)); err == nil || datastore.IsPermanent(err) {
		t.Errorf("Write before Connect succeeded: got %v, want a temporary error", err)
	}
	if _, err := s.Query(ctx, "SELECT 1"); err == nil {
		t.Errorf("Query before Connect succeeded: got nil, want an error")
	}
	if err := s.Close(ctx); err != nil {
		t.Errorf("Close of an unconnected sink: %v", err)
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want class
	}{
		{errors.New("dial tcp: connection refused"), temporary},
		{context.DeadlineExceeded, temporary},
		{&pgconn.PgError{Code: "08006"}, temporary}, // connection failure
		{&pgconn.PgError{Code: "40001"}, temporary}, // serialization failure
		{&pgconn.PgError{Code: "40P01"}, temporary}, // deadlock
		{&pgconn.PgError{Code: "53300"}, temporary}, // too many connections
		{&pgconn.PgError{Code: "57P01"}, temporary}, // admin shutdown
		{&pgconn.PgError{Code: "57014"}, temporary}, // query canceled
		{&pgconn.PgError{Code: "25006"}, temporary}, // read-only: a standby
		{&pgconn.PgError{Code: "28P01"}, temporary}, // bad password
		{&pgconn.PgError{Code: "42P01"}, temporary}, // table dropped
		{&pgconn.PgError{Code: "22P02"}, data},      // invalid JSON
		{&pgconn.PgError{Code: "22021"}, data},      // invalid UTF-8
		{&pgconn.PgError{Code: "23502"}, data},      // NOT NULL
		{&pgconn.PgError{Code: "54000"}, data},      // index row too large
		{&pgconn.PgError{Code: "0A000"}, permanent}, // feature not supported
	} {
		if got := classify(tc.err); got != tc.want {
			t.Errorf("classify(%v): got %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestRegistered(t *testing.T) {
	opts := DefaultOptions()
	opts.DSN = "postgres://tide@localhost/tide"
	s, err := datastore.NewSink(Type, "archive", opts, datastore.Env{})
	if err != nil {
		t.Fatalf("NewSink: %v", err)
	}
	if _, ok := s.(*Sink); !ok {
		t.Errorf("NewSink: got %T, want *postgres.Sink", s)
	}
	if _, ok := s.(datastore.Querier); !ok {
		t.Errorf("NewSink: %T is not a datastore.Querier", s)
	}
	if _, err := datastore.NewSink(Type, "archive", nil, datastore.Env{}); err == nil || !strings.Contains(err.Error(), "dsn: missing") {
		t.Errorf("NewSink without settings: got %v, want the missing dsn", err)
	}
	if _, err := datastore.NewSink(Type, "archive", struct{}{}, datastore.Env{}); err == nil {
		t.Errorf("NewSink with foreign settings: got nil, want an error")
	}
}
