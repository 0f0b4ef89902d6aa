package plugins

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/tidemq/tide/conf"
)

func scriptPlugin(t *testing.T, name, src string, edit ...func(*conf.Plugin)) conf.Plugin {
	t.Helper()
	p := plugin(name, writeScript(t, t.TempDir(), name+".lua", src))
	for _, e := range edit {
		e(&p)
	}
	return p
}

func TestDenyGetsPuback87(t *testing.T) {
	b := startBroker(t, scriptPlugin(t, "acl", `
function on_publish(client, msg)
  if msg.topic:sub(1, 7) ~= "public/" then
    return false, "only public/ topics"
  end
end`))
	sub := mustV5(t, b.addr, "sub")
	sub.subscribe(t, "#", 1)
	pub := mustV5(t, b.addr, "pub")

	if rc := pub.publish(t, &paho.Publish{Topic: "private/x", QoS: 1, Payload: []byte("no")}); rc != 0x87 {
		t.Errorf("PUBACK of a denied publish: 0x%02x, want 0x87 (not authorized)", rc)
	}
	if rc := pub.publish(t, &paho.Publish{Topic: "public/x", QoS: 1, Payload: []byte("yes")}); rc != 0 {
		t.Errorf("PUBACK of an allowed publish: 0x%02x, want 0", rc)
	}
	if m := sub.recv(t); m.Topic != "public/x" {
		t.Errorf("received %s, want public/x only", m.Topic)
	}
	sub.none(t, 100*time.Millisecond)
	if st := b.m.Stats()[0].Hooks["on_publish"]; st.Denied != 1 || st.Calls != 2 {
		t.Errorf("stats %+v, want 2 calls, 1 denied", st)
	}
}

func TestDropAndRewriteThroughBroker(t *testing.T) {
	b := startBroker(t, scriptPlugin(t, "transform", `
function on_publish(client, msg)
  if msg.topic == "spam" then return "drop" end
  if msg.topic == "legacy/temp" then
    return {topic = "site/temp", payload = msg.payload .. "C", properties = {user = {{key = "via", value = "tide"}}}}
  end
end`))
	sub := mustV5(t, b.addr, "sub")
	sub.subscribe(t, "#", 1)
	pub := mustV5(t, b.addr, "pub")
	if rc := pub.publish(t, &paho.Publish{Topic: "spam", QoS: 1, Payload: []byte("x")}); rc != 0 {
		t.Errorf("PUBACK of a dropped message: 0x%02x, want 0 (the publisher is not told)", rc)
	}
	pub.publish(t, &paho.Publish{Topic: "legacy/temp", QoS: 1, Payload: []byte("21")})
	m := sub.recv(t)
	if m.Topic != "site/temp" || string(m.Payload) != "21C" {
		t.Errorf("received %s %q, want site/temp 21C", m.Topic, m.Payload)
	}
	if m.Properties == nil || len(m.Properties.User) != 1 || m.Properties.User[0].Key != "via" {
		t.Errorf("user properties %+v, want via=tide", m.Properties)
	}
	sub.none(t, 100*time.Millisecond)
}

