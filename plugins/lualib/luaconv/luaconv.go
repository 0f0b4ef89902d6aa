// Package luaconv converts values between Go and gopher-lua for the Lua
// modules of Tide's plugin runtime. It is shared by the modules so that a
// table means the same thing everywhere: an array when its keys are exactly
// 1..n, an object otherwise.
package luaconv

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"time"

	lua "github.com/yuin/gopher-lua"
)

// MaxDepth bounds the nesting of tables converted in either direction, so
// that a table that contains itself is an error instead of a stack overflow.
const MaxDepth = 100

// ErrDepth is returned for values nested deeper than MaxDepth (or cyclic).
var ErrDepth = errors.New("nested too deeply (or contains itself)")

// ToGo converts a Lua value to plain Go: nil, bool, float64 (or int64 for
// integral numbers when ints is set), string, []any for arrays and
// map[string]any for other tables. Functions, userdata and threads are
// refused, so that what is converted can be stored, encoded or sent.
func ToGo(v lua.LValue, ints bool) (any, error) { return toGo(v, ints, 0) }

func toGo(v lua.LValue, ints bool, depth int) (any, error) {
	switch x := v.(type) {
	case *lua.LNilType:
		return nil, nil
	case lua.LBool:
		return bool(x), nil
	case lua.LNumber:
		f := float64(x)
		if ints && f == math.Trunc(f) && math.Abs(f) < 1<<53 {
			return int64(f), nil
		}
		return f, nil
	case lua.LString:
		return string(x), nil
	case *lua.LTable:
		if depth >= MaxDepth {
			return nil, ErrDepth
		}
		if n, ok := ArrayLen(x); ok {
			out := make([]any, n)
			for i := 1; i <= n; i++ {
				e, err := toGo(x.RawGetInt(i), ints, depth+1)
				if err != nil {
					return nil, err
				}
				out[i-1] = e
			}
			return out, nil
		}
		out := make(map[string]any)
		var err error
		x.ForEach(func(k, e lua.LValue) {
			if err != nil {
				return
			}
			var key string
			key, err = KeyString(k)
			if err != nil {
				return
			}
			out[key], err = toGo(e, ints, depth+1)
		})
		if err != nil {
			return nil, err
		}
		return out, nil
	}
	return nil, fmt.Errorf("cannot convert a %s", v.Type())
}

// KeyString converts a table key to an object key: strings as they are,
// numbers formatted as Lua prints them.
func KeyString(k lua.LValue) (string, error) {
	switch x := k.(type) {
	case lua.LString:
		return string(x), nil
	case lua.LNumber:
		return FormatNumber(float64(x)), nil
	case lua.LBool:
		return strconv.FormatBool(bool(x)), nil
	}
	return "", fmt.Errorf("cannot use a %s as an object key", k.Type())
}

// FormatNumber formats a number without a fraction when it has none, as
// Lua's tostring does for integral values.
func FormatNumber(f float64) string {
	if f == math.Trunc(f) && math.Abs(f) < 1e15 {
		return strconv.FormatInt(int64(f), 10)
	}
	return strconv.FormatFloat(f, 'g', 14, 64)
}

// ArrayLen reports whether t is a non-empty sequence (keys exactly 1..n)
// and its length. An empty table is not an array: its meaning is the
// caller's choice.
func ArrayLen(t *lua.LTable) (int, bool) {
	n := t.MaxN()
	if n == 0 {
		return 0, false
	}
	count := 0
	ok := true
	t.ForEach(func(k, _ lua.LValue) {
		if !ok {
			return
		}
		if num, isNum := k.(lua.LNumber); !isNum || float64(num) != math.Trunc(float64(num)) || num < 1 || int(num) > n {
			ok = false
			return
		}
		count++
	})
	return n, ok && count == n
}

// ToLua converts a Go value to Lua. It accepts the types ToGo produces, the
// other integer and float types, []byte (as a string), time.Time (as an
// RFC 3339 string), fmt.Stringer, slices and string-keyed maps of them; any
// other type is formatted with %v so that nothing is silently dropped.
func ToLua(L *lua.LState, v any) lua.LValue { return toLua(L, v, 0) }

