package plugins

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/tidemq/tide/core/event"
	"github.com/tidemq/tide/plugins/lualib/luaconv"
	"github.com/tidemq/tide/plugins/sandbox"
)

// hook identifies a script function the runtime calls.
type hook int

// The hooks, in the order of hookNames.
const (
	hookConnect hook = iota
	hookSubscribe
	hookPublish
	hookAuth
	hookMessage
	hookDisconnect
	numHooks
)

var hookNames = [numHooks]string{"on_connect", "on_subscribe", "on_publish", "on_auth", "on_message", "on_disconnect"}

func (h hook) String() string { return hookNames[h] }

// isGate reports whether the hook decides (on the client's goroutine)
// rather than observes.
func (h hook) isGate() bool { return h <= hookAuth }

// epoch anchors the runtime's clock: durations since it are read from the
// monotonic clock alone, which costs half of time.Now on virtual machines,
// and a call reads the clock only twice (start, end).
var epoch = time.Now()

// now returns the nanoseconds elapsed since epoch.
func now() int64 { return int64(time.Since(epoch)) }

// callCtx is a VM's context for its whole life. Its deadline is that of the
// call running on the VM (0 when idle). The watchdog closes Done when a call
// passes its deadline, and such a VM is discarded, so one channel per VM
// suffices: arming a call is one atomic store, with no context, timer or
// cancel function per call.
type callCtx struct {
	done     chan struct{}
	deadline atomic.Int64 // since epoch; 0 idle, expiredMark after expiry
	expired  atomic.Bool
}

const expiredMark = -1

// Deadline, Done, Err and Value implement context.Context, so that Go
// functions called by scripts (http, sql) end with the hook's call.
func (c *callCtx) Deadline() (time.Time, bool) {
	d := c.deadline.Load()
	if d <= 0 {
		return time.Time{}, false
	}
	return epoch.Add(time.Duration(d)), true
}

func (c *callCtx) Done() <-chan struct{} { return c.done }

func (c *callCtx) Err() error {
	if c.expired.Load() {
		return context.DeadlineExceeded
	}
	return nil
}

func (c *callCtx) Value(any) any { return nil }

// expireIfPast ends the running call if its deadline is before t.
func (c *callCtx) expireIfPast(t int64) {
	d := c.deadline.Load()
	if d > 0 && t >= d && c.deadline.CompareAndSwap(d, expiredMark) {
		c.expired.Store(true)
		close(c.done)
	}
}

// vm is one Lua state of a plugin with its hooks resolved.
type vm struct {
	L     *lua.LState
	in    *instance
	fns   [numHooks]*lua.LFunction
	nargs [numHooks]int // parameters the hook declares: arguments it does not take are not built
	ctx   *callCtx
	armed int64 // the deadline of the running call

	// clients caches the client table of each connection (read-only for
	// scripts), since a connection publishes many times. Bounded: cleared
	// when full, as a connection that went away cannot be told apart.
	clients map[*event.Client]*lua.LTable

	// msg is on_publish's message table, refilled for every call with the
	// fields the hook reads, when the hook provably keeps no reference to
	// it (analyzeParam); msgUse says which fields.
	msg    *lua.LTable
	msgUse paramUse
}

const maxCachedClients = 1024

// newVM creates a state, runs the script's main chunk and its init()
// under the init timeout, and resolves the hooks.
func (in *instance) newVM() (v *vm, err error) {
	L := sandbox.NewState()
	v = &vm{L: L, in: in, ctx: &callCtx{done: make(chan struct{})}, clients: map[*event.Client]*lua.LTable{}}
	in.m.watch.add(v)
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s: panic while loading: %v", in.script.Path, r)
		}
		if err != nil {
			v.close()
			v = nil
		}
	}()
	in.env.Install(L)
	L.SetGlobal("config", luaconv.ToLua(L, settings(in.cfg.Settings)))
	L.SetContext(v.ctx)

	v.arm(now() + int64(in.m.opts.InitTimeout))
	L.Push(L.NewFunctionFromProto(in.script.Proto))
	err = L.PCall(0, 0, nil)
	if err == nil {
		if initFn, ok := L.GetGlobal("init").(*lua.LFunction); ok {
			L.Push(initFn)
			if err = L.PCall(0, 0, nil); err != nil {
				err = fmt.Errorf("init(): %w", luaError(err, v.ctx, in.m.opts.InitTimeout))
			}
		}
	} else {
		err = luaError(err, v.ctx, in.m.opts.InitTimeout)
	}
	if !v.disarm() && err == nil {
		err = fmt.Errorf("%s: loading took longer than %v", in.script.Path, in.m.opts.InitTimeout)
	}
	if err != nil {
		return v, err
	}
	for h := range numHooks {
		if fn, ok := L.GetGlobal(hookNames[h]).(*lua.LFunction); ok {
			v.fns[h] = fn
			v.nargs[h] = 2
			if fn.Proto != nil && fn.Proto.IsVarArg&lua.VarArgIsVarArg == 0 {
				v.nargs[h] = int(fn.Proto.NumParameters)
			}
		}
	}
	v.msgUse = paramUse{escapes: true}
	if fn := v.fns[hookPublish]; fn != nil {
		if v.msgUse = analyzeParam(fn, 1); !v.msgUse.escapes {
			v.msg = L.CreateTable(0, 6)
		}
	}
	return v, nil
}