func TestConnectAndSubscribeThroughBroker(t *testing.T) {
	b := startBroker(t, scriptPlugin(t, "auth", `
function on_connect(client)
  if client.username == "mallory" then return {allow = false, code = 0x8A, reason = "banned"} end
  if client.password ~= "pw-" .. client.username then return false, "bad password" end
  return {allow = true, attrs = {tenant = client.username .. "-corp"}}
end
function on_subscribe(client, sub)
  if sub.filter == "#" then return false end
  if sub.filter:sub(1, 5) == "slow/" then return 0 end
end
function on_publish(client, msg)
  -- attrs from on_connect: a client may publish only under its tenant.
  if msg.topic:sub(1, #client.attrs.tenant + 1) ~= client.attrs.tenant .. "/" then
    return false, "not your tenant"
  end
end`))
	_, ack, err := dialV5(t, b.addr, &paho.Connect{ClientID: "m", CleanStart: true, Username: "mallory", UsernameFlag: true})
	if err == nil || ack == nil || ack.ReasonCode != 0x8A {
		t.Errorf("banned user: err %v, CONNACK %+v, want refused with 0x8A", err, ack)
	}
	_, ack, err = dialV5(t, b.addr, &paho.Connect{ClientID: "w", CleanStart: true, Username: "bob", UsernameFlag: true, Password: []byte("wrong"), PasswordFlag: true})
	if err == nil || ack == nil || ack.ReasonCode != 0x87 {
		t.Errorf("wrong password: err %v, CONNACK %+v, want refused with 0x87", err, ack)
	}
	if _, err := dialV3(t, b.addr, "v3", "bob", "wrong"); err == nil {
		t.Error("an MQTT 3.1.1 client with a wrong password connected")
	}
	c, _, err := dialV5(t, b.addr, &paho.Connect{ClientID: "bob1", CleanStart: true, Username: "bob", UsernameFlag: true, Password: []byte("pw-bob"), PasswordFlag: true})
	if err != nil {
		t.Fatalf("bob: %v", err)
	}
	sa := c.subscribe(t, "#", 1)
	if sa.Reasons[0] != 0x87 {
		t.Errorf("SUBACK for #: 0x%02x, want 0x87", sa.Reasons[0])
	}
	if sa := c.subscribe(t, "slow/+", 2); sa.Reasons[0] != 0 {
		t.Errorf("SUBACK for slow/+: 0x%02x, want QoS 0 granted", sa.Reasons[0])
	}
	if sa := c.subscribe(t, "bob-corp/#", 1); sa.Reasons[0] != 1 {
		t.Errorf("SUBACK for bob-corp/#: 0x%02x, want QoS 1", sa.Reasons[0])
	}
	if rc := c.publish(t, &paho.Publish{Topic: "alice-corp/x", QoS: 1}); rc != 0x87 {
		t.Errorf("publish to another tenant: 0x%02x, want 0x87", rc)
	}
	if rc := c.publish(t, &paho.Publish{Topic: "bob-corp/x", QoS: 1, Payload: []byte("hi")}); rc != 0 {
		t.Errorf("publish to its tenant: 0x%02x, want 0", rc)
	}
	if m := c.recv(t); m.Topic != "bob-corp/x" {
		t.Errorf("received %s", m.Topic)
	}
}

// TestEndlessLoopWhileOthersAreServed runs a script that loops forever for
// one client's messages: each of those calls is cut at the timeout, while
// another client's messages keep flowing through the same plugin.
func TestEndlessLoopWhileOthersAreServed(t *testing.T) {
	b := startBroker(t, scriptPlugin(t, "loop", `
function on_publish(client, msg)
  if msg.topic == "loop" then
    while true do end
  end
  return true
end`, func(p *conf.Plugin) { p.Timeout.Duration = 100 * time.Millisecond; p.Pool = 2 }))
	sub := mustV5(t, b.addr, "sub")
	sub.subscribe(t, "ok/#", 1)
	bad := mustV5(t, b.addr, "bad")
	good := mustV5(t, b.addr, "good")

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 5 {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			r, _ := bad.Publish(ctx, &paho.Publish{Topic: "loop", QoS: 1})
			cancel()
			if r == nil || r.ReasonCode != 0x87 {
				t.Errorf("looping publish: %+v, want PUBACK 0x87 (fail closed)", r)
			}
		}
	}()
	start := time.Now()
	for i := range 50 {
		if rc := good.publish(t, &paho.Publish{Topic: "ok/" + fmt.Sprint(i), QoS: 1}); rc != 0 {
			t.Fatalf("publish %d: 0x%02x", i, rc)
		}
		if m := sub.recv(t); m.Topic != "ok/"+fmt.Sprint(i) {
			t.Fatalf("received %s, want ok/%d", m.Topic, i)
		}
	}
	served := time.Since(start)
	wg.Wait()
	st := b.m.Stats()[0]
	if st.Hooks["on_publish"].Timeouts != 5 {
		t.Errorf("timeouts = %d, want 5", st.Hooks["on_publish"].Timeouts)
	}
	// 5 loops of 100ms each hold one VM at most; the other kept serving.
	if served > 3*time.Second {
		t.Errorf("50 round trips took %v while another client looped", served)
	}
	t.Logf("50 round trips in %v while 5 calls looped into their 100ms timeout", served)
}

