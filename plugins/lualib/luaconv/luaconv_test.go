package luaconv

import (
	"fmt"
	"strings"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/tidemq/tide/core/event"
)

func eval(t *testing.T, L *lua.LState, src string) lua.LValue {
	t.Helper()
	if err := L.DoString("return " + src); err != nil {
		t.Fatal(err)
	}
	v := L.Get(-1)
	L.Pop(1)
	return v
}

func TestToGo(t *testing.T) {
	L := lua.NewState()
	defer L.Close()
	cases := []struct {
		src  string
		ints bool
		want string
	}{
		{`{1, 2, 3}`, true, "[1 2 3]"},
		{`{a = 1.5, b = {true, "x"}}`, false, "map[a:1.5 b:[true x]]"},
		{`{}`, true, "map[]"},
		{`{[1] = "a", [3] = "c"}`, true, "map[1:a 3:c]"},
		{`3`, true, "3"},
		{`3`, false, "3"},
		{`nil`, true, "<nil>"},
	}
	for _, tc := range cases {
		got, err := ToGo(eval(t, L, tc.src), tc.ints)
		if err != nil || fmt.Sprint(got) != tc.want {
			t.Errorf("ToGo(%s) = %v, %v; want %s", tc.src, got, err, tc.want)
		}
	}
	if v, _ := ToGo(lua.LNumber(3), true); fmt.Sprintf("%T", v) != "int64" {
		t.Errorf("ToGo(3, ints) is a %T, want int64", v)
	}
	self := L.NewTable()
	self.RawSetString("self", self)
	if _, err := ToGo(self, true); err != ErrDepth {
		t.Errorf("a cyclic table: %v, want ErrDepth", err)
	}
	if _, err := ToGo(eval(t, L, `{f = print}`), true); err == nil {
		t.Error("a function converted")
	}
}

func TestToLua(t *testing.T) {
	L := lua.NewState()
	defer L.Close()
	v := ToLua(L, map[string]any{"n": int64(3), "f": float32(1.5), "s": []any{"a", nil, true}, "b": []byte("raw"),
		"t": time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC), "m": map[string]string{"k": "v"}, "d": 2 * time.Second})
	L.SetGlobal("v", v)
	got := eval(t, L, `table.concat({v.n, v.f, v.s[1], tostring(v.s[2]), tostring(v.s[3]), #v.s, v.b, v.t, v.m.k, v.d}, ",")`)
	if want := "3,1.5,a,false,true,3,raw,2024-05-01T10:00:00Z,v,2"; got.String() != want {
		t.Errorf("ToLua = %s, want %s", got, want)
	}
}

func TestProperties(t *testing.T) {
	L := lua.NewState()
	defer L.Close()
	pf, exp := byte(1), uint32(30)
	p := event.Properties{PayloadFormat: &pf, MessageExpiry: &exp, ContentType: "ct", ResponseTopic: "rt", CorrelationData: []byte("cd"),
		User: []event.UserProperty{{Key: "a", Value: "1"}, {Key: "a", Value: "2"}}}
	back, err := ParseProperties(Properties(L, &p))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(back.User) != fmt.Sprint(p.User) || *back.PayloadFormat != 1 || *back.MessageExpiry != 30 || back.ContentType != "ct" ||
		back.ResponseTopic != "rt" || string(back.CorrelationData) != "cd" {
		t.Errorf("round trip = %+v, want %+v", back, p)
	}
	for src, want := range map[string]string{
		`{payload_format = 2}`:      "payload_format must be 0 or 1, not 2",
		`{message_expiry = -1}`:     "message_expiry must be a whole number of seconds, not -1",
		`{user = {{key = 1}}}`:      "user[1].key must be a string",
		`{user = "x"}`:              "user must be a table, not a string",
		`{content_type = 1}`:        "content_type must be a string, not a number",
		`{correlation_data = true}`: "correlation_data must be a string, not a boolean",
	} {
		if _, err := ParseProperties(eval(t, L, src).(*lua.LTable)); err == nil || err.Error() != want {
			t.Errorf("ParseProperties(%s) = %v, want %q", src, err, want)
		}
	}
}

// QueryArgs takes the arguments from the given position on: integral
// numbers become int64 (SQL integers), others float64, and anything that
// is not a scalar is an argument error naming its position.
func TestQueryArgs(t *testing.T) {
	L := lua.NewState()
	defer L.Close()
	var got []any
	L.SetGlobal("q", L.NewFunction(func(L *lua.LState) int {
		got = QueryArgs(L, 2)
		return 0
	}))
	if err := L.DoString(`q("SELECT", nil, true, 3, 2.5, "x", 2^60)`); err != nil {
		t.Fatal(err)
	}
	want := []any{nil, true, int64(3), 2.5, "x", float64(1 << 60)}
	if fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", want) {
		t.Errorf("QueryArgs = %#v, want %#v", got, want)
	}
	if err := L.DoString(`q("SELECT")`); err != nil || got == nil || len(got) != 0 {
		t.Errorf("no parameters: %#v, %v; want an empty list", got, err)
	}
	err := L.DoString(`q("SELECT", 1, {})`)
	if err == nil || !strings.Contains(err.Error(), "#3") || !strings.Contains(err.Error(), "not a table") {
		t.Errorf("a table parameter: %v, want an argument error at #3", err)
	}
}
