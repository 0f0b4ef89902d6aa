package plugins

import (
	"strings"
	"sync"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/tidemq/tide/core/event"
	"github.com/tidemq/tide/plugins/lualib/luaconv"
)

// observer feeds a plugin's on_message and on_disconnect from the event
// bus, off the broker's hot path: the bus queues events (bounded, sharded by
// client id so that each client's events stay in order) and drops and
// counts when the queue is full; one worker per shard runs the hooks on the
// plugin's observer VMs. An observer outlives reloads that keep its plugin's
// name, hooks, queue size and pool size, so no event is lost or seen twice
// across such a reload.
type observer struct {
	m      *Manager
	name   string
	kinds  event.Kind
	size   int
	shards int
	sub    *event.Subscriber
	wg     sync.WaitGroup
}

func observerKinds(in *instance) event.Kind {
	var k event.Kind
	if in.has(hookMessage) {
		k |= event.Publish
	}
	if in.has(hookDisconnect) {
		k |= event.Disconnect
	}
	return k
}

// updateObservers starts, keeps or stops the observers for the plugins of
// next. The caller holds m.mu.
func (m *Manager) updateObservers(next *set) {
	m.obsMu.Lock()
	defer m.obsMu.Unlock()
	keep := map[string]bool{}
	for _, in := range next.all {
		kinds := observerKinds(in)
		if kinds == 0 || m.opts.Bus == nil {
			continue
		}
		name := in.cfg.Name
		keep[name] = true
		if o := m.observers[name]; o != nil {
			if o.kinds == kinds && o.size == in.cfg.QueueSize && o.shards == in.cfg.Pool {
				continue
			}
			m.retireObserver(o)
		}
		o := &observer{m: m, name: name, kinds: kinds, size: in.cfg.QueueSize, shards: in.cfg.Pool}
		o.sub = m.opts.Bus.Subscribe("plugin:"+name, kinds, event.QueueOptions{Size: o.size, Shards: o.shards})
		for i := 0; i < o.sub.Shards(); i++ {
			o.wg.Add(1)
			go o.work(o.sub.Queue(i))
		}
		m.observers[name] = o
	}
	for name, o := range m.observers {
		if !keep[name] {
			m.retireObserver(o)
		}
	}
}

// retireObserver unsubscribes o; its workers finish the queued events with
// whatever plugin of that name is loaded. The caller holds obsMu.
func (m *Manager) retireObserver(o *observer) {
	delete(m.observers, o.name)
	o.close()
	m.goFunc(o.wait)
}

// close unsubscribes; the queues close once the bus can no longer send.
func (o *observer) close() {
	o.sub.Close()
	o.m.pluginStats(o.name).dropped.Add(o.sub.Dropped())
}

func (o *observer) wait() { o.wg.Wait() }

func (o *observer) work(q <-chan *event.Event) {
	defer o.wg.Done()
	for e := range q {
		s := o.m.acquire()
		if in := s.byName[o.name]; in != nil && in.obs != nil {
			in.observe(e)
		} else {
			// The plugin was unloaded with events still queued.
			o.m.pluginStats(o.name).dropped.Add(1)
			o.m.limiter.Warn(o.m.log, o.name+"/unloaded", "events dropped: their plugin was unloaded before they were observed", "plugin", o.name)
		}
		s.release()
	}
}

// observe runs on_message or on_disconnect for one event. Failures are
// counted and logged; there is no answer to give.
func (in *instance) observe(e *event.Event) {
	var h hook
	switch e.Kind {
	case event.Publish:
		// $SYS messages are the broker's own figures, published every
		// sys_interval: not traffic a script routes or counts.
		if e.Message == nil || !in.has(hookMessage) || strings.HasPrefix(e.Message.Topic, "$SYS/") {
			return
		}
		h = hookMessage
	case event.Disconnect:
		if e.Client == nil || !in.has(hookDisconnect) {
			return
		}
		h = hookDisconnect
	default:
		return
	}
	start := now()
	hs := &in.stats.hooks[h]
	hs.calls.Add(1)
	// Waiting for a VM is not a failure here: the pool has one VM per
	// worker, and only a replacement being loaded can make it wait.
	wait := max(in.timeout, in.m.opts.InitTimeout)
	err := in.invoke(h, in.obs, start+int64(wait), in.timeout, func(v *vm) int {
		if h == hookMessage {
			if v.nargs[h] < 1 {
				return 0
			}
			v.L.Push(luaconv.Message(v.L, e.Message, lua.LNil, true))
			return 1
		}
		n := v.nargs[h]
		if n < 1 {
			return 0
		}
		v.L.Push(v.clientTable(e.Client))
		if n < 2 {
			return 1
		}
		v.L.Push(disconnectTable(v.L, e.Disconnect))
		return 2
	}, func(_, _ lua.LValue) error { return nil })
	hs.observe(time.Duration(now() - start))
	if err != nil {
		in.fail(h, err)
	}
}

func disconnectTable(L *lua.LState, d *event.DisconnectInfo) *lua.LTable {
	t := L.CreateTable(0, 4)
	if d == nil {
		return t
	}
	t.RawSetString("graceful", lua.LBool(d.Graceful))
	t.RawSetString("reason", lua.LString(d.Reason))
	t.RawSetString("code", lua.LNumber(d.Code))
	t.RawSetString("will_sent", lua.LBool(d.WillSent))
	return t
}
