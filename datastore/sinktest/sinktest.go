// Package sinktest is the conformance suite every datastore sink passes.
// A sink's test calls Run with a function that makes a fresh, empty store
// (its own file, schema or index) and says how to open sinks on it and how
// to read back what they stored:
//
//	func TestConformance(t *testing.T) {
//		sinktest.Run(t, func(t *testing.T) sinktest.Harness {
//			path := filepath.Join(t.TempDir(), "h.db")
//			return sinktest.Harness{
//				Open:   func(t *testing.T) datastore.Sink { return sqlite.New(sqlite.Options{Path: path}, nil) },
//				Lookup: func(t *testing.T, id string) []datastore.Record { ... },
//			}
//		})
//	}
package sinktest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidemq/tide/datastore"
)

// Harness is one store under test.
type Harness struct {
	// Open returns a new sink on the store, before Init. Run calls it more
	// than once for one store (the reconnect test) and closes each sink.
	Open func(t *testing.T) datastore.Sink
	// Lookup returns every stored copy of the record with this id: none,
	// one, or more if the sink stored it twice. It must see every Write
	// that returned (refresh an index first if the store needs it). Time
	// may be truncated to milliseconds; JSON, UserProperties and Extra are
	// compared as JSON values, so their encoding is free.
	Lookup func(t *testing.T, id string) []datastore.Record
}

// Run runs the suite, each case on a fresh store from newStore.
func Run(t *testing.T, newStore func(t *testing.T) Harness) {
	cases := []struct {
		name string
		fn   func(t *testing.T, h Harness)
	}{
		{"WriteAndReadBack", writeAndReadBack},
		{"SameBatchTwice", sameBatchTwice},
		{"OverlappingBatches", overlappingBatches},
		{"Payloads", payloads},
		{"PropertiesAndExtra", propertiesAndExtra},
		{"EmptyBatch", emptyBatch},
		{"CloseAfterWrite", closeAfterWrite},
		{"WriteAfterReconnect", writeAfterReconnect},
		{"CancelledContext", cancelledContext},
		{"LargeBatch", largeBatch},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.fn(t, newStore(t))
		})
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// connect opens, initialises and connects a sink, closing it at the end
// of the test unless the test closes it itself.
func connect(t *testing.T, h Harness) datastore.Sink {
	t.Helper()
	s := h.Open(t)
	if err := s.Init(); err != nil {
		t.Fatalf("Init: %v", err)
	}
	if err := s.Connect(ctx(t)); err != nil {
		t.Fatalf("Connect: %v", err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			s.Close(context.Background())
		}
	})
	return &trackClose{Sink: s, closed: &closed}
}

type trackClose struct {
	datastore.Sink
	closed *bool
}

// Close records that the test closed the sink itself.
func (c *trackClose) Close(ctx context.Context) error {
	*c.closed = true
	return c.Sink.Close(ctx)
}

func write(t *testing.T, s datastore.Sink, batch []datastore.Record) {
	t.Helper()
	if err := s.Write(ctx(t), batch); err != nil {
		t.Fatalf("Write of %d records: %v", len(batch), err)
	}
}

var seq atomic.Uint64

// newRecord returns a record with every field set and a unique id.
func newRecord(i int) datastore.Record {
	payload := []byte(fmt.Sprintf(`{"n":%d,"temp":21.5}`, i))
	return datastore.Record{
		ID:       fmt.Sprintf("sinktest-%d-%06d-%d", time.Now().UnixNano(), seq.Add(1), i),
		Time:     time.Date(2025, 3, 14, 15, 9, 26, 535_897_000, time.UTC).Add(time.Duration(i) * time.Second),
		Topic:    fmt.Sprintf("sinktest/room-%d/temp", i%3),
		ClientID: "client-" + fmt.Sprint(i%2),
		Username: "user",
		QoS:      byte(i % 3),
		Retain:   i%2 == 0,
		Payload:  payload,
		JSON:     payload,
	}
}

func batchOf(n int) []datastore.Record {
	b := make([]datastore.Record, n)
	for i := range b {
		b[i] = newRecord(i)
	}
	return b
}

// expectOnce checks that each record is stored exactly once, as written.
func expectOnce(t *testing.T, h Harness, recs ...datastore.Record) {
	t.Helper()
	for _, want := range recs {
		got := h.Lookup(t, want.ID)
		if len(got) != 1 {
			t.Fatalf("record %s stored %d times, want once", want.ID, len(got))
		}
		same(t, got[0], want)
	}
}

// same compares a stored record with the one written.
func same(t *testing.T, got, want datastore.Record) {
	t.Helper()
	errorf := func(field string, g, w any) {
		t.Errorf("record %s: %s = %v, want %v", want.ID, field, g, w)
	}
	if got.ID != want.ID {
		errorf("ID", got.ID, want.ID)
	}
	if got.Time.UnixMilli() != want.Time.UnixMilli() {
		errorf("Time", got.Time, want.Time)
	}
	if got.Topic != want.Topic {
		errorf("Topic", got.Topic, want.Topic)
	}
	if got.ClientID != want.ClientID {
		errorf("ClientID", got.ClientID, want.ClientID)
	}
	if got.Username != want.Username {
		errorf("Username", got.Username, want.Username)
	}
	if got.QoS != want.QoS {
		errorf("QoS", got.QoS, want.QoS)
	}
	if got.Retain != want.Retain {
		errorf("Retain", got.Retain, want.Retain)
	}
	if !bytes.Equal(got.Payload, want.Payload) {
		errorf("Payload", fmt.Sprintf("%q", got.Payload), fmt.Sprintf("%q", want.Payload))
	}
	if got.ContentType != want.ContentType {
		errorf("ContentType", got.ContentType, want.ContentType)
	}
	switch {
	case len(want.JSON) == 0 && len(got.JSON) != 0:
		errorf("JSON", string(got.JSON), "none")
	case len(want.JSON) != 0 && !sameJSON(got.JSON, want.JSON):
		errorf("JSON", string(got.JSON), string(want.JSON))
	}
	if !sameValue(got.UserProperties, want.UserProperties) {
		errorf("UserProperties", got.UserProperties, want.UserProperties)
	}
	if !sameValue(got.Extra, want.Extra) {
		errorf("Extra", got.Extra, want.Extra)
	}
}

