package datastore_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/tidemq/tide/conf"
	"github.com/tidemq/tide/core/event"
	"github.com/tidemq/tide/datastore"
)

func TestFromConfig(t *testing.T) {
	dir := t.TempDir()
	cfg, err := conf.Parse("tide.toml", []byte(`
[persistence]
dir = "`+filepath.ToSlash(dir)+`"

[[sink]]
name = "history"
type = "sqlite"
flush_interval = "10ms"

[[route]]
topics = ["a/#"]
sinks = ["history"]
`))
	if err != nil {
		t.Fatal(err)
	}
	rt, err := datastore.FromConfig(cfg, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(context.Background())
	bus := event.NewBus(nil)
	rt.Start(bus)
	bus.Emit(&event.Event{Kind: event.Publish, Message: &event.Message{Topic: "a/b", ClientID: "c", Payload: []byte(`{"x":1}`)}})
	bus.Emit(&event.Event{Kind: event.Publish, Message: &event.Message{Topic: "b", ClientID: "c"}})
	q, ok := rt.Querier("history")
	if !ok {
		t.Fatalf("the sqlite sink is not a Querier")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if rows, err := q.Query(context.Background(), `SELECT count(*) AS n FROM messages`); err == nil && rows[0]["n"] == int64(1) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the routed message was not stored")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The defaults put the database and the spool in the persistence directory.
	for _, p := range []string{"history.db", "spool/history"} {
		if m, _ := filepath.Glob(filepath.Join(dir, p)); len(m) != 1 {
			t.Errorf("%s not created in %s", p, dir)
		}
	}
	if err := rt.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// A factory gets its options as the pointer its type registered, or nil
// for the defaults; options of another type are an error that names the
// sink type and both Go types.
func TestSettings(t *testing.T) {
	type opts struct{ N int }
	defaults := func() *opts { return &opts{N: 7} }
	if o, err := datastore.Settings("x", nil, defaults); err != nil || o.N != 7 {
		t.Errorf("nil settings: %+v, %v; want the defaults", o, err)
	}
	given := &opts{N: 3}
	if o, err := datastore.Settings("x", any(given), defaults); err != nil || o != given {
		t.Errorf("*opts settings: %+v, %v; want the same pointer", o, err)
	}
	_, err := datastore.Settings("x", any(opts{N: 3}), defaults)
	if err == nil || err.Error() != "x: options of type datastore_test.opts, want *datastore_test.opts" {
		t.Errorf("a value instead of a pointer: %v", err)
	}
}
