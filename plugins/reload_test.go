package plugins

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/tidemq/tide/conf"
	"github.com/tidemq/tide/core/event"
)

func answer(m *Manager) string {
	d := m.OnPublish(ctx, testClient, testMessage())
	return d.Verdict.String() + " " + d.Reason
}

func TestReloadKeepsOldScriptOnError(t *testing.T) {
	dir := t.TempDir()
	lg, logs := newLogger()
	m := newManager(t, Options{Logger: lg})
	path := writeScript(t, dir, "p.lua", `function on_publish() return false, "v1" end`)
	other := writeScript(t, dir, "other.lua", `function on_subscribe() return false, "other v1" end`)
	load(t, m, plugin("p", path), plugin("other", other))
	if got := answer(m); got != "deny v1" {
		t.Fatalf("v1 answers %q", got)
	}

	// One broken script keeps every plugin as it was, the good one too.
	writeScript(t, dir, "p.lua", "function on_publish()\n  return false, \"v2\"\nend)\n")
	writeScript(t, dir, "other.lua", `function on_subscribe() return false, "other v2" end`)
	err := m.Reload([]conf.Plugin{plugin("p", path), plugin("other", other)})
	if err == nil || !strings.Contains(err.Error(), "p.lua:3:") {
		t.Fatalf("reload of a broken script: %v, want an error naming p.lua:3", err)
	}
	if !containsAll(logs.String(), "plugins not reloaded: the running plugins are kept", "p.lua:3:") {
		t.Errorf("the refusal is not logged with the line:\n%s", logs)
	}
	if got := answer(m); got != "deny v1" {
		t.Errorf("after the failed reload: %q, want the old script's answer", got)
	}
	if d := m.OnSubscribe(ctx, testClient, &event.Subscription{Filter: "a"}); d.Reason != "other v1" {
		t.Errorf("the other plugin answers %q after the failed reload, want other v1", d.Reason)
	}

	// A script whose init fails is refused the same way.
	writeScript(t, dir, "p.lua", `function init() error("no database") end function on_publish() return false, "v2" end`)
	if err := m.Reload([]conf.Plugin{plugin("p", path)}); err == nil || !strings.Contains(err.Error(), "no database") {
		t.Fatalf("reload with a failing init: %v", err)
	}
	if got := answer(m); got != "deny v1" {
		t.Errorf("after the failed init: %q, want the old script's answer", got)
	}

	writeScript(t, dir, "p.lua", `function on_publish() return false, "v2" end`)
	load(t, m, plugin("p", path))
	if got := answer(m); got != "deny v2" {
		t.Errorf("after a good reload: %q, want deny v2", got)
	}
	if d := m.OnSubscribe(ctx, testClient, &event.Subscription{Filter: "a"}); d.Verdict != event.Pass {
		t.Errorf("the removed plugin still answers: %+v", d)
	}
}

func TestReloadWaitsForCallsInFlight(t *testing.T) {
	dir := t.TempDir()
	m := newManager(t, Options{})
	path := writeScript(t, dir, "p.lua", `
function on_publish(client, msg)
  if msg.topic == "slow" then
    local t = os.clock()
    while os.clock() - t < 0.3 do end
  end
  return false, "v1"
end`)
	p := plugin("p", path)
	p.Timeout.Duration = 2 * time.Second
	load(t, m, p)
	old := m.cur.Load()
	slow := testMessage()
	slow.Topic = "slow"
	result := make(chan string)
	go func() {
		d := m.OnPublish(ctx, testClient, slow)
		result <- d.Verdict.String() + " " + d.Reason
	}()
	eventually(t, "the slow call to start", func() bool { return old.refs.Load() == 1 })

	writeScript(t, dir, "p.lua", `function on_publish() return false, "v2" end`)
	load(t, m, p)
	if got := answer(m); got != "deny v2" {
		t.Errorf("a new call during the old one: %q, want deny v2", got)
	}
	var closed atomic.Bool
	go func() {
		<-old.all[0].gates.done
		closed.Store(true)
	}()
	if closed.Load() {
		t.Error("the old VMs were closed while a call was running on them")
	}
	if got := <-result; got != "deny v1" {
		t.Errorf("the call in flight answered %q, want deny v1 (the old script, to its end)", got)
	}
	eventually(t, "the old plugin to close", closed.Load)
}

func TestConcurrentCallsAndReloads(t *testing.T) {
	dir := t.TempDir()
	m := newManager(t, Options{})
	path := writeScript(t, dir, "p.lua", `function on_publish(c, m) return true end`)
	load(t, m, plugin("p", path))
	stop := make(chan struct{})
	errs := make(chan string, 4)
	for range 4 {
		go func() {
			for {
				select {
				case <-stop:
					errs <- ""
					return
				default:
				}
				if d := m.OnPublish(ctx, testClient, testMessage()); d.Verdict != event.Allow {
					errs <- d.Verdict.String() + " " + d.Reason
					return
				}
			}
		}()
	}
	for range 20 {
		load(t, m, plugin("p", path))
	}
	close(stop)
	for range 4 {
		if e := <-errs; e != "" {
			t.Errorf("a call during reloads answered %s", e)
		}
	}
}

// TestObserverSurvivesReload: reloading a plugin with the same observer
// settings keeps its event queue, so no event is lost or seen twice.
func TestObserverSurvivesReload(t *testing.T) {
	p := scriptPlugin(t, "count", `
local kv = require("kv")
function on_message(msg) kv.incr("seen:" .. msg.payload) kv.incr("seen") end`)
	b := startBroker(t, p)
	pub := mustV5(t, b.addr, "pub")
	const n = 200
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 10 {
			if err := b.m.Reload([]conf.Plugin{p}); err != nil {
				t.Errorf("reload: %v", err)
				return
			}
		}
	}()
	for i := range n {
		pub.publish(t, &paho.Publish{Topic: "t", QoS: 1, Payload: []byte(fmt.Sprint(i))})
	}
	<-done
	eventually(t, "every message observed", func() bool { return b.m.KV().Get("seen").String() == fmt.Sprint(n) })
	for i := range n {
		if got := b.m.KV().Get("seen:" + fmt.Sprint(i)).String(); got != "1" {
			t.Fatalf("message %d seen %s times, want 1", i, got)
		}
	}
	if st := b.m.Stats()[0]; st.ObserverDropped != 0 {
		t.Errorf("dropped %d", st.ObserverDropped)
	}
}

// TestCloseLeavesNoGoroutine: after Close, the watchdog, observer workers,
// VM replacements and retired sets are all gone.
func TestCloseLeavesNoGoroutine(t *testing.T) {
	before := runtime.NumGoroutine()
	bus := event.NewBus(nil)
	m := New(Options{Bus: bus})
	dir := t.TempDir()
	p := plugin("p", writeScript(t, dir, "p.lua", `
function on_publish(c, msg) if msg.topic == "loop" then while true do end end return true end
function on_message(msg) end`))
	p.Timeout.Duration = 20 * time.Millisecond
	load(t, m, p)
	load(t, m, p)
	loop := testMessage()
	loop.Topic = "loop"
	m.OnPublish(ctx, testClient, loop) // discards a VM: a replacement starts
	for range 10 {
		bus.Emit(&event.Event{Kind: event.Publish, Client: testClient, Message: testMessage()})
	}
	if err := m.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
}