// settings keeps nil settings from becoming a nil config global: scripts
// index config without checking it.
func settings(s map[string]any) map[string]any {
	if s == nil {
		return map[string]any{}
	}
	return s
}

// arm starts a call that must end by deadline (since epoch).
func (v *vm) arm(deadline int64) {
	v.armed = max(deadline, 1)
	v.ctx.deadline.Store(v.armed)
}

// disarm ends a call; false means the watchdog expired it (the VM's
// context is done and the VM must not be used again).
func (v *vm) disarm() bool {
	return v.ctx.deadline.CompareAndSwap(v.armed, 0)
}

func (v *vm) close() {
	v.in.m.watch.remove(v)
	v.L.Close()
}

// clientTable returns the (cached) table of a connected client: id,
// username, remote_addr, listener, protocol, clean_start, keepalive, tls
// and attrs.
func (v *vm) clientTable(c *event.Client) *lua.LTable {
	if c == nil {
		return nil
	}
	if t, ok := v.clients[c]; ok {
		return t
	}
	if len(v.clients) >= maxCachedClients {
		clear(v.clients)
	}
	t := v.L.CreateTable(0, 9)
	fillClient(v.L, t, c)
	if c.Attrs != nil {
		t.RawSetString("attrs", luaconv.ToLua(v.L, c.Attrs))
	} else {
		t.RawSetString("attrs", v.L.NewTable())
	}
	v.clients[c] = t
	return t
}

func fillClient(L *lua.LState, t *lua.LTable, c *event.Client) {
	t.RawSetString("id", lua.LString(c.ID))
	t.RawSetString("username", lua.LString(c.Username))
	t.RawSetString("remote_addr", lua.LString(c.RemoteAddr))
	t.RawSetString("listener", lua.LString(c.Listener))
	t.RawSetString("protocol", lua.LNumber(c.Protocol))
	t.RawSetString("clean_start", lua.LBool(c.CleanStart))
	t.RawSetString("keepalive", lua.LNumber(c.KeepAlive))
	if c.TLS != nil {
		tls := L.CreateTable(0, 3)
		tls.RawSetString("cn", lua.LString(c.TLS.CN))
		tls.RawSetString("verified", lua.LBool(c.TLS.Verified))
		tls.RawSetString("sans", luaconv.ToLua(L, append([]string{}, c.TLS.SANs...)))
		t.RawSetString("tls", tls)
	}
}

// messageTable returns on_publish's msg: the VM's reused table, with the
// fields the hook reads, when the hook cannot keep it, else a new table.
// payload is LNil when the hook does not read it.
func (v *vm) messageTable(m *event.Message, payload lua.LValue) *lua.LTable {
	t := v.msg
	if t == nil {
		return luaconv.Message(v.L, m, payload, false)
	}
	u := v.msgUse
	if u.needs(fieldTopic) {
		t.RawSetString("topic", lua.LString(m.Topic))
	}
	if u.needs(fieldPayload) {
		t.RawSetString("payload", payload)
	}
	if u.needs(fieldQoS) {
		t.RawSetString("qos", lua.LNumber(m.QoS))
	}
	if u.needs(fieldRetain) {
		t.RawSetString("retain", lua.LBool(m.Retain))
	}
	if u.needs(fieldTime) {
		if m.Time.IsZero() {
			t.RawSetString("time", lua.LNil)
		} else {
			t.RawSetString("time", lua.LNumber(float64(m.Time.UnixNano())/1e9))
		}
	}
	if u.needs(fieldProperties) {
		if luaconv.HasProperties(&m.Props) {
			t.RawSetString("properties", luaconv.Properties(v.L, &m.Props))
		} else {
			t.RawSetString("properties", lua.LNil)
		}
	}
	return t
}

// errBusy and errClosed are the failures of a call that got no VM.
var (
	errBusy   = errors.New("no Lua VM free within the timeout (pool exhausted)")
	errClosed = errors.New("plugin is being unloaded")
)

// timeoutError is a call cut at its deadline.
type timeoutError struct {
	after time.Duration
	where string
}

func (e *timeoutError) Error() string {
	if e.where != "" {
		return fmt.Sprintf("timed out after %v at %s", e.after, e.where)
	}
	return fmt.Sprintf("timed out after %v", e.after)
}

// luaError turns a PCall error into a one-line error (file:line: message)
// or a timeoutError when the VM's deadline had passed.
func luaError(err error, ctx *callCtx, timeout time.Duration) error {
	msg := err.Error()
	var ae *lua.ApiError
	if errors.As(err, &ae) && ae.Object != nil {
		msg = ae.Object.String()
	}
	if ctx.expired.Load() {
		where := ""
		if i := strings.Index(msg, ": "+context.DeadlineExceeded.Error()); i > 0 {
			where = strings.TrimSuffix(msg[:i], ":")
		}
		return &timeoutError{after: timeout, where: where}
	}
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i]
	}
	return errors.New(msg)
}
