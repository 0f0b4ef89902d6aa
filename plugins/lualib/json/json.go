// Package json is the Lua module "json": encode and decode JSON.
//
//	local json = require("json")
//	local s, err = json.encode({temp = 21.5, tags = {"a", "b"}})
//	local v, err = json.decode('{"temp": 21.5}')
//
// Tables whose keys are exactly 1..n encode as arrays, other tables as
// objects. An empty table encodes as an object ({}), except the tables
// decoded from [] and those marked with json.array(t), which encode as [].
// JSON null decodes to json.null (so that arrays keep their length and
// objects their keys) and json.null and nil encode as null. Errors are
// returned as nil plus a message, never raised.
package json

import (
	"bytes"
	stdjson "encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"unicode/utf8"

	lua "github.com/yuin/gopher-lua"

	"github.com/tidemq/tide/plugins/lualib/luaconv"
)

// Name is the module's name for require.
const Name = "json"

// The registry keys of the values shared by every use of the module in a
// state: the null sentinel and the metatable marking arrays.
const (
	nullKey  = "tide.json.null"
	arrayKey = "tide.json.array"
)

// Loader is the lua.LGFunction that require calls: it pushes the module.
func Loader(L *lua.LState) int {
	mod := L.NewTable()
	L.SetFuncs(mod, map[string]lua.LGFunction{
		"encode": encode,
		"decode": decode,
		"array":  markArray,
	})
	mod.RawSetString("null", null(L))
	L.Push(mod)
	return 1
}

// null returns the state's null sentinel: a userdata that prints as "null".
func null(L *lua.LState) lua.LValue {
	reg := L.Get(lua.RegistryIndex).(*lua.LTable)
	if v := reg.RawGetString(nullKey); v != lua.LNil {
		return v
	}
	ud := L.NewUserData()
	mt := L.NewTable()
	mt.RawSetString("__tostring", L.NewFunction(func(L *lua.LState) int {
		L.Push(lua.LString("null"))
		return 1
	}))
	mt.RawSetString("__metatable", lua.LString("json.null"))
	ud.Metatable = mt
	reg.RawSetString(nullKey, ud)
	return ud
}

// arrayMeta returns the metatable that marks a table as a JSON array.
func arrayMeta(L *lua.LState) *lua.LTable {
	reg := L.Get(lua.RegistryIndex).(*lua.LTable)
	if v, ok := reg.RawGetString(arrayKey).(*lua.LTable); ok {
		return v
	}
	mt := L.NewTable()
	mt.RawSetString("__jsontype", lua.LString("array"))
	reg.RawSetString(arrayKey, mt)
	return mt
}

func markArray(L *lua.LState) int {
	t := L.OptTable(1, nil)
	if t == nil {
		t = L.NewTable()
	}
	t.Metatable = arrayMeta(L)
	L.Push(t)
	return 1
}

func encode(L *lua.LState) int {
	e := encoder{null: null(L), array: arrayMeta(L)}
	if err := e.value(L.CheckAny(1), 0); err != nil {
		return luaconv.Fail(L, fmt.Errorf("json.encode: %w", err))
	}
	L.Push(lua.LString(e.buf.String()))
	return 1
}

// Encode returns the JSON encoding of a Lua value, as json.encode does,
// for Go code (other modules) that serialises script values.
func Encode(L *lua.LState, v lua.LValue) ([]byte, error) {
	e := encoder{null: null(L), array: arrayMeta(L)}
	if err := e.value(v, 0); err != nil {
		return nil, err
	}
	return e.buf.Bytes(), nil
}

type encoder struct {
	buf   bytes.Buffer
	null  lua.LValue
	array *lua.LTable
}

func (e *encoder) value(v lua.LValue, depth int) error {
	switch x := v.(type) {
	case *lua.LNilType:
		e.buf.WriteString("null")
	case lua.LBool:
		e.buf.WriteString(strconv.FormatBool(bool(x)))
	case lua.LNumber:
		f := float64(x)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("cannot encode %v", f)
		}
		if f == math.Trunc(f) && math.Abs(f) < 1<<53 {
			e.buf.WriteString(strconv.FormatInt(int64(f), 10))
		} else {
			e.buf.WriteString(strconv.FormatFloat(f, 'g', -1, 64))
		}
	case lua.LString:
		e.str(string(x))
	case *lua.LTable:
		if depth >= luaconv.MaxDepth {
			return luaconv.ErrDepth
		}
		return e.table(x, depth)
	case *lua.LUserData:
		if v == e.null {
			e.buf.WriteString("null")
			return nil
		}
		return errors.New("cannot encode a userdata")
	default:
		return fmt.Errorf("cannot encode a %s", v.Type())
	}
	return nil
}

