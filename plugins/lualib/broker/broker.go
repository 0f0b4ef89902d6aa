// Package broker is the Lua module "broker": scripts publish, read retained
// messages, look up and disconnect clients.
//
//	local broker = require("broker")
//	local ok, err = broker.publish("alerts/high", payload, {qos = 1, retain = false,
//	    properties = {content_type = "application/json"}})
//	local msg = broker.retained("config/site")  -- {topic, payload, qos, retain, properties} or nil
//	local info = broker.client("sensor-7")      -- {id, username, ..., subscriptions} or nil
//	local was = broker.disconnect("sensor-7", "banned")
//	local msgs = broker.retained_match("home/+/temperature", 100)  -- list of msg tables, by topic
//	local st = broker.stats()                   -- {clients_connected = 3, messages_received = ...}
//
// retained_match and stats need a backend that also implements
// RetainedMatcher and StatsSource (the broker given to scheduler jobs
// does); otherwise they raise.
//
// disconnect is asynchronous: it returns true when the client was connected
// and is being disconnected (a hook may disconnect the very client it is
// deciding about, which must not wait for itself), false otherwise.
package broker

import (
	"errors"
	"fmt"

	lua "github.com/yuin/gopher-lua"

	"github.com/tidemq/tide/core/event"
	"github.com/tidemq/tide/plugins/lualib/luaconv"
)

// Name is the module's name for require.
const Name = "broker"

// Backend is what the module needs of the broker. It uses plain types so
// that the plugin runtime does not import the broker's core; a small adapter
// over *core.Server implements it.
type Backend interface {
	// Publish routes a message from inside the broker (Topic, Payload, QoS,
	// Retain and Props are used).
	Publish(m event.Message) error
	// Retained returns the retained message of a topic.
	Retained(topic string) (event.Message, bool)
	// Client describes a connected client.
	Client(id string) (ClientInfo, bool)
	// Disconnect closes a client's connection (its will is published) and
	// reports whether it was connected. It may wait for the connection to end.
	Disconnect(id, reason string) bool
}

// RetainedMatcher is an optional capability of a Backend: the retained
// messages whose topics match a filter.
type RetainedMatcher interface {
	// RetainedMatch returns up to limit (0: all) retained messages matching
	// filter, sorted by topic.
	RetainedMatch(filter string, limit int) []event.Message
}

// StatsSource is an optional capability of a Backend: the broker's counters
// by name (clients_connected, messages_received, ...).
type StatsSource interface {
	Stats() map[string]float64
}

// DefaultMatchLimit and MaxMatchLimit bound retained_match: a filter such
// as "#" must not copy a whole retained store into a script.
const (
	DefaultMatchLimit = 1000
	MaxMatchLimit     = 100000
)

// ClientInfo describes a connected client.
type ClientInfo = event.ClientInfo

// ErrNoBroker is raised when the module is used without a backend (in
// `tide check`, or a runtime built without one).
var ErrNoBroker = errors.New("broker module: no broker configured")

// Module gives scripts the broker.
type Module struct {
	b Backend
}

// New returns the module over b (nil: every call raises ErrNoBroker).
func New(b Backend) *Module { return &Module{b: b} }

// Loader is the lua.LGFunction that require calls: it pushes the module.
func (m *Module) Loader(L *lua.LState) int {
	mod := L.NewTable()
	L.SetFuncs(mod, map[string]lua.LGFunction{
		"publish":        m.luaPublish,
		"retained":       m.luaRetained,
		"client":         m.luaClient,
		"disconnect":     m.luaDisconnect,
		"retained_match": m.luaRetainedMatch,
		"stats":          m.luaStats,
	})
	L.Push(mod)
	return 1
}

func (m *Module) backend(L *lua.LState) Backend {
	if m.b == nil {
		L.RaiseError("%s", ErrNoBroker.Error())
	}
	return m.b
}