func toLua(L *lua.LState, v any, depth int) lua.LValue {
	if depth >= MaxDepth {
		return lua.LNil
	}
	switch x := v.(type) {
	case nil:
		return lua.LNil
	case lua.LValue:
		return x
	case bool:
		return lua.LBool(x)
	case string:
		return lua.LString(x)
	case []byte:
		return lua.LString(x)
	case int:
		return lua.LNumber(x)
	case int8:
		return lua.LNumber(x)
	case int16:
		return lua.LNumber(x)
	case int32:
		return lua.LNumber(x)
	case int64:
		return lua.LNumber(x)
	case uint:
		return lua.LNumber(x)
	case uint8:
		return lua.LNumber(x)
	case uint16:
		return lua.LNumber(x)
	case uint32:
		return lua.LNumber(x)
	case uint64:
		return lua.LNumber(x)
	case float32:
		return lua.LNumber(x)
	case float64:
		return lua.LNumber(x)
	case time.Time:
		return lua.LString(x.Format(time.RFC3339Nano))
	case time.Duration:
		return lua.LNumber(x.Seconds())
	case []any:
		t := L.CreateTable(len(x), 0)
		for _, e := range x {
			t.Append(nilToFalse(toLua(L, e, depth+1)))
		}
		return t
	case []string:
		t := L.CreateTable(len(x), 0)
		for _, e := range x {
			t.Append(lua.LString(e))
		}
		return t
	case []map[string]any:
		t := L.CreateTable(len(x), 0)
		for _, e := range x {
			t.Append(toLua(L, e, depth+1))
		}
		return t
	case map[string]any:
		t := L.CreateTable(0, len(x))
		// Sorted keys give tables the same iteration order on every run,
		// which makes scripts reproducible.
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			t.RawSetString(k, toLua(L, x[k], depth+1))
		}
		return t
	case map[string]string:
		t := L.CreateTable(0, len(x))
		for k, e := range x {
			t.RawSetString(k, lua.LString(e))
		}
		return t
	case fmt.Stringer:
		return lua.LString(x.String())
	case error:
		return lua.LString(x.Error())
	}
	return lua.LString(fmt.Sprintf("%v", v))
}

// nilToFalse keeps an array's length when an element is nil: Lua cannot
// store nil in a table, and a hole would end the sequence early.
func nilToFalse(v lua.LValue) lua.LValue {
	if v == lua.LNil {
		return lua.LFalse
	}
	return v
}

// Number reads an optional number field of a table, with its default.
func Number(t *lua.LTable, key string, def float64) (float64, error) {
	switch v := t.RawGetString(key).(type) {
	case *lua.LNilType:
		return def, nil
	case lua.LNumber:
		return float64(v), nil
	default:
		return 0, fmt.Errorf("%s must be a number, not a %s", key, v.Type())
	}
}

// Bool reads an optional boolean field of a table, with its default.
func Bool(t *lua.LTable, key string, def bool) (bool, error) {
	switch v := t.RawGetString(key).(type) {
	case *lua.LNilType:
		return def, nil
	case lua.LBool:
		return bool(v), nil
	default:
		return false, fmt.Errorf("%s must be a boolean, not a %s", key, v.Type())
	}
}

// String reads an optional string field of a table, with its default.
func String(t *lua.LTable, key string, def string) (string, error) {
	switch v := t.RawGetString(key).(type) {
	case *lua.LNilType:
		return def, nil
	case lua.LString:
		return string(v), nil
	default:
		return "", fmt.Errorf("%s must be a string, not a %s", key, v.Type())
	}
}

// Seconds converts a number of seconds (fractions allowed) to a Duration,
// refusing negative, NaN and absurdly large values.
func Seconds(f float64) (time.Duration, error) {
	if math.IsNaN(f) || f < 0 || f > 1e9 {
		return 0, fmt.Errorf("invalid number of seconds %v", f)
	}
	return time.Duration(f * float64(time.Second)), nil
}

// Fail returns the (nil, message) pair Lua functions use for expected
// failures; it pushes them and returns 2.
func Fail(L *lua.LState, err error) int {
	L.Push(lua.LNil)
	L.Push(lua.LString(err.Error()))
	return 2
}

// QueryArgs converts the Lua arguments from position first on to the
// parameters of an SQL query: nil, bool, int64 for integral numbers
// (float64 otherwise) and string. Any other argument raises an argument
// error that names its position.
func QueryArgs(L *lua.LState, first int) []any {
	n := L.GetTop()
	out := make([]any, 0, max(n-first+1, 0))
	for i := first; i <= n; i++ {
		switch v := L.Get(i).(type) {
		case *lua.LNilType:
			out = append(out, nil)
		case lua.LBool:
			out = append(out, bool(v))
		case lua.LNumber:
			f := float64(v)
			if f == math.Trunc(f) && math.Abs(f) < 1<<53 {
				out = append(out, int64(f))
			} else {
				out = append(out, f)
			}
		case lua.LString:
			out = append(out, string(v))
		default:
			L.ArgError(i, "a parameter must be nil, a boolean, a number or a string, not a "+v.Type().String())
		}
	}
	return out
}