func (e *encoder) table(t *lua.LTable, depth int) error {
	n, isArray := luaconv.ArrayLen(t)
	if !isArray && t.Metatable == e.array {
		n, isArray = 0, isEmpty(t)
	}
	if isArray {
		e.buf.WriteByte('[')
		for i := 1; i <= n; i++ {
			if i > 1 {
				e.buf.WriteByte(',')
			}
			if err := e.value(t.RawGetInt(i), depth+1); err != nil {
				return err
			}
		}
		e.buf.WriteByte(']')
		return nil
	}
	type kv struct {
		k string
		v lua.LValue
	}
	var fields []kv
	var err error
	t.ForEach(func(k, v lua.LValue) {
		if err != nil {
			return
		}
		var ks string
		ks, err = luaconv.KeyString(k)
		fields = append(fields, kv{ks, v})
	})
	if err != nil {
		return err
	}
	// Sorted keys make the output stable, which matters for signatures
	// and for tests.
	sort.Slice(fields, func(i, j int) bool { return fields[i].k < fields[j].k })
	e.buf.WriteByte('{')
	for i, f := range fields {
		if i > 0 {
			e.buf.WriteByte(',')
		}
		e.str(f.k)
		e.buf.WriteByte(':')
		if err := e.value(f.v, depth+1); err != nil {
			return err
		}
	}
	e.buf.WriteByte('}')
	return nil
}

func isEmpty(t *lua.LTable) bool {
	k, _ := t.Next(lua.LNil)
	return k == lua.LNil
}

const hexDigits = "0123456789abcdef"

// str writes s as a JSON string. Invalid UTF-8 is replaced with U+FFFD, as
// encoding/json does: JSON text must be valid Unicode.
func (e *encoder) str(s string) {
	e.buf.WriteByte('"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				e.buf.WriteByte('\\')
				e.buf.WriteByte(c)
			case c == '\n':
				e.buf.WriteString(`\n`)
			case c == '\r':
				e.buf.WriteString(`\r`)
			case c == '\t':
				e.buf.WriteString(`\t`)
			case c < 0x20:
				e.buf.WriteString(`\u00`)
				e.buf.WriteByte(hexDigits[c>>4])
				e.buf.WriteByte(hexDigits[c&0xf])
			default:
				e.buf.WriteByte(c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			e.buf.WriteString(`\ufffd`)
		} else {
			e.buf.WriteString(s[i : i+size])
		}
		i += size
	}
	e.buf.WriteByte('"')
}

func decode(L *lua.LState) int {
	s := L.CheckString(1)
	v, err := Decode(L, []byte(s))
	if err != nil {
		return luaconv.Fail(L, fmt.Errorf("json.decode: %w", err))
	}
	L.Push(v)
	return 1
}

// Decode parses JSON text into a Lua value, as json.decode does.
func Decode(L *lua.LState, data []byte) (lua.LValue, error) {
	dec := stdjson.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("invalid character after top-level value")
	}
	d := decoder{L: L, null: null(L), array: arrayMeta(L)}
	return d.value(v, 0)
}

type decoder struct {
	L     *lua.LState
	null  lua.LValue
	array *lua.LTable
}

func (d *decoder) value(v any, depth int) (lua.LValue, error) {
	if depth >= luaconv.MaxDepth {
		return nil, luaconv.ErrDepth
	}
	switch x := v.(type) {
	case nil:
		return d.null, nil
	case bool:
		return lua.LBool(x), nil
	case stdjson.Number:
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil {
			return nil, fmt.Errorf("number %s: %w", x, err)
		}
		return lua.LNumber(f), nil
	case string:
		return lua.LString(x), nil
	case []any:
		t := d.L.CreateTable(len(x), 0)
		for i, e := range x {
			lv, err := d.value(e, depth+1)
			if err != nil {
				return nil, err
			}
			t.RawSetInt(i+1, lv)
		}
		t.Metatable = d.array
		return t, nil
	case map[string]any:
		t := d.L.CreateTable(0, len(x))
		for k, e := range x {
			lv, err := d.value(e, depth+1)
			if err != nil {
				return nil, err
			}
			t.RawSetString(k, lv)
		}
		return t, nil
	}
	return nil, fmt.Errorf("unexpected %T", v)
}
