package json

import (
	"testing"

	lua "github.com/yuin/gopher-lua"
)

// run executes src with the module loaded as the global json and returns
// the values it returns.
func run(t *testing.T, src string) []lua.LValue {
	t.Helper()
	L := lua.NewState()
	defer L.Close()
	L.PreloadModule(Name, Loader)
	if err := L.DoString(`json = require("json")`); err != nil {
		t.Fatal(err)
	}
	top := L.GetTop()
	if err := L.DoString(src); err != nil {
		t.Fatalf("%s: %v", src, err)
	}
	var out []lua.LValue
	for i := top + 1; i <= L.GetTop(); i++ {
		out = append(out, L.Get(i))
	}
	return out
}

func TestEncode(t *testing.T) {
	cases := []struct{ src, want string }{
		{`return json.encode({a = 1, b = "x", c = true})`, `{"a":1,"b":"x","c":true}`},
		{`return json.encode({1, 2, 3})`, `[1,2,3]`},
		{`return json.encode({})`, `{}`},
		{`return json.encode(json.array())`, `[]`},
		{`return json.encode(json.array({}))`, `[]`},
		{`return json.encode({list = json.decode("[]")})`, `{"list":[]}`},
		{`return json.encode(nil)`, `null`},
		{`return json.encode(json.null)`, `null`},
		{`return json.encode({1, json.null, 3})`, `[1,null,3]`},
		{`return json.encode(1.5)`, `1.5`},
		{`return json.encode(1e300)`, `1e+300`},
		{`return json.encode(-0.25)`, `-0.25`},
		{`return json.encode("a\"b\\c\n\1\t")`, `"a\"b\\c\n\u0001\t"`},
		{`return json.encode("caf\195\169")`, `"café"`},
		{`return json.encode("\255")`, `"\ufffd"`},
		{`return json.encode({[1] = "a", [3] = "c"})`, `{"1":"a","3":"c"}`},
		{`return json.encode({1, 2, x = 3})`, `{"1":1,"2":2,"x":3}`},
		{`return json.encode({nested = {deep = {1, {k = "v"}}}})`, `{"nested":{"deep":[1,{"k":"v"}]}}`},
	}
	for _, tc := range cases {
		got := run(t, tc.src)
		if len(got) != 1 || got[0].String() != tc.want {
			t.Errorf("%s = %v, want %s", tc.src, got, tc.want)
		}
	}
}

func TestEncodeErrors(t *testing.T) {
	cases := []struct{ src, want string }{
		{`return json.encode({f = print})`, "json.encode: cannot encode a function"},
		{`return json.encode(0/0)`, "json.encode: cannot encode NaN"},
		{`return json.encode(1/0)`, "json.encode: cannot encode +Inf"},
		{`local t = {} t.self = t return json.encode(t)`, "json.encode: nested too deeply (or contains itself)"},
		{`return json.encode({[{}] = 1})`, "json.encode: cannot use a table as an object key"},
	}
	for _, tc := range cases {
		got := run(t, tc.src)
		if len(got) != 2 || got[0] != lua.LNil || got[1].String() != tc.want {
			t.Errorf("%s = %v, want nil, %q", tc.src, got, tc.want)
		}
	}
}

func TestDecode(t *testing.T) {
	cases := []struct{ src, want string }{
		{`local v = json.decode('{"a": 1.5, "b": [1, "x", true]}') return v.a, v.b[2], v.b[3], #v.b`, "1.5 x true 3"},
		{`local v = json.decode('[1, null, 3]') return #v, v[2] == json.null, tostring(v[2])`, "3 true null"},
		{`local v = json.decode('{"k": null}') return v.k == json.null`, "true"},
		{`return json.decode('"s"'), json.decode('12'), json.decode('true')`, "s 12 true"},
		{`return json.decode('null') == json.null`, "true"},
		{`return json.encode(json.decode('{"a":[],"b":{},"c":[{"d":null}]}'))`, `{"a":[],"b":{},"c":[{"d":null}]}`},
		{`return json.decode('9007199254740993')`, "9007199254740992"},
	}
	for _, tc := range cases {
		got := run(t, tc.src)
		s := ""
		for i, v := range got {
			if i > 0 {
				s += " "
			}
			s += v.String()
		}
		if s != tc.want {
			t.Errorf("%s = %s, want %s", tc.src, s, tc.want)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, src := range []string{`{"a":`, `[1, 2`, `{"a": 1} x`, ``, `nul`} {
		L := lua.NewState()
		L.PreloadModule(Name, Loader)
		if err := L.DoString(`json = require("json")`); err != nil {
			t.Fatal(err)
		}
		if err := L.CallByParam(lua.P{Fn: L.GetField(L.GetGlobal("json"), "decode"), NRet: 2, Protect: true}, lua.LString(src)); err != nil {
			t.Fatalf("decode(%q) raised %v, want nil and a message", src, err)
		}
		v, msg := L.Get(-2), L.Get(-1)
		if v != lua.LNil || msg.Type() != lua.LTString || msg.String() == "" {
			t.Errorf("decode(%q) = %v, %v; want nil and a message", src, v, msg)
		}
		L.Close()
	}
	deep := ""
	for range 200 {
		deep += "["
	}
	L := lua.NewState()
	defer L.Close()
	if _, err := Decode(L, []byte(deep)); err == nil {
		t.Error("decoding 200 unclosed arrays succeeded")
	}
}
