package plugins

import (
	"fmt"
	"os"
	"regexp"
	"strings"

	lua "github.com/yuin/gopher-lua"
)

// The limits of the sandbox. The call stack and registry bound recursion and
// the values a call may push; the string limit bounds the builtins that can
// make a huge string from a small one in one step. What remains (a loop
// that grows a table or concatenates) is cut by the hook's timeout.
const (
	callStackSize   = 200
	registrySize    = 8 * 1024
	registryMaxSize = 128 * 1024
	registryGrow    = 4 * 1024
	// DefaultMaxString is the default of Options.MaxStringBytes.
	DefaultMaxString = 16 << 20
	maxDateFormat    = 256
)

// newState returns a Lua state with the standard libraries a plugin may use:
// base (without file or environment access), table, string, math and
// os.time/clock/date/difftime.
func newState() *lua.LState {
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

// sandbox removes and wraps what a plugin must not reach, and installs
// require, dofile, loadfile, readfile and print for the instance's script.
func (in *instance) sandbox(L *lua.LState) {
	g := L.G.Global
	for _, name := range []string{
		"dofile", "loadfile", "require", "module", // replaced below, or gone
		"collectgarbage", // a full Go GC per call would stall the broker
		"getfenv", "setfenv", "newproxy", "_printregs",
	} {
		g.RawSetString(name, lua.LNil)
	}

	os := L.NewTable()
	if lib, ok := g.RawGetString("os").(*lua.LTable); ok {
		for _, name := range []string{"time", "clock", "difftime"} {
			os.RawSetString(name, lib.RawGetString(name))
		}
		if date, ok := lib.RawGetString("date").(*lua.LFunction); ok {
			os.RawSetString("date", L.NewFunction(limitDate(date.GFunction)))
		}
	}
	g.RawSetString("os", os)

	if str, ok := g.RawGetString("string").(*lua.LTable); ok {
		// string is also the metatable index of every string value, so
		// ("x"):rep(n) goes through the same wrappers.
		str.RawSetString("dump", lua.LNil)
		max := in.m.opts.MaxStringBytes
		if f, ok := str.RawGetString("rep").(*lua.LFunction); ok {
			str.RawSetString("rep", L.NewFunction(limitRep(f.GFunction, max)))
		}
		if f, ok := str.RawGetString("format").(*lua.LFunction); ok {
			str.RawSetString("format", L.NewFunction(limitFormat(f.GFunction)))
		}
		if f, ok := str.RawGetString("gsub").(*lua.LFunction); ok {
			str.RawSetString("gsub", L.NewFunction(limitGsub(f.GFunction, max)))
		}
	}

	g.RawSetString("require", L.NewFunction(in.require()))
	g.RawSetString("dofile", L.NewFunction(in.dofile))
	g.RawSetString("loadfile", L.NewFunction(in.loadfile))
	g.RawSetString("readfile", L.NewFunction(in.readfile))
	g.RawSetString("print", L.NewFunction(in.logmod.Print))
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

// modName is what require accepts besides the built-in modules: dotted
// names of .lua files in the script's folder ("lib.util" is lib/util.lua).
var modName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$`)

// require returns the require function of one VM: built-in modules by
// name, then .lua files of the script's folder, each loaded once per VM.
func (in *instance) require() lua.LGFunction {
	loaded := map[string]lua.LValue{}
	loading := map[string]bool{}
	return func(L *lua.LState) int {
		name := L.CheckString(1)
		if v, ok := loaded[name]; ok {
			L.Push(v)
			return 1
		}
		if loading[name] {
			L.RaiseError("require %q: circular require", name)
		}
		var fn *lua.LFunction
		if loader, ok := in.modules[name]; ok {
			fn = L.NewFunction(loader)
		} else {
			if !modName.MatchString(name) {
				L.RaiseError("module %q is not available: a plugin may require %s, or a .lua file of its folder by dotted name (\"lib.util\" for lib/util.lua)", name, in.moduleList())
			}
			rel := strings.ReplaceAll(name, ".", string(os.PathSeparator)) + ".lua"
			real, err := in.script.resolve(rel)
			if err != nil {
				L.RaiseError("module %q is not available: not a built-in module (%s), and no file %s in the script's folder", name, in.moduleList(), rel)
			}
			proto, err := in.script.module(real, rel)
			if err != nil {
				L.RaiseError("require %q: %s", name, err.Error())
			}
			fn = L.NewFunctionFromProto(proto)
		}
		loading[name] = true
		defer delete(loading, name)
		L.Push(fn)
		L.Push(lua.LString(name))
		L.Call(1, 1)
		v := L.Get(-1)
		L.Pop(1)
		if v == lua.LNil {
			v = lua.LTrue
		}
		loaded[name] = v
		L.Push(v)
		return 1
	}
}

func (in *instance) moduleList() string {
	return strings.Join(builtinModules, ", ")
}

// loadPath compiles a file of the script's folder.
func (in *instance) loadPath(L *lua.LState, name string) (*lua.LFunction, error) {
	real, err := in.script.resolve(name)
	if err != nil {
		return nil, err
	}
	proto, err := in.script.module(real, name)
	if err != nil {
		return nil, err
	}
	return L.NewFunctionFromProto(proto), nil
}

// dofile runs a file of the script's folder and returns its results.
func (in *instance) dofile(L *lua.LState) int {
	name := L.CheckString(1)
	fn, err := in.loadPath(L, name)
	if err != nil {
		L.RaiseError("dofile: %s", err.Error())
	}
	top := L.GetTop()
	L.Push(fn)
	L.Call(0, lua.MultRet)
	return L.GetTop() - top
}

// loadfile compiles a file of the script's folder: the function, or nil
// and a message.
func (in *instance) loadfile(L *lua.LState) int {
	fn, err := in.loadPath(L, L.CheckString(1))
	if err != nil {
		L.Push(lua.LNil)
		L.Push(lua.LString("loadfile: " + err.Error()))
		return 2
	}
	L.Push(fn)
	return 1
}

// readfile returns the contents of a file of the script's folder (a users
// list, a certificate), or nil and a message.
func (in *instance) readfile(L *lua.LState) int {
	name := L.CheckString(1)
	fail := func(err error) int {
		L.Push(lua.LNil)
		L.Push(lua.LString("readfile: " + err.Error()))
		return 2
	}
	real, err := in.script.resolve(name)
	if err != nil {
		return fail(err)
	}
	st, err := os.Stat(real)
	if err != nil {
		return fail(unwrapPathError(err))
	}
	if !st.Mode().IsRegular() {
		return fail(fmt.Errorf("%q is not a regular file", name))
	}
	if st.Size() > int64(in.m.opts.MaxStringBytes) {
		return fail(fmt.Errorf("%q is larger than %d bytes", name, in.m.opts.MaxStringBytes))
	}
	data, err := os.ReadFile(real)
	if err != nil {
		return fail(unwrapPathError(err))
	}
	L.Push(lua.LString(data))
	return 1
}
