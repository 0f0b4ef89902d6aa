package plugins

import (
	"sort"
	"strings"
	"testing"

	lua "github.com/yuin/gopher-lua"
)

func TestParamEscapes(t *testing.T) {
	cases := []struct {
		src     string
		escapes bool
	}{
		{`function f(c, msg) return true end`, false},
		{`function f(c, msg) return msg.topic == "a" end`, false},
		{`function f(c, msg) local t = msg.topic if t:sub(1, 2) == "ab" then return false, "x" end end`, false},
		{`function f(c, msg) if #msg.payload > 10 and msg.qos == 1 then return "drop" end end`, false},
		{`function f(c, msg) if msg then return msg.retain end end`, false},
		{`function f(c, msg) local own = "d/" .. c.id .. "/" return msg.topic:sub(1, #own) == own end`, false},
		{`function f(c, msg) return {topic = "x/" .. msg.topic, payload = msg.payload} end`, false},
		{`function f(c, msg) local p = msg.properties return p and p.content_type end`, false},
		{`function f(c, msg) for i = 1, 3 do local x = msg.qos + i end end`, false},

		{`function f(c, msg) return msg end`, true},
		{`function f(c, msg) last = msg end`, true},
		{`local keep function f(c, msg) keep = msg end`, true},
		{`function f(c, msg) local t = {} t[1] = msg end`, true},
		{`function f(c, msg) local t = {msg} end`, true},
		{`function f(c, msg) local t = {m = msg} end`, true},
		{`function f(c, msg) print(msg) end`, true},
		{`function f(c, msg) return tostring(msg) end`, true},
		{`function f(c, msg) for k, v in pairs(msg) do end end`, true},
		{`function f(c, msg) setmetatable(msg, {}) end`, true},
		{`function f(c, msg) msg.topic = "x" end`, true},
		{`function f(c, msg) rawset(msg, "topic", "x") end`, true},
		{`function f(c, msg) local m = msg return m.topic end`, true},
		{`function f(c, msg) return function() return msg.topic end end`, true},
		{`function f(c, msg) local g = function() return msg end end`, true},
		{`function f(c, msg) msg:topic() end`, true},
		{`function f(c, msg) local x = c[msg] end`, true},
		{`function f(c, msg) return msg == c end`, true},
		{`function f(c, msg) return msg or c end`, true},
		{`function f(c, msg) error(msg) end`, true},
		{`function f(...) local c, msg = ... end`, true},
		{`function f(c) end`, true},
	}
	for _, tc := range cases {
		L := lua.NewState()
		if err := L.DoString(tc.src); err != nil {
			t.Fatalf("%s: %v", tc.src, err)
		}
		fn := L.GetGlobal("f").(*lua.LFunction)
		if got := analyzeParam(fn, 1).escapes; got != tc.escapes {
			t.Errorf("%s: escapes = %v, want %v", tc.src, got, tc.escapes)
		}
		L.Close()
	}
}

func TestParamFields(t *testing.T) {
	cases := []struct{ src, fields string }{
		{`function f(c, msg) return true end`, ""},
		{`function f(c, msg) return msg.topic == "a" end`, "topic"},
		{`function f(c, msg) if #msg.payload > 1 then return msg.qos, msg.retain end end`, "payload qos retain"},
		{`function f(c, msg) local k = "topic" return msg[k] end`, "all"},
		{`function f(c, msg) return msg[1] end`, ""},
		{`function f(c, msg) return msg.client_id end`, ""},
	}
	for _, tc := range cases {
		L := lua.NewState()
		if err := L.DoString(tc.src); err != nil {
			t.Fatal(err)
		}
		u := analyzeParam(L.GetGlobal("f").(*lua.LFunction), 1)
		got := "all"
		if u.fields != allFields {
			var keys []string
			for k, f := range msgFields {
				if u.fields&f != 0 {
					keys = append(keys, k)
				}
			}
			sort.Strings(keys)
			got = strings.Join(keys, " ")
		}
		if u.escapes || got != tc.fields {
			t.Errorf("%s: escapes %v, fields %q; want no escape and %q", tc.src, u.escapes, got, tc.fields)
		}
		L.Close()
	}
}
