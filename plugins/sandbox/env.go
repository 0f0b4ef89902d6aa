package sandbox

import (
	"fmt"
	"os"
	"regexp"
	"strings"

	lua "github.com/yuin/gopher-lua"
)

// Env is what one script's states get: its folder (through Script), the
// modules require offers, and the print function. One Env serves every
// state of a script; Install is called once per state.
type Env struct {
	// Script is the compiled script; its folder is the only place
	// require, dofile, loadfile and readfile may read from.
	Script *Script
	// Modules are the built-in modules by name, as require loaders.
	Modules map[string]lua.LGFunction
	// Names lists the module names in the order error messages give them.
	Names []string
	// Kind names the runtime in messages ("plugin", "job").
	Kind string
	// MaxString bounds string.rep, string.gsub and readfile results
	// (default DefaultMaxString).
	MaxString int
	// Print implements the print global (nil: print does nothing).
	Print lua.LGFunction
}

// Install removes and wraps what a script must not reach, and installs
// require, dofile, loadfile, readfile and print for the Env's script.
func (e *Env) Install(L *lua.LState) {
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

	max := e.maxString()
	if str, ok := g.RawGetString("string").(*lua.LTable); ok {
		// string is also the metatable index of every string value, so
		// ("x"):rep(n) goes through the same wrappers.
		str.RawSetString("dump", lua.LNil)
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

	g.RawSetString("require", L.NewFunction(e.require()))
	g.RawSetString("dofile", L.NewFunction(e.dofile))
	g.RawSetString("loadfile", L.NewFunction(e.loadfile))
	g.RawSetString("readfile", L.NewFunction(e.readfile))
	print := e.Print
	if print == nil {
		print = func(*lua.LState) int { return 0 }
	}
	g.RawSetString("print", L.NewFunction(print))
}

func (e *Env) maxString() int {
	if e.MaxString > 0 {
		return e.MaxString
	}
	return DefaultMaxString
}

func (e *Env) kind() string {
	if e.Kind == "" {
		return "script"
	}
	return e.Kind
}

// modName is what require accepts besides the built-in modules: dotted
// names of .lua files in the script's folder ("lib.util" is lib/util.lua).
var modName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$`)

// require returns the require function of one state: built-in modules by
// name, then .lua files of the script's folder, each loaded once per state.
func (e *Env) require() lua.LGFunction {
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
		if loader, ok := e.Modules[name]; ok {
			fn = L.NewFunction(loader)
		} else {
			if !modName.MatchString(name) {
				L.RaiseError("module %q is not available: a %s may require %s, or a .lua file of its folder by dotted name (\"lib.util\" for lib/util.lua)", name, e.kind(), e.moduleList())
			}
			rel := strings.ReplaceAll(name, ".", string(os.PathSeparator)) + ".lua"
			real, err := e.Script.Resolve(rel)
			if err != nil {
				L.RaiseError("module %q is not available: not a built-in module (%s), and no file %s in the script's folder", name, e.moduleList(), rel)
			}
			proto, err := e.Script.Module(real, rel)
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

func (e *Env) moduleList() string {
	return strings.Join(e.Names, ", ")
}

// loadPath compiles a file of the script's folder.
func (e *Env) loadPath(L *lua.LState, name string) (*lua.LFunction, error) {
	real, err := e.Script.Resolve(name)
	if err != nil {
		return nil, err
	}
	proto, err := e.Script.Module(real, name)
	if err != nil {
		return nil, err
	}
	return L.NewFunctionFromProto(proto), nil
}

// dofile runs a file of the script's folder and returns its results.
func (e *Env) dofile(L *lua.LState) int {
	name := L.CheckString(1)
	fn, err := e.loadPath(L, name)
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
func (e *Env) loadfile(L *lua.LState) int {
	fn, err := e.loadPath(L, L.CheckString(1))
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
func (e *Env) readfile(L *lua.LState) int {
	name := L.CheckString(1)
	fail := func(err error) int {
		L.Push(lua.LNil)
		L.Push(lua.LString("readfile: " + err.Error()))
		return 2
	}
	real, err := e.Script.Resolve(name)
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
	max := e.maxString()
	if st.Size() > int64(max) {
		return fail(fmt.Errorf("%q is larger than %d bytes", name, max))
	}
	data, err := os.ReadFile(real)
	if err != nil {
		return fail(unwrapPathError(err))
	}
	L.Push(lua.LString(data))
	return 1
}
