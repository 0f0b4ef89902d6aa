package elasticsearch

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/tidemq/tide/datastore"
	"github.com/tidemq/tide/datastore/elasticsearch/estest"
	"github.com/tidemq/tide/datastore/sinktest"
)

func TestConformance(t *testing.T) {
	sinktest.Run(t, func(t *testing.T) sinktest.Harness {
		srv := estest.New(t)
		return sinktest.Harness{
			Open: func(t *testing.T) datastore.Sink {
				opts := DefaultOptions()
				opts.Addresses = []string{srv.URL}
				s, err := New("conformance", opts, testLogger(t))
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				return s
			},
			Lookup: func(t *testing.T, id string) []datastore.Record { return lookup(t, srv, id) },
		}
	})
}

// lookup reads the documents of id back into records from every index,
// with estest's real-time view (as GET <index>/_doc/<id> has).
func lookup(t *testing.T, srv *estest.Server, id string) []datastore.Record {
	t.Helper()
	var out []datastore.Record
	for _, ix := range srv.Indices() {
		src, ok := srv.Docs(ix)[id]
		if !ok {
			continue
		}
		var d struct {
			doc
			Time time.Time `json:"time"`
		}
		if err := json.Unmarshal(src, &d); err != nil {
			t.Fatalf("lookup %s/%s: %v: %s", ix, id, err, src)
		}
		r := datastore.Record{
			ID: id, Time: d.Time, Topic: d.Topic, ClientID: d.ClientID, Username: d.Username, QoS: d.QoS,
			Retain: d.Retain, Payload: d.Payload, ContentType: d.ContentType, UserProperties: d.UserProperties, Extra: d.Extra,
		}
		if len(r.Payload) == 0 {
			r.Payload = nil
		}
		switch {
		case d.PayloadJSONSkipped != "":
			// Stored without its JSON view, which the payload itself is.
			r.JSON = r.Payload
		case len(d.PayloadJSON) > 0:
			r.JSON = d.PayloadJSON
			// A JSON payload that is not an object is stored as {"value": ...}.
			if p := bytes.TrimSpace(r.Payload); len(p) > 0 && p[0] != '{' {
				var wrapped struct {
					Value json.RawMessage `json:"value"`
				}
				if err := json.Unmarshal(d.PayloadJSON, &wrapped); err != nil {
					t.Fatalf("lookup %s/%s: payload_json: %v", ix, id, err)
				}
				r.JSON = wrapped.Value
			}
		}
		out = append(out, r)
	}
	return out
}
