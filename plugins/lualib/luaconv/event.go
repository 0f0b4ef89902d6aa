package luaconv

import (
	"fmt"
	"math"

	lua "github.com/yuin/gopher-lua"

	"github.com/tidemq/tide/core/event"
)

// UserProperties returns MQTT 5 user properties as a list of
// {key = ..., value = ...} tables: a list keeps their order and repeats.
func UserProperties(L *lua.LState, ups []event.UserProperty) *lua.LTable {
	t := L.CreateTable(len(ups), 0)
	for _, u := range ups {
		p := L.CreateTable(0, 2)
		p.RawSetString("key", lua.LString(u.Key))
		p.RawSetString("value", lua.LString(u.Value))
		t.Append(p)
	}
	return t
}

// HasProperties reports whether a message carries any MQTT 5 property.
func HasProperties(p *event.Properties) bool {
	return p.PayloadFormat != nil || p.MessageExpiry != nil || p.ContentType != "" ||
		p.ResponseTopic != "" || p.CorrelationData != nil || len(p.User) > 0
}

// Properties returns a message's properties as a table with the fields
// content_type, response_topic, correlation_data, payload_format,
// message_expiry and user, each absent when the message has none.
func Properties(L *lua.LState, p *event.Properties) *lua.LTable {
	t := L.CreateTable(0, 6)
	if p.ContentType != "" {
		t.RawSetString("content_type", lua.LString(p.ContentType))
	}
	if p.ResponseTopic != "" {
		t.RawSetString("response_topic", lua.LString(p.ResponseTopic))
	}
	if p.CorrelationData != nil {
		t.RawSetString("correlation_data", lua.LString(p.CorrelationData))
	}
	if p.PayloadFormat != nil {
		t.RawSetString("payload_format", lua.LNumber(*p.PayloadFormat))
	}
	if p.MessageExpiry != nil {
		t.RawSetString("message_expiry", lua.LNumber(*p.MessageExpiry))
	}
	if len(p.User) > 0 {
		t.RawSetString("user", UserProperties(L, p.User))
	}
	return t
}

// ParseProperties reads a properties table as Properties returns it. The
// user field may also be a map of names to values (sorted by name), or a list
// of {name, value} pairs.
func ParseProperties(t *lua.LTable) (event.Properties, error) {
	var p event.Properties
	var err error
	if p.ContentType, err = String(t, "content_type", ""); err != nil {
		return p, err
	}
	if p.ResponseTopic, err = String(t, "response_topic", ""); err != nil {
		return p, err
	}
	if cd, ok := t.RawGetString("correlation_data").(lua.LString); ok {
		p.CorrelationData = []byte(cd)
	} else if v := t.RawGetString("correlation_data"); v != lua.LNil {
		return p, fmt.Errorf("correlation_data must be a string, not a %s", v.Type())
	}
	if v := t.RawGetString("payload_format"); v != lua.LNil {
		n, ok := v.(lua.LNumber)
		if !ok || (n != 0 && n != 1) {
			return p, fmt.Errorf("payload_format must be 0 or 1, not %s", v.String())
		}
		b := byte(n)
		p.PayloadFormat = &b
	}
	if v := t.RawGetString("message_expiry"); v != lua.LNil {
		n, ok := v.(lua.LNumber)
		if !ok || n < 0 || n > math.MaxUint32 || float64(n) != math.Trunc(float64(n)) {
			return p, fmt.Errorf("message_expiry must be a whole number of seconds, not %s", v.String())
		}
		e := uint32(n)
		p.MessageExpiry = &e
	}
	switch u := t.RawGetString("user").(type) {
	case *lua.LNilType:
	case *lua.LTable:
		if p.User, err = ParseUserProperties(u); err != nil {
			return p, err
		}
	default:
		return p, fmt.Errorf("user must be a table, not a %s", u.Type())
	}
	return p, nil
}

// ParseUserProperties reads user properties: a list of {key = k, value = v}
// or {k, v} pairs, or a map from names to values.
func ParseUserProperties(t *lua.LTable) ([]event.UserProperty, error) {
	var out []event.UserProperty
	if n, ok := ArrayLen(t); ok {
		for i := 1; i <= n; i++ {
			pair, ok := t.RawGetInt(i).(*lua.LTable)
			if !ok {
				return nil, fmt.Errorf("user[%d] must be a {key = ..., value = ...} table", i)
			}
			k, v := pair.RawGetString("key"), pair.RawGetString("value")
			if k == lua.LNil {
				k, v = pair.RawGetInt(1), pair.RawGetInt(2)
			}
			ks, kok := k.(lua.LString)
			if !kok {
				return nil, fmt.Errorf("user[%d].key must be a string", i)
			}
			vs, vok := v.(lua.LString)
			if !vok {
				if num, isNum := v.(lua.LNumber); isNum {
					vs, vok = lua.LString(FormatNumber(float64(num))), true
				}
			}
			if !vok {
				return nil, fmt.Errorf("user[%d].value must be a string", i)
			}
			out = append(out, event.UserProperty{Key: string(ks), Value: string(vs)})
		}
		return out, nil
	}
	var err error
	t.ForEach(func(k, v lua.LValue) {
		if err != nil {
			return
		}
		ks, ok := k.(lua.LString)
		if !ok {
			err = fmt.Errorf("user property names must be strings, not %s", k.Type())
			return
		}
		var vs string
		switch x := v.(type) {
		case lua.LString:
			vs = string(x)
		case lua.LNumber:
			vs = FormatNumber(float64(x))
		case lua.LBool:
			vs = x.String()
		default:
			err = fmt.Errorf("user property %q must be a string, not a %s", string(ks), v.Type())
			return
		}
		out = append(out, event.UserProperty{Key: string(ks), Value: vs})
	})
	sortUser(out)
	return out, err
}

func sortUser(u []event.UserProperty) {
	for i := 1; i < len(u); i++ {
		for j := i; j > 0 && u[j].Key < u[j-1].Key; j-- {
			u[j], u[j-1] = u[j-1], u[j]
		}
	}
}

// Message returns a message table: topic, payload, qos, retain, time (when
// the broker received it, Unix seconds with fractions) and properties when
// it has any. Observers also get id, client_id and username when full is
// set. payload may be LNil, in which case m.Payload is converted; callers
// that pass the same payload to several scripts convert it once and pass it.
func Message(L *lua.LState, m *event.Message, payload lua.LValue, full bool) *lua.LTable {
	n := 5
	if full {
		n += 3
	}
	t := L.CreateTable(0, n+1)
	t.RawSetString("topic", lua.LString(m.Topic))
	if payload == lua.LNil {
		payload = lua.LString(m.Payload)
	}
	t.RawSetString("payload", payload)
	t.RawSetString("qos", lua.LNumber(m.QoS))
	t.RawSetString("retain", lua.LBool(m.Retain))
	if !m.Time.IsZero() {
		t.RawSetString("time", lua.LNumber(float64(m.Time.UnixNano())/1e9))
	}
	if HasProperties(&m.Props) {
		t.RawSetString("properties", Properties(L, &m.Props))
	}
	if full {
		if m.ID != "" {
			t.RawSetString("id", lua.LString(m.ID))
		}
		t.RawSetString("client_id", lua.LString(m.ClientID))
		t.RawSetString("username", lua.LString(m.Username))
	}
	return t
}
