package sandbox

import (
	"strings"

	lua "github.com/yuin/gopher-lua"
)

// The limits of the sandbox. The call stack and registry bound recursion and
// the values a call may push; the string limit bounds the builtins that can
// make a huge string from a small one in one step. What remains (a loop
// that grows a table or concatenates) is cut by the caller's timeout.
const (
	callStackSize   = 200
	registrySize    = 8 * 1024
	registryMaxSize = 128 * 1024
	registryGrow    = 4 * 1024
	// DefaultMaxString is the default of Env.MaxString.
	DefaultMaxString = 16 << 20
	maxDateFormat    = 256
)

// NewState returns a Lua state with the standard libraries a script may
// use: base, table, string, math and os, before Env.Install removes what
// must not be reached.
func NewState() *lua.LState {
	L := lua.NewState(lua.Options{
		SkipOpenLibs:     true,
		CallStackSize:    callStackSize,
		RegistrySize:     registrySize,
		RegistryMaxSize:  registryMaxSize,
		RegistryGrowStep: registryGrow,
	})
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
		{lua.StringLibName, lua.OpenString},
		{lua.MathLibName, lua.OpenMath},
		{lua.OsLibName, lua.OpenOs},
	} {
		L.Push(L.NewFunction(lib.open))
		L.Push(lua.LString(lib.name))
		L.Call(1, 0)
	}
	return L
}

func limitRep(rep lua.LGFunction, max int) lua.LGFunction {
	return func(L *lua.LState) int {
		s := L.CheckString(1)
		n := L.CheckInt(2)
		if n > 0 && len(s) > 0 && (n > max || len(s)*n > max) {
			L.RaiseError("string.rep: a result of %d bytes would exceed the limit of %d", int64(len(s))*int64(n), max)
		}
		return rep(L)
	}
}

// limitFormat enforces Lua's own rule that a width or precision has at
// most two digits: Go's fmt would allocate a megabyte for "%999999s".
func limitFormat(format lua.LGFunction) lua.LGFunction {
	return func(L *lua.LState) int {
		if bad, ok := checkFormat(L.CheckString(1)); !ok {
			L.RaiseError("string.format: invalid format %q (width or precision too long)", bad)
		}
		return format(L)
	}
}

// checkFormat returns the first conversion whose width or precision is
// longer than two digits.
func checkFormat(f string) (string, bool) {
	digits := func(j int) int {
		for j < len(f) && f[j] >= '0' && f[j] <= '9' {
			j++
		}
		return j
	}
	for i := 0; i < len(f); i++ {
		if f[i] != '%' {
			continue
		}
		j := i + 1
		if j < len(f) && f[j] == '%' {
			i = j
			continue
		}
		for j < len(f) && strings.IndexByte("-+ #0", f[j]) >= 0 {
			j++
		}
		w := digits(j)
		if w-j > 2 {
			return f[i:min(w+1, len(f))], false
		}
		j = w
		if j < len(f) && f[j] == '.' {
			p := digits(j + 1)
			if p-(j+1) > 2 {
				return f[i:min(p+1, len(f))], false
			}
			j = p
		}
		i = j
	}
	return "", true
}

// limitGsub refuses a string replacement whose worst case would exceed the
// limit: every possible match replaced by the replacement, each capture in
// it expanding to the whole subject.
func limitGsub(gsub lua.LGFunction, max int) lua.LGFunction {
	return func(L *lua.LState) int {
		s := L.CheckString(1)
		if repl, ok := L.Get(3).(lua.LString); ok && len(repl) > 0 {
			matches := int64(len(s) + 1)
			if n, ok := L.Get(4).(lua.LNumber); ok && int64(n) >= 0 && int64(n) < matches {
				matches = int64(n)
			}
			per := int64(len(repl)) + int64(strings.Count(string(repl), "%"))*int64(len(s))
			if worst := int64(len(s)) + matches*per; worst > int64(max) {
				L.RaiseError("string.gsub: the result could reach %d bytes, more than the limit of %d (give a maximum number of replacements, or use a function)", worst, max)
			}
		}
		return gsub(L)
	}
}

func limitDate(date lua.LGFunction) lua.LGFunction {
	return func(L *lua.LState) int {
		if f, ok := L.Get(1).(lua.LString); ok && len(f) > maxDateFormat {
			L.RaiseError("os.date: format longer than %d characters", maxDateFormat)
		}
		return date(L)
	}
}
