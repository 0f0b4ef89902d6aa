// Package sink is the Lua module "sink": scripts hand records to the
// broker's datastore sinks.
//
//	local sink = require("sink")
//	local ok, err = sink.write("timeseries", {topic = msg.topic, value = 21.5})
//
// write returns true once the record is queued for the sink, or nil and a
// message (unknown sink, queue full). Without a datastore wired into the
// broker, write raises the error "sink module: no datastore configured", so
// that a misconfiguration is loud rather than a silent loss.
package sink

import (
	"errors"
	"fmt"

	lua "github.com/yuin/gopher-lua"

	"github.com/tidemq/tide/plugins/lualib/luaconv"
)

// Name is the module's name for require.
const Name = "sink"

// Writer queues a record for a named sink. The datastore implements it; the
// map holds plain Go values (nil, bool, int64, float64, string, []any,
// map[string]any).
type Writer interface {
	Write(sink string, rec map[string]any) error
}

// ErrNotConfigured is raised by write when no Writer is set.
var ErrNotConfigured = errors.New("sink module: no datastore configured")

// Module resolves the Writer at each call, so that the datastore can be
// wired (or replaced) after the scripts are loaded.
type Module struct {
	writer func() Writer
}

// New returns the module; writer returns the current Writer or nil.
func New(writer func() Writer) *Module { return &Module{writer: writer} }

// Loader is the lua.LGFunction that require calls: it pushes the module.
func (m *Module) Loader(L *lua.LState) int {
	mod := L.NewTable()
	L.SetFuncs(mod, map[string]lua.LGFunction{"write": m.luaWrite})
	L.Push(mod)
	return 1
}

func (m *Module) luaWrite(L *lua.LState) int {
	name := L.CheckString(1)
	t := L.CheckTable(2)
	var w Writer
	if m.writer != nil {
		w = m.writer()
	}
	if w == nil {
		L.RaiseError("%s", ErrNotConfigured.Error())
		return 0
	}
	v, err := luaconv.ToGo(t, true)
	if err != nil {
		return luaconv.Fail(L, fmt.Errorf("sink.write: record: %w", err))
	}
	rec, ok := v.(map[string]any)
	if !ok {
		if arr, isArr := v.([]any); isArr && len(arr) > 0 {
			return luaconv.Fail(L, errors.New("sink.write: a record must be a table of named fields, not a list"))
		}
		rec = map[string]any{}
	}
	if err := w.Write(name, rec); err != nil {
		return luaconv.Fail(L, fmt.Errorf("sink.write %q: %w", name, err))
	}
	L.Push(lua.LTrue)
	return 1
}
