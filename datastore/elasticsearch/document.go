package elasticsearch

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/tidemq/tide/datastore"
)

// Template returns the body of the index template the sink installs.
//
// Mappings: time is a date; topic, client_id, username and content_type are
// keywords (exact match, terms aggregations); qos a byte; retain a boolean.
// payload is binary: the raw payload, base64 in _source, neither indexed
// nor searchable, so that any payload is kept as it was, whatever else
// happens to its JSON view. payload_json is that view: the payload when it
// is JSON, an object with dynamic mapping, searchable and aggregatable by
// its fields (payload_json.temp). An object field cannot hold a scalar or an
// array of scalars, so a JSON payload that is not an object (21.5, "on",
// [1,2]) is stored as {"value": <payload>}. user_properties is flattened:
// any keys, one field in the mapping, so that publishers cannot explode the
// mapping with arbitrary property names. extra (fields added by Lua
// scripts) is an object with dynamic mapping.
//
// Devices disagree about types, and with Elasticsearch's default dynamic
// mapping the first message of the day decides a field's type for the
// whole daily index: a reading of 21 makes temp a long that truncates 21.5,
// and a later "n/a" makes the document fail. So the dynamic templates map
// every JSON number to a double that ignores malformed values (a string
// where a number was seen is kept in _source, not indexed), strings and
// booleans to keywords (which take numbers too), and date detection is off
// (a string that looks like a date would make the field a date, and the
// next string that does not would fail). What still fails is a field that
// is an object in one message and a value in another: that document is
// rejected (a Permanent item, dead-lettered by the Runner).
func (s *Sink) Template() []byte {
	dyn := func(name, jsonType string, mapping map[string]any) map[string]any {
		return map[string]any{name: map[string]any{"match_mapping_type": jsonType, "mapping": mapping}}
	}
	number := map[string]any{"type": "double", "ignore_malformed": true}
	t := map[string]any{
		"index_patterns": []string{s.ix.pattern},
		"priority":       templatePriority,
		"template": map[string]any{
			"mappings": map[string]any{
				"date_detection": false,
				"dynamic_templates": []any{
					dyn("integers", "long", number),
					dyn("decimals", "double", number),
					dyn("booleans", "boolean", map[string]any{"type": "keyword"}),
					dyn("strings", "string", map[string]any{"type": "keyword", "ignore_above": 1024}),
				},
				"properties": map[string]any{
					"time":                 map[string]any{"type": "date"},
					"topic":                map[string]any{"type": "keyword"},
					"client_id":            map[string]any{"type": "keyword"},
					"username":             map[string]any{"type": "keyword"},
					"qos":                  map[string]any{"type": "byte"},
					"retain":               map[string]any{"type": "boolean"},
					"payload":              map[string]any{"type": "binary"},
					"payload_json":         map[string]any{"type": "object", "dynamic": true},
					"payload_json_skipped": map[string]any{"type": "keyword"},
					"content_type":         map[string]any{"type": "keyword"},
					"user_properties":      map[string]any{"type": "flattened"},
					"extra":                map[string]any{"type": "object", "dynamic": true},
				},
			},
		},
		"_meta": map[string]any{"managed_by": "tide", "description": "MQTT messages stored by Tide's elasticsearch sink"},
	}
	b, _ := json.Marshal(t) // maps marshal with sorted keys: the body is stable
	return b
}

// doc is the document of one record; the field order is the mapping's.
type doc struct {
	Time        string          `json:"time"`
	Topic       string          `json:"topic"`
	ClientID    string          `json:"client_id"`
	Username    string          `json:"username,omitempty"`
	QoS         byte            `json:"qos"`
	Retain      bool            `json:"retain"`
	Payload     []byte          `json:"payload"`
	PayloadJSON json.RawMessage `json:"payload_json,omitempty"`
	// PayloadJSONSkipped says why a JSON payload has no payload_json: its
	// shape is one no Elasticsearch mapping can index (see indexable).
	PayloadJSONSkipped string            `json:"payload_json_skipped,omitempty"`
	ContentType        string            `json:"content_type,omitempty"`
	UserProperties     map[string]string `json:"user_properties,omitempty"`
	Extra              map[string]any    `json:"extra,omitempty"`
}

// TimeLayout is how record times are written: RFC 3339 in UTC with
// milliseconds, the resolution of an Elasticsearch date.
const TimeLayout = "2006-01-02T15:04:05.000Z07:00"

// maxIDLen is Elasticsearch's limit on document ids.
const maxIDLen = 512

