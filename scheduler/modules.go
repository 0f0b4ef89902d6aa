package scheduler

import (
	"fmt"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/tidemq/tide/conf"
	jsonmod "github.com/tidemq/tide/plugins/lualib/json"
	"github.com/tidemq/tide/plugins/lualib/luaconv"
	"github.com/tidemq/tide/scheduler/window"
)

// The modules only jobs have.
const (
	storeName  = "store"
	windowName = "window"
	alertName  = "alert"
)

// maxStoreRows bounds the rows store.query converts to Lua.
const maxStoreRows = 10000

// storeLoader is the "store" module: read the datastore's history.
//
//	local store = require("store")
//	local rows, err = store.query("archive", "SELECT topic, avg(...) AS v FROM messages WHERE time > $1 GROUP BY topic", since)
//	local resp, err = store.search("search", "mqtt-*", {size = 0, aggs = {...}})
func (s *Scheduler) storeLoader(L *lua.LState) int {
	mod := L.NewTable()
	L.SetFuncs(mod, map[string]lua.LGFunction{
		"query":  s.luaQuery,
		"search": s.luaSearch,
	})
	L.Push(mod)
	return 1
}

func (s *Scheduler) stores(L *lua.LState) Stores {
	if s.opts.Stores == nil {
		L.RaiseError("store module: no datastore configured (add a [[sink]])")
	}
	return s.opts.Stores
}

func (s *Scheduler) luaQuery(L *lua.LState) int {
	st := s.stores(L)
	name := L.CheckString(1)
	query := L.CheckString(2)
	args := luaconv.QueryArgs(L, 3)
	q, ok := st.Querier(name)
	if !ok {
		L.RaiseError("store.query: no [[sink]] %q that answers SQL (PostgreSQL and SQLite sinks do)", name)
	}
	rows, err := q.Query(L.Context(), query, args...)
	if err != nil {
		return luaconv.Fail(L, fmt.Errorf("store.query %s: %w", name, err))
	}
	if len(rows) > maxStoreRows {
		return luaconv.Fail(L, fmt.Errorf("store.query %s: %d rows, more than %d: add a LIMIT or aggregate in SQL", name, len(rows), maxStoreRows))
	}
	t := L.CreateTable(len(rows), 0)
	for _, r := range rows {
		t.Append(luaconv.ToLua(L, r))
	}
	L.Push(t)
	return 1
}

func (s *Scheduler) luaSearch(L *lua.LState) int {
	st := s.stores(L)
	name := L.CheckString(1)
	index := L.OptString(2, "")
	var body []byte
	switch b := L.Get(3).(type) {
	case *lua.LNilType:
	case lua.LString:
		body = []byte(b)
	case *lua.LTable:
		var err error
		if body, err = jsonmod.Encode(L, b); err != nil {
			L.ArgError(3, "body: "+err.Error())
		}
	default:
		L.ArgError(3, "body must be a table or a JSON string, not a "+b.Type().String())
	}
	se, ok := st.Searcher(name)
	if !ok {
		L.RaiseError("store.search: no [[sink]] %q that answers searches (Elasticsearch sinks do)", name)
	}
	resp, err := se.Search(L.Context(), index, body)
	if err != nil {
		return luaconv.Fail(L, fmt.Errorf("store.search %s: %w", name, err))
	}
	L.Push(luaconv.ToLua(L, resp))
	return 1
}

// windowLoader is the "window" module: the live [[aggregate]] windows.
//
//	local window = require("window")
//	for topic, st in pairs(window.stats("home/+/temperature", "5m")) do ... end
//	local st = window.get("home/kitchen/temperature", "5m")   -- or nil
//
// Each figure table has topic, aggregate, count, sum, min, max, avg, last
// and last_time (Unix seconds). The window is a duration string ("5m") or
// a number of seconds; an options table {aggregate = "name"} picks one
// aggregate when several hold the topic.
func (s *Scheduler) windowLoader(L *lua.LState) int {
	mod := L.NewTable()
	L.SetFuncs(mod, map[string]lua.LGFunction{
		"stats": s.luaWindowStats,
		"get":   s.luaWindowGet,
	})
	L.Push(mod)
	return 1
}

