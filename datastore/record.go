package datastore

import (
	"encoding/json"
	"fmt"
	"math"
	"time"
)

// RecordFromMap builds a Record from the fields of a Lua table (sink.write):
// id, time, topic, client_id, username, qos, retain, payload, content_type,
// user_properties and extra; any other key goes into Extra. time is a
// time.Time, an RFC 3339 string or Unix seconds (a number, as os.time()
// gives); payload is a string or bytes, and sets JSON when it parses.
// Missing id and time are filled in by Router.Write.
func RecordFromMap(m map[string]any) (Record, error) {
	var rec Record
	for k, v := range m {
		var err error
		switch k {
		case "id":
			rec.ID, err = str(v)
		case "topic":
			rec.Topic, err = str(v)
		case "client_id":
			rec.ClientID, err = str(v)
		case "username":
			rec.Username, err = str(v)
		case "content_type":
			rec.ContentType, err = str(v)
		case "payload":
			switch p := v.(type) {
			case string:
				rec.Payload = []byte(p)
			case []byte:
				rec.Payload = p
			default:
				err = fmt.Errorf("want a string, got %T", v)
			}
		case "qos":
			var q float64
			q, err = num(v)
			if err == nil && (q != math.Trunc(q) || q < 0 || q > 2) {
				err = fmt.Errorf("want 0, 1 or 2, got %v", v)
			}
			rec.QoS = byte(q)
		case "retain":
			b, ok := v.(bool)
			if !ok {
				err = fmt.Errorf("want a boolean, got %T", v)
			}
			rec.Retain = b
		case "time":
			rec.Time, err = timeValue(v)
		case "user_properties":
			rec.UserProperties, err = strMap(v)
		case "extra":
			e, ok := v.(map[string]any)
			if !ok {
				err = fmt.Errorf("want a table, got %T", v)
			}
			if rec.Extra == nil {
				rec.Extra = map[string]any{}
			}
			for ek, ev := range e {
				rec.Extra[ek] = ev
			}
		default:
			if rec.Extra == nil {
				rec.Extra = map[string]any{}
			}
			if _, set := rec.Extra[k]; !set { // extra.k wins over a top-level k
				rec.Extra[k] = v
			}
		}
		if err != nil {
			return Record{}, fmt.Errorf("field %s: %w", k, err)
		}
	}
	if rec.Extra != nil {
		if _, err := json.Marshal(rec.Extra); err != nil {
			return Record{}, fmt.Errorf("extra fields: %w", err)
		}
	}
	if isJSON(rec.Payload) {
		rec.JSON = rec.Payload
	}
	return rec, nil
}

func str(v any) (string, error) {
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("want a string, got %T", v)
	}
	return s, nil
}

func num(v any) (float64, error) {
	switch n := v.(type) {
	case float64:
		return n, nil
	case int:
		return float64(n), nil
	case int64:
		return float64(n), nil
	case json.Number:
		return n.Float64()
	}
	return 0, fmt.Errorf("want a number, got %T", v)
}

func timeValue(v any) (time.Time, error) {
	switch t := v.(type) {
	case time.Time:
		return t, nil
	case string:
		return time.Parse(time.RFC3339Nano, t)
	}
	f, err := num(v)
	if err != nil {
		return time.Time{}, fmt.Errorf("want Unix seconds or an RFC 3339 string, got %T", v)
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), nil
}

func strMap(v any) (map[string]string, error) {
	switch m := v.(type) {
	case map[string]string:
		return m, nil
	case map[string]any:
		out := make(map[string]string, len(m))
		for k, x := range m {
			s, ok := x.(string)
			if !ok {
				return nil, fmt.Errorf("value of %q: want a string, got %T", k, x)
			}
			out[k] = s
		}
		return out, nil
	}
	return nil, fmt.Errorf("want a table of strings, got %T", v)
}