// appendItem appends the action and source lines of r to buf. It fails,
// leaving buf as it was, when r cannot be encoded (NaN in Extra) or its id
// is one Elasticsearch would refuse: checked here because Elasticsearch
// refuses a bad id by failing the whole request, which would dead-letter
// the good records with it.
func (s *Sink) appendItem(buf *bytes.Buffer, r *datastore.Record) error {
	switch {
	case r.ID == "":
		// Elasticsearch would make one up, and a replay would store the
		// record twice.
		return errors.New("record has no id")
	case len(r.ID) > maxIDLen:
		return fmt.Errorf("id is %d bytes long, Elasticsearch's limit is %d", len(r.ID), maxIDLen)
	}
	d := doc{
		Time: r.Time.UTC().Format(TimeLayout), Topic: r.Topic, ClientID: r.ClientID, Username: r.Username,
		QoS: r.QoS, Retain: r.Retain, Payload: r.Payload, ContentType: r.ContentType,
		UserProperties: r.UserProperties, Extra: r.Extra,
	}
	if d.Payload == nil {
		d.Payload = []byte{} // "" rather than null: an empty payload is a payload
	}
	if len(bytes.TrimSpace(r.JSON)) > 0 {
		d.PayloadJSON, d.PayloadJSONSkipped = jsonView(r.JSON)
	}
	mark := buf.Len()
	buf.WriteString(`{"create":{"_index":`)
	writeJSONString(buf, s.ix.name(r.Time))
	buf.WriteString(`,"_id":`)
	writeJSONString(buf, r.ID)
	buf.WriteString("}}\n")
	enc := json.NewEncoder(buf) // Encode ends the line with the '\n' NDJSON needs
	enc.SetEscapeHTML(false)
	if err := enc.Encode(d); err != nil {
		buf.Truncate(mark)
		return err
	}
	return nil
}

func writeJSONString(buf *bytes.Buffer, s string) {
	b, _ := json.Marshal(s) // a string always marshals
	buf.Write(b)
}

// jsonView returns the payload_json of a JSON payload, or why there is
// none. The raw payload is always stored besides, so a payload that cannot
// be indexed is still kept whole.
func jsonView(js []byte) (view json.RawMessage, skipped string) {
	var v any
	if err := json.Unmarshal(js, &v); err != nil {
		return nil, "not valid JSON: " + err.Error()
	}
	js = bytes.TrimSpace(js)
	if _, ok := v.(map[string]any); !ok {
		v = map[string]any{"value": v}
		js = append(append([]byte(`{"value":`), js...), '}')
	}
	if err := indexable(v); err != nil {
		return nil, err.Error()
	}
	return js, ""
}

// maxDepth keeps payload_json within index.mapping.depth.limit (20 objects
// deep, counting the document's root and payload_json itself).
const maxDepth = 18

// indexable reports why Elasticsearch would refuse a JSON value as
// payload_json under any mapping: a path that is both an object and a
// value in the same document (an array mixing objects and values, or
// {"a": 1, "a.b": 2}, dotted keys being paths), a field name Elasticsearch
// refuses, or nesting beyond its depth limit. Conflicts with other
// documents cannot be known here; Elasticsearch reports them per item.
func indexable(v any) error {
	kinds := map[string]byte{} // path -> 'o' object or 'v' value
	var walk func(v any, path string, depth int) error
	walk = func(v any, path string, depth int) error {
		switch x := v.(type) {
		case nil:
			return nil
		case []any:
			for _, e := range x {
				if err := walk(e, path, depth); err != nil {
					return err
				}
			}
			return nil
		case map[string]any:
			if err := mark(kinds, path, 'o'); err != nil {
				return err
			}
			if depth > maxDepth {
				return fmt.Errorf("nested deeper than %d objects at %q", maxDepth, path)
			}
			for k, e := range x {
				if err := checkField(k); err != nil {
					return err
				}
				p := path
				parts := strings.Split(k, ".")
				for i, part := range parts {
					p = joinPath(p, part)
					if i < len(parts)-1 {
						if err := mark(kinds, p, 'o'); err != nil {
							return err
						}
					}
				}
				if err := walk(e, p, depth+len(parts)); err != nil {
					return err
				}
			}
			return nil
		}
		return mark(kinds, path, 'v')
	}
	return walk(v, "", 1)
}

func mark(kinds map[string]byte, path string, k byte) error {
	if path == "" {
		return nil
	}
	if old, ok := kinds[path]; ok && old != k {
		return fmt.Errorf("%q is both an object and a value", path)
	}
	kinds[path] = k
	return nil
}

func joinPath(p, k string) string {
	if p == "" {
		return k
	}
	return p + "." + k
}

// checkField applies Elasticsearch's rules for field names in documents.
func checkField(k string) error {
	switch {
	case strings.TrimSpace(k) == "":
		return fmt.Errorf("field name %q is empty or blank", k)
	case strings.HasPrefix(k, ".") || strings.HasSuffix(k, ".") || strings.Contains(k, ".."):
		return fmt.Errorf("field name %q has an empty part between dots", k)
	}
	return nil
}