func (m *Module) luaPublish(L *lua.LState) int {
	b := m.backend(L)
	msg := event.Message{Topic: L.CheckString(1), Payload: []byte(L.OptString(2, ""))}
	if opts := L.OptTable(3, nil); opts != nil {
		qos, err := luaconv.Number(opts, "qos", 0)
		if err != nil || (qos != 0 && qos != 1 && qos != 2) {
			L.ArgError(3, "qos must be 0, 1 or 2")
		}
		msg.QoS = byte(qos)
		if msg.Retain, err = luaconv.Bool(opts, "retain", false); err != nil {
			L.ArgError(3, err.Error())
		}
		switch p := opts.RawGetString("properties").(type) {
		case *lua.LNilType:
		case *lua.LTable:
			if msg.Props, err = luaconv.ParseProperties(p); err != nil {
				L.ArgError(3, "properties: "+err.Error())
			}
		default:
			L.ArgError(3, "properties must be a table")
		}
	}
	if err := b.Publish(msg); err != nil {
		return luaconv.Fail(L, fmt.Errorf("broker.publish %q: %w", msg.Topic, err))
	}
	L.Push(lua.LTrue)
	return 1
}

func (m *Module) luaRetained(L *lua.LState) int {
	b := m.backend(L)
	msg, ok := b.Retained(L.CheckString(1))
	if !ok {
		L.Push(lua.LNil)
		return 1
	}
	L.Push(luaconv.Message(L, &msg, lua.LNil, true))
	return 1
}

func (m *Module) luaClient(L *lua.LState) int {
	b := m.backend(L)
	ci, ok := b.Client(L.CheckString(1))
	if !ok {
		L.Push(lua.LNil)
		return 1
	}
	t := L.CreateTable(0, 11)
	t.RawSetString("id", lua.LString(ci.ID))
	t.RawSetString("username", lua.LString(ci.Username))
	t.RawSetString("remote_addr", lua.LString(ci.RemoteAddr))
	t.RawSetString("listener", lua.LString(ci.Listener))
	t.RawSetString("protocol", lua.LNumber(ci.Protocol))
	t.RawSetString("clean_start", lua.LBool(ci.CleanStart))
	t.RawSetString("keepalive", lua.LNumber(ci.KeepAlive.Seconds()))
	if !ci.ConnectedAt.IsZero() {
		t.RawSetString("connected_at", lua.LNumber(float64(ci.ConnectedAt.UnixNano())/1e9))
	}
	t.RawSetString("subscriptions", luaconv.ToLua(L, append([]string{}, ci.Subscriptions...)))
	t.RawSetString("queue_depth", lua.LNumber(ci.QueueDepth))
	t.RawSetString("inflight", lua.LNumber(ci.Inflight))
	L.Push(t)
	return 1
}

func (m *Module) luaDisconnect(L *lua.LState) int {
	b := m.backend(L)
	id := L.CheckString(1)
	reason := L.OptString(2, "disconnected by a plugin")
	if _, ok := b.Client(id); !ok {
		L.Push(lua.LFalse)
		return 1
	}
	go b.Disconnect(id, reason)
	L.Push(lua.LTrue)
	return 1
}

func (m *Module) luaRetainedMatch(L *lua.LState) int {
	b := m.backend(L)
	filter := L.CheckString(1)
	limit := L.OptInt(2, DefaultMatchLimit)
	if limit <= 0 || limit > MaxMatchLimit {
		L.ArgError(2, fmt.Sprintf("limit must be between 1 and %d", MaxMatchLimit))
	}
	rm, ok := b.(RetainedMatcher)
	if !ok {
		L.RaiseError("broker.retained_match is not available here")
	}
	msgs := rm.RetainedMatch(filter, limit)
	t := L.CreateTable(len(msgs), 0)
	for i := range msgs {
		t.Append(luaconv.Message(L, &msgs[i], lua.LNil, true))
	}
	L.Push(t)
	return 1
}

func (m *Module) luaStats(L *lua.LState) int {
	b := m.backend(L)
	ss, ok := b.(StatsSource)
	if !ok {
		L.RaiseError("broker.stats is not available here")
	}
	st := ss.Stats()
	t := L.CreateTable(0, len(st))
	for k, v := range st {
		t.RawSetString(k, lua.LNumber(v))
	}
	L.Push(t)
	return 1
}
