package postgres

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tidemq/tide/datastore"
	"github.com/tidemq/tide/datastore/sinktest"
)

func TestConformance(t *testing.T) {
	sinktest.Run(t, func(t *testing.T) sinktest.Harness {
		dsn, _ := testSchema(t)
		return sinktest.Harness{
			Open: func(t *testing.T) datastore.Sink {
				opts := DefaultOptions()
				opts.DSN = dsn
				s, err := New("conformance", opts, testLogger(t))
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				return s
			},
			Lookup: func(t *testing.T, id string) []datastore.Record { return lookup(t, dsn, id) },
		}
	})
}

// lookup reads the rows of id back into records, on a connection of its own.
func lookup(t *testing.T, dsn, id string) []datastore.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("lookup: %v", err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT id, time, topic, client_id, coalesce(username, ''), qos, retain, payload,
		payload_json::text, coalesce(content_type, ''), user_properties::text, extra::text FROM mqtt_messages WHERE id = $1`, id)
	if err != nil {
		t.Fatalf("lookup: %v", err)
	}
	var out []datastore.Record
	for rows.Next() {
		var r datastore.Record
		var qos int16
		var js, uprops, extra *string
		if err := rows.Scan(&r.ID, &r.Time, &r.Topic, &r.ClientID, &r.Username, &qos, &r.Retain, &r.Payload,
			&js, &r.ContentType, &uprops, &extra); err != nil {
			t.Fatalf("lookup: %v", err)
		}
		r.QoS = byte(qos)
		if js != nil {
			r.JSON = []byte(*js)
		}
		if uprops != nil {
			if err := json.Unmarshal([]byte(*uprops), &r.UserProperties); err != nil {
				t.Fatalf("lookup: user_properties: %v", err)
			}
		}
		if extra != nil {
			if err := json.Unmarshal([]byte(*extra), &r.Extra); err != nil {
				t.Fatalf("lookup: extra: %v", err)
			}
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("lookup: %v", err)
	}
	return out
}