func (s *Scheduler) windowQuery(L *lua.LState) []window.Stats {
	w := s.opts.Windows
	if w == nil {
		L.RaiseError("window module: no [[aggregate]] configured")
	}
	filter := L.CheckString(1)
	var d time.Duration
	switch x := L.Get(2).(type) {
	case lua.LString:
		var cd conf.Duration
		if err := cd.UnmarshalTOML(string(x)); err != nil {
			L.ArgError(2, err.Error())
		}
		d = cd.Duration
	case lua.LNumber:
		var err error
		if d, err = luaconv.Seconds(float64(x)); err != nil {
			L.ArgError(2, err.Error())
		}
	default:
		L.ArgError(2, `window must be a duration such as "5m", or a number of seconds`)
	}
	agg := ""
	if opts := L.OptTable(3, nil); opts != nil {
		var err error
		if agg, err = luaconv.String(opts, "aggregate", ""); err != nil {
			L.ArgError(3, err.Error())
		}
	}
	out, err := w.Query(filter, d, agg)
	if err != nil {
		L.RaiseError("window: %s", err.Error())
	}
	return out
}

func statsTable(L *lua.LState, st window.Stats) *lua.LTable {
	t := L.CreateTable(0, 9)
	t.RawSetString("topic", lua.LString(st.Topic))
	t.RawSetString("aggregate", lua.LString(st.Aggregate))
	t.RawSetString("count", lua.LNumber(st.Count))
	t.RawSetString("sum", lua.LNumber(st.Sum))
	t.RawSetString("min", lua.LNumber(st.Min))
	t.RawSetString("max", lua.LNumber(st.Max))
	t.RawSetString("avg", lua.LNumber(st.Avg))
	t.RawSetString("last", lua.LNumber(st.Last))
	t.RawSetString("last_time", unixSeconds(st.LastTime))
	return t
}

func (s *Scheduler) luaWindowStats(L *lua.LState) int {
	out := s.windowQuery(L)
	t := L.CreateTable(0, len(out))
	for _, st := range out {
		t.RawSetString(st.Topic, statsTable(L, st))
	}
	L.Push(t)
	return 1
}

func (s *Scheduler) luaWindowGet(L *lua.LState) int {
	name := L.CheckString(1)
	out := s.windowQuery(L)
	for _, st := range out {
		if st.Topic == name {
			L.Push(statsTable(L, st))
			return 1
		}
	}
	L.Push(lua.LNil)
	return 1
}

// alertLoader returns the "alert" module of one job.
//
//	local alert = require("alert")
//	alert.fire{name = "high-temperature-kitchen", severity = "warning",
//	    message = "31.2 °C", labels = {room = "kitchen"}, ["repeat"] = "15m"}  -- true when notified
//	alert.resolve("high-temperature-kitchen" [, message])                   -- true when it was firing
//	alert.get(name)  -- the firing alert, or nil
//	alert.list()     -- every firing alert
func (s *Scheduler) alertLoader(job string) lua.LGFunction {
	return func(L *lua.LState) int {
		mod := L.NewTable()
		L.SetFuncs(mod, map[string]lua.LGFunction{
			"fire":    func(L *lua.LState) int { return s.luaFire(L, job) },
			"resolve": func(L *lua.LState) int { return s.luaResolve(L, job) },
			"get":     s.luaAlertGet,
			"list":    s.luaAlertList,
		})
		L.Push(mod)
		return 1
	}
}