func TestObserversThroughBroker(t *testing.T) {
	b := startBroker(t, scriptPlugin(t, "obs", `
local broker = require("broker")
local kv = require("kv")
function on_message(msg)
  if msg.topic:sub(1, 8) == "sensors/" then
    kv.incr("seen")
    broker.publish("observed/" .. msg.topic, msg.client_id .. ":" .. msg.payload, {qos = 1})
  end
end
function on_disconnect(client, info)
  kv.set("gone:" .. client.id, tostring(info.graceful) .. ":" .. info.reason .. ":" .. tostring(client.attrs.role))
end
function on_connect(client) return {allow = true, attrs = {role = "sensor"}} end`))
	sub := mustV5(t, b.addr, "sub")
	sub.subscribe(t, "observed/#", 1)
	pub := mustV5(t, b.addr, "pub")
	pub.publish(t, &paho.Publish{Topic: "sensors/t", QoS: 1, Payload: []byte("21")})
	if m := sub.recv(t); m.Topic != "observed/sensors/t" || string(m.Payload) != "pub:21" {
		t.Errorf("observer published %s %q, want observed/sensors/t pub:21", m.Topic, m.Payload)
	}
	_ = pub.Disconnect(&paho.Disconnect{})
	eventually(t, "on_disconnect", func() bool { return b.m.KV().Get("gone:pub").String() != "nil" })
	if got := b.m.KV().Get("gone:pub").String(); !strings.HasPrefix(got, "true:") || !strings.HasSuffix(got, ":sensor") {
		t.Errorf("on_disconnect recorded %q, want graceful with the client's attrs", got)
	}
}

func TestFullObserverQueueIsCounted(t *testing.T) {
	b := startBroker(t, scriptPlugin(t, "slow", `
function on_message(msg)
  local t = os.clock()
  while os.clock() - t < 0.02 do end
end`, func(p *conf.Plugin) { p.QueueSize = 2; p.Pool = 1; p.Timeout.Duration = time.Second }))
	pub := mustV5(t, b.addr, "pub")
	const n = 50
	for i := range n {
		pub.publish(t, &paho.Publish{Topic: "t", QoS: 1, Payload: []byte(fmt.Sprint(i))})
	}
	var st PluginStats
	eventually(t, "every message observed or dropped", func() bool {
		st = b.m.Stats()[0]
		return st.Hooks["on_message"].Calls+st.ObserverDropped == n && st.ObserverQueued == 0
	})
	if st.ObserverDropped == 0 {
		t.Errorf("no drop counted with a queue of 2 and a 20ms observer: %+v", st)
	}
	sys := map[string]string{}
	b.m.SysValues(func(topic, value string) { sys[topic] = value })
	if got, want := sys["plugins/slow/events/dropped"], fmt.Sprint(st.ObserverDropped); got != want {
		t.Errorf("$SYS plugins/slow/events/dropped = %s, want %s", got, want)
	}
	if !strings.Contains(b.logs.String(), "event queue full, events dropped") {
		t.Errorf("the drops were not logged:\n%s", b.logs)
	}
	t.Logf("%d observed, %d dropped", st.Hooks["on_message"].Calls, st.ObserverDropped)
}

func TestBrokerModuleThroughBroker(t *testing.T) {
	b := startBroker(t, scriptPlugin(t, "mod", `
local broker = require("broker")
function on_publish(client, msg)
  if msg.topic == "whoami" then
    local info = broker.client(client.id)
    broker.publish("answer/" .. client.id, info.id .. " " .. info.protocol .. " " .. #info.subscriptions, {retain = true})
    return "drop"
  end
  if msg.topic == "kick-me" then
    broker.disconnect(client.id, "asked for it")
    return "drop"
  end
  if msg.topic == "read" then
    local m = broker.retained("answer/" .. client.id)
    broker.publish("answer/read", m and m.payload or "none")
    return "drop"
  end
end`))
	c := mustV5(t, b.addr, "me")
	c.subscribe(t, "answer/#", 0)
	c.publish(t, &paho.Publish{Topic: "whoami", QoS: 1})
	if m := c.recv(t); m.Topic != "answer/me" || string(m.Payload) != "me 5 1" {
		t.Errorf("whoami: %s %q, want answer/me \"me 5 1\"", m.Topic, m.Payload)
	}
	c.publish(t, &paho.Publish{Topic: "read", QoS: 1})
	if m := c.recv(t); string(m.Payload) != "me 5 1" {
		t.Errorf("retained read back %q", m.Payload)
	}
	// A hook disconnecting its own client must not wait for itself. QoS 0:
	// the client is gone before any acknowledgement could reach it.
	c.publish(t, &paho.Publish{Topic: "kick-me", QoS: 0})
	eventually(t, "the client to be disconnected", func() bool {
		_, ok := b.srv.Client("me")
		return !ok
	})
}