func sameJSON(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

// sameValue compares two maps as JSON values; nil and empty are the same.
func sameValue[M ~map[string]V, V any](a, b M) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && sameJSON(x, y)
}

func writeAndReadBack(t *testing.T, h Harness) {
	s := connect(t, h)
	b := batchOf(10)
	b[3].Username = ""
	b[4].Topic = "sinktest/ünïcødé/温度"
	b[5].ContentType = "application/json"
	write(t, s, b)
	expectOnce(t, h, b...)
	if got := h.Lookup(t, "sinktest-no-such-id"); len(got) != 0 {
		t.Fatalf("Lookup of an id never written found %d records", len(got))
	}
}

func sameBatchTwice(t *testing.T, h Harness) {
	s := connect(t, h)
	b := batchOf(20)
	write(t, s, b)
	write(t, s, b) // a replay after a lost acknowledgement
	expectOnce(t, h, b...)
}

func overlappingBatches(t *testing.T, h Harness) {
	s := connect(t, h)
	b := batchOf(30)
	write(t, s, b[:20])
	write(t, s, b[10:]) // half already stored
	write(t, s, []datastore.Record{b[29], b[0], b[29]})
	expectOnce(t, h, b...)
}

func payloads(t *testing.T, h Harness) {
	s := connect(t, h)
	cases := []struct {
		name    string
		payload []byte
		json    bool
	}{
		{"object", []byte(`{"a":{"b":[1,2,{"c":null}]},"s":"x\"y"}`), true},
		{"array", []byte(`[1,"two",3.5,true]`), true},
		{"number", []byte(`42`), true},
		{"string", []byte(`"on"`), true},
		{"text", []byte(`hello, world`), false},
		{"binary", []byte{0x00, 0xff, 0xfe, 0x01, 0x80, '{', 0x00}, false},
		{"invalid utf-8 json-like", []byte("{\"a\":\"\xff\"}"), false},
		{"empty", nil, false},
	}
	var b []datastore.Record
	for i, c := range cases {
		r := newRecord(i)
		r.Payload, r.JSON = c.payload, nil
		if c.json {
			r.JSON = c.payload
		}
		b = append(b, r)
	}
	write(t, s, b)
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) { expectOnce(t, h, b[i]) })
	}
}

func propertiesAndExtra(t *testing.T, h Harness) {
	s := connect(t, h)
	b := batchOf(3)
	b[0].UserProperties = map[string]string{"unit": "celsius", "": "empty key", "ключ": "значение"}
	b[1].Extra = map[string]any{
		"room": "kitchen", "floor": 2, "ratio": 0.25, "ok": true,
		"tags": []any{"a", "b"}, "nested": map[string]any{"x": 1, "y": []any{1, 2}},
	}
	b[2].UserProperties = map[string]string{"k": "v"}
	b[2].Extra = map[string]any{"source": "lua"}
	write(t, s, b)
	expectOnce(t, h, b...)
}

func emptyBatch(t *testing.T, h Harness) {
	s := connect(t, h)
	if err := s.Write(ctx(t), nil); err != nil {
		t.Fatalf("Write(nil) = %v, want nil", err)
	}
	if err := s.Write(ctx(t), []datastore.Record{}); err != nil {
		t.Fatalf("Write(empty) = %v, want nil", err)
	}
}

func closeAfterWrite(t *testing.T, h Harness) {
	s := connect(t, h)
	b := batchOf(5)
	write(t, s, b)
	if err := s.Close(ctx(t)); err != nil {
		t.Fatalf("Close after Write: %v", err)
	}
	expectOnce(t, h, b...)
}

func writeAfterReconnect(t *testing.T, h Harness) {
	s1 := connect(t, h)
	a := batchOf(5)
	write(t, s1, a)
	if err := s1.Close(ctx(t)); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// A new sink on the same store, as after a broker restart: setting the
	// store up again must succeed, and ids stored before still count.
	s2 := connect(t, h)
	b := batchOf(5)
	write(t, s2, b)
	write(t, s2, a)
	expectOnce(t, h, append(a, b...)...)
}

func cancelledContext(t *testing.T, h Harness) {
	s := connect(t, h)
	c, cancel := context.WithCancel(context.Background())
	cancel()
	b := batchOf(3)
	err := s.Write(c, b)
	if err == nil {
		// Storing anyway is allowed, but then the records must be there.
		expectOnce(t, h, b...)
		return
	}
	var pe *datastore.PartialError
	if datastore.IsPermanent(err) || errors.As(err, &pe) {
		t.Fatalf("Write with a cancelled context = %v, want a temporary error (the Runner retries)", err)
	}
	write(t, s, b) // and the retry stores them
	expectOnce(t, h, b...)
}

func largeBatch(t *testing.T, h Harness) {
	s := connect(t, h)
	b := batchOf(2000)
	write(t, s, b)
	for i := 0; i < len(b); i += 97 {
		expectOnce(t, h, b[i])
	}
	expectOnce(t, h, b[len(b)-1])
}