func (s *Scheduler) luaFire(L *lua.LState, job string) int {
	t := L.CheckTable(1)
	var f Fire
	var err error
	str := func(key string) string {
		v, e := luaconv.String(t, key, "")
		if e != nil && err == nil {
			err = e
		}
		return v
	}
	f.Name, f.Severity, f.Message = str("name"), str("severity"), str("message")
	if err == nil {
		f.Labels, err = labels(t.RawGetString("labels"))
	}
	if err == nil {
		f.Repeat, err = duration(t.RawGetString("repeat"), "repeat")
	}
	if err != nil {
		L.ArgError(1, err.Error())
	}
	notified, err := s.alerts.fire(job, f)
	if err != nil {
		L.RaiseError("alert.fire: %s", err.Error())
	}
	L.Push(lua.LBool(notified))
	return 1
}

func (s *Scheduler) luaResolve(L *lua.LState, job string) int {
	was, err := s.alerts.resolve(job, L.CheckString(1), L.OptString(2, ""))
	if err != nil {
		L.RaiseError("alert.resolve: %s", err.Error())
	}
	L.Push(lua.LBool(was))
	return 1
}

func alertTable(L *lua.LState, a alertState) *lua.LTable {
	t := L.CreateTable(0, 8)
	t.RawSetString("name", lua.LString(a.Name))
	t.RawSetString("severity", lua.LString(a.Severity))
	t.RawSetString("message", lua.LString(a.Message))
	t.RawSetString("labels", luaconv.ToLua(L, a.Labels))
	t.RawSetString("job", lua.LString(a.Job))
	t.RawSetString("since", unixSeconds(a.Since))
	t.RawSetString("last_notified", unixSeconds(a.LastNotified))
	t.RawSetString("notifications", lua.LNumber(a.Notifications))
	return t
}

func (s *Scheduler) luaAlertGet(L *lua.LState) int {
	a, ok := s.alerts.get(L.CheckString(1))
	if !ok {
		L.Push(lua.LNil)
		return 1
	}
	L.Push(alertTable(L, a))
	return 1
}

func (s *Scheduler) luaAlertList(L *lua.LState) int {
	all := s.alerts.list()
	t := L.CreateTable(len(all), 0)
	for _, a := range all {
		t.Append(alertTable(L, a))
	}
	L.Push(t)
	return 1
}

// labels reads an alert's labels: a table of names to strings (numbers
// and booleans are written as text).
func labels(v lua.LValue) (map[string]string, error) {
	switch t := v.(type) {
	case *lua.LNilType:
		return nil, nil
	case *lua.LTable:
		out := map[string]string{}
		var err error
		t.ForEach(func(k, e lua.LValue) {
			if err != nil {
				return
			}
			ks, ok := k.(lua.LString)
			if !ok {
				err = fmt.Errorf("labels: a name must be a string, not a %s", k.Type())
				return
			}
			switch e.(type) {
			case lua.LString, lua.LNumber, lua.LBool:
				out[string(ks)] = e.String()
			default:
				err = fmt.Errorf("labels: %s must be a string, not a %s", ks, e.Type())
			}
		})
		return out, err
	}
	return nil, fmt.Errorf("labels must be a table, not a %s", v.Type())
}

// duration reads a duration given as a string ("15m") or seconds.
func duration(v lua.LValue, key string) (time.Duration, error) {
	switch x := v.(type) {
	case *lua.LNilType:
		return 0, nil
	case lua.LString:
		var d conf.Duration
		if err := d.UnmarshalTOML(string(x)); err != nil {
			return 0, fmt.Errorf("%s: %v", key, err)
		}
		if d.Duration < 0 {
			return 0, fmt.Errorf("%s must not be negative", key)
		}
		return d.Duration, nil
	case lua.LNumber:
		d, err := luaconv.Seconds(float64(x))
		if err != nil {
			return 0, fmt.Errorf("%s: %v", key, err)
		}
		return d, nil
	}
	return 0, fmt.Errorf("%s must be a duration such as \"15m\" or a number of seconds, not a %s", key, v.Type())
}
