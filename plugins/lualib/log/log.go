// Package log is the Lua module "log": structured log lines from scripts,
// through the broker's log/slog logger, tagged with the plugin and script.
//
//	local log = require("log")
//	log.info("user logged in", {user = client.username, attempts = 3})
//
// Each of debug, info, warn and error takes a message and an optional table
// of key/value pairs (nested tables are logged as their JSON-like form).
package log

import (
	"context"
	"fmt"
	"log/slog"
	"sort"

	lua "github.com/yuin/gopher-lua"

	"github.com/tidemq/tide/plugins/lualib/luaconv"
)

// Name is the module's name for require.
const Name = "log"

// Module logs for one script.
type Module struct {
	log *slog.Logger
}

// New returns the module for a script; logger should already carry the
// script's identity (plugin name, file). A nil logger discards.
func New(logger *slog.Logger) *Module {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Module{log: logger}
}

// Loader is the lua.LGFunction that require calls: it pushes the module.
func (m *Module) Loader(L *lua.LState) int {
	mod := L.NewTable()
	L.SetFuncs(mod, map[string]lua.LGFunction{
		"debug": m.logger(slog.LevelDebug),
		"info":  m.logger(slog.LevelInfo),
		"warn":  m.logger(slog.LevelWarn),
		"error": m.logger(slog.LevelError),
	})
	L.Push(mod)
	return 1
}

func (m *Module) logger(level slog.Level) lua.LGFunction {
	return func(L *lua.LState) int {
		// Cheap exit first: a debug line in a hot hook costs nothing
		// when debug is off.
		if !m.log.Enabled(context.Background(), level) {
			return 0
		}
		msg := L.ToStringMeta(L.Get(1)).String()
		var attrs []slog.Attr
		if t, ok := L.Get(2).(*lua.LTable); ok {
			attrs = Attrs(t)
		} else if L.GetTop() >= 2 {
			attrs = []slog.Attr{slog.String("value", L.ToStringMeta(L.Get(2)).String())}
		}
		attrs = append(attrs, slog.String("line", where(L)))
		m.log.LogAttrs(context.Background(), level, msg, attrs...)
		return 0
	}
}

// Print implements the print global: its arguments, separated by tabs, as
// one info line, since scripts have no standard output.
func (m *Module) Print(L *lua.LState) int {
	n := L.GetTop()
	s := ""
	for i := 1; i <= n; i++ {
		if i > 1 {
			s += "\t"
		}
		s += L.ToStringMeta(L.Get(i)).String()
	}
	m.log.Info(s, "line", where(L))
	return 0
}

// where returns the script position that called the Go function.
func where(L *lua.LState) string {
	if dbg, ok := L.GetStack(1); ok {
		if _, err := L.GetInfo("Sl", dbg, lua.LNil); err == nil && dbg.CurrentLine > 0 {
			return fmt.Sprintf("%s:%d", dbg.Source, dbg.CurrentLine)
		}
	}
	return L.Where(1)
}

// Attrs converts a table of fields to slog attributes, sorted by key so that
// lines are stable.
func Attrs(t *lua.LTable) []slog.Attr {
	var attrs []slog.Attr
	t.ForEach(func(k, v lua.LValue) {
		key, err := luaconv.KeyString(k)
		if err != nil {
			key = k.String()
		}
		attrs = append(attrs, attr(key, v))
	})
	sort.Slice(attrs, func(i, j int) bool { return attrs[i].Key < attrs[j].Key })
	return attrs
}

func attr(key string, v lua.LValue) slog.Attr {
	switch x := v.(type) {
	case lua.LString:
		return slog.String(key, string(x))
	case lua.LNumber:
		return slog.Float64(key, float64(x))
	case lua.LBool:
		return slog.Bool(key, bool(x))
	case *lua.LTable:
		if g, err := luaconv.ToGo(x, true); err == nil {
			return slog.Any(key, g)
		}
	}
	return slog.String(key, v.String())
}
