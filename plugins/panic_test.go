package plugins

import (
	"strings"
	"testing"

	"github.com/eclipse/paho.golang/paho"

	"github.com/tidemq/tide/core/event"
)

type panickingSink struct{}

func (panickingSink) Write(string, map[string]any) error { panic("sink exploded") }

type recordingSink struct{ recs chan map[string]any }

func (r recordingSink) Write(name string, rec map[string]any) error {
	rec["_sink"] = name
	r.recs <- rec
	return nil
}

// TestGoPanicInsideAHook: a panic in Go code called by a script (here a
// sink) fails the call like a Lua error; the broker keeps serving.
func TestGoPanicInsideAHook(t *testing.T) {
	b := startBroker(t, scriptPlugin(t, "p", `
local sink = require("sink")
function on_publish(client, msg)
  if msg.topic == "boom" then sink.write("s", {x = 1}) end
  return true
end`))
	b.m.SetSinkWriter(panickingSink{})
	c := mustV5(t, b.addr, "c")
	if rc := c.publish(t, &paho.Publish{Topic: "boom", QoS: 1}); rc != 0x87 {
		t.Errorf("PUBACK after a panic in the hook: 0x%02x, want 0x87 (fail closed)", rc)
	}
	if rc := c.publish(t, &paho.Publish{Topic: "fine", QoS: 1}); rc != 0x10 {
		t.Errorf("next publish: 0x%02x, want 0x10 (allowed, no subscribers)", rc)
	}
	if !containsAll(b.logs.String(), "sink exploded", "failure=error") {
		t.Errorf("the panic is not logged:\n%s", b.logs)
	}
}

func TestSinkModuleThroughManager(t *testing.T) {
	m, logs := withScript(t, `
local sink = require("sink")
function on_publish(client, msg)
  assert(sink.write("archive", {topic = msg.topic, client = client.id, size = #msg.payload}))
  return true
end`)
	// No datastore: the call fails loudly.
	if v := m.OnPublish(ctx, testClient, testMessage()).Verdict; v != event.Deny {
		t.Errorf("verdict without a datastore %v, want deny", v)
	}
	if !strings.Contains(logs.String(), "sink module: no datastore configured") {
		t.Errorf("log does not say the datastore is missing:\n%s", logs)
	}
	rs := recordingSink{recs: make(chan map[string]any, 1)}
	m.SetSinkWriter(rs)
	if v := m.OnPublish(ctx, testClient, testMessage()).Verdict; v != event.Allow {
		t.Errorf("verdict with a datastore %v, want allow", v)
	}
	rec := <-rs.recs
	if rec["_sink"] != "archive" || rec["topic"] != "devices/dev1/temp" || rec["client"] != "dev1" || rec["size"] != int64(10) {
		t.Errorf("record %v", rec)
	}
}
