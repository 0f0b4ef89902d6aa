package plugins

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	mqtt3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/tidemq/tide/conf"
	"github.com/tidemq/tide/core"
	"github.com/tidemq/tide/core/event"
)

// BenchmarkPublishThroughput measures messages per second from a real
// MQTT 3.1.1 publisher through a real broker to a real subscriber over
// loopback: without plugins, with an on_publish that returns true, and with
// scripts/acl_clientid.lua. The publisher keeps at most `window` messages
// between its publish and their delivery, so that QoS 0 is measured without
// loss and QoS 1 without waiting for each PUBACK.
//
//	go test -run '^$' -bench PublishThroughput -benchtime 100000x ./plugins/
func BenchmarkPublishThroughput(b *testing.B) {
	acl, err := os.ReadFile(filepath.Join("..", "scripts", "acl_clientid.lua"))
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	scripts := []struct{ name, src string }{
		{"none", ""},
		{"trivial", "function on_publish(client, msg) return true end"},
		{"acl_clientid", string(acl)},
	}
	for _, qos := range []byte{0, 1} {
		for _, s := range scripts {
			b.Run(fmt.Sprintf("qos%d/%s", qos, s.name), func(b *testing.B) {
				var cfgs []conf.Plugin
				if s.src != "" {
					cfgs = append(cfgs, plugin(s.name, writeScript(b, dir, s.name+".lua", s.src)))
				}
				benchPublish(b, qos, cfgs)
			})
		}
	}
}

func benchPublish(b *testing.B, qos byte, cfgs []conf.Plugin) {
	const window = 1000
	srv := core.New(core.Options{SysInterval: -1, MaxQueuedMessages: -1}, nil)
	m := New(Options{Bus: srv.Bus(), Broker: serverBroker{srv}})
	srv.SetGates(m, m, m)
	addr, err := srv.ListenTCP("127.0.0.1:0", core.ListenerOptions{Name: "bench", AllowAnonymous: true})
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		_ = m.Close(ctx)
	}()
	url := "tcp://" + addr.String()

	credits := make(chan struct{}, window)
	for range window {
		credits <- struct{}{}
	}
	var received atomic.Int64
	sub := mqtt3.NewClient(mqtt3.NewClientOptions().AddBroker(url).SetClientID("sub").SetProtocolVersion(4).
		SetAutoReconnect(false).SetOrderMatters(true))
	if tok := sub.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		b.Fatalf("subscriber: %v", tok.Error())
	}
	defer sub.Disconnect(0)
	// Subscribe before the plugins load: acl_clientid.lua would refuse a
	// subscription to another client's tree, and the publish path is what
	// is measured.
	if tok := sub.Subscribe("devices/pub/#", qos, func(mqtt3.Client, mqtt3.Message) {
		received.Add(1)
		credits <- struct{}{}
	}); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		b.Fatalf("subscribe: %v", tok.Error())
	}
	if err := m.Reload(cfgs); err != nil {
		b.Fatal(err)
	}
	pub := mqtt3.NewClient(mqtt3.NewClientOptions().AddBroker(url).SetClientID("pub").SetProtocolVersion(4).
		SetAutoReconnect(false))
	if tok := pub.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		b.Fatalf("publisher: %v", tok.Error())
	}
	defer pub.Disconnect(0)
	payload := []byte(`{"temp": 21.5, "unit": "C", "sensor": "pub-0001", "seq": 1234567}`)

	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	start := time.Now()
	for range b.N {
		select {
		case <-credits:
		case <-time.After(10 * time.Second):
			b.Fatalf("no delivery for 10s after %d messages (%d received)", b.N, received.Load())
		}
		pub.Publish("devices/pub/temp", qos, false, payload)
	}
	for received.Load() < int64(b.N) {
		if time.Since(start) > time.Minute {
			b.Fatalf("received %d of %d", received.Load(), b.N)
		}
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	cpu := cpuTime() - cpu0
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msg/s")
	// CPU time per message (broker and both clients: they share the
	// process) is steadier than throughput on a machine shared with
	// other work.
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/msg")
	for _, ps := range m.Stats() {
		if hs := ps.Hooks["on_publish"]; hs.Errors+hs.Timeouts+hs.Busy+hs.Denied > 0 {
			b.Fatalf("%s: %+v: the hook failed or denied during the benchmark", ps.Name, hs)
		}
	}
}

// BenchmarkOnPublish measures the gate alone, without the network: the
// cost a plugin adds to each PUBLISH on the client's goroutine.
//
//	go test -run '^$' -bench OnPublish ./plugins/
func BenchmarkOnPublish(b *testing.B) {
	acl, err := os.ReadFile(filepath.Join("..", "scripts", "acl_clientid.lua"))
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	for _, s := range []struct{ name, src string }{
		{"none", ""},
		{"trivial", "function on_publish(client, msg) return true end"},
		{"client_only", "function on_publish(client) return true end"},
		{"acl_clientid", string(acl)},
	} {
		b.Run(s.name, func(b *testing.B) {
			m := newManager(b, Options{})
			if s.src != "" {
				load(b, m, plugin(s.name, writeScript(b, dir, s.name+".lua", s.src)))
			}
			c := *testClient
			c.ID = "pub"
			msg := testMessage()
			msg.Topic = "devices/pub/temp"
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if d := m.OnPublish(ctx, &c, msg); d.Verdict == event.Deny {
						b.Fatalf("denied: %s (stats %+v)", d.Reason, m.Stats())
					}
				}
			})
		})
	}
}

// benchScripts are the hooks TestServeForBench can load: "trivial" returns
// true; "acl_like" does the work of acl_clientid.lua (a prefix built from
// the client id, compared with the topic) but objects to nothing, since
// tide-bench's client ids and topics are its own.
var benchScripts = map[string]string{
	"trivial": "function on_publish(client, msg) return true end",
	"acl_like": `
local subtree, count = {}, 0
local function owns(client, name)
  local own = subtree[client.id]
  if own == nil then
    if count >= 10000 then subtree, count = {}, 0 end
    own = "devices/" .. client.id .. "/"
    subtree[client.id], count = own, count + 1
  end
  return name:sub(1, #own) == own
end
function on_publish(client, msg)
  if owns(client, msg.topic) then return nil end
  return nil
end`,
}

type allowAll struct{}

func (allowAll) OnPublish(context.Context, *event.Client, *event.Message) event.PublishDecision {
	return event.PublishDecision{Verdict: event.Allow}
}

// TestServeForBench serves a broker with one of benchScripts (or none) for
// cmd/tide-bench to measure from another process, where the generator's
// CPU is not the broker's. It runs only when TIDE_PLUGINS_BENCH_ADDR is set,
// for TIDE_PLUGINS_BENCH_FOR (default 10m):
//
//	go test -c -o /tmp/plugins.test ./plugins/
//	TIDE_PLUGINS_BENCH_ADDR=127.0.0.1:18900 /tmp/plugins.test -test.run ServeForBench -test.timeout 0 &
//	TIDE_PLUGINS_BENCH_ADDR=127.0.0.1:18901 TIDE_PLUGINS_BENCH_SCRIPT=acl_like /tmp/plugins.test -test.run ServeForBench -test.timeout 0 &
//	tide-bench pairs --host 127.0.0.1:18900 --compare 127.0.0.1:18901 --pid ... --compare-pid ... --reps 5
func TestServeForBench(t *testing.T) {
	addr := os.Getenv("TIDE_PLUGINS_BENCH_ADDR")
	if addr == "" {
		t.Skip("set TIDE_PLUGINS_BENCH_ADDR to serve a broker for tide-bench")
	}
	d := 10 * time.Minute
	if v := os.Getenv("TIDE_PLUGINS_BENCH_FOR"); v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			t.Fatal(err)
		}
	}
	srv := core.New(core.Options{SysInterval: -1}, nil)
	m := New(Options{Bus: srv.Bus(), Broker: serverBroker{srv}})
	if name := os.Getenv("TIDE_PLUGINS_BENCH_SCRIPT"); name == "go" {
		// A publish gate in Go that allows everything: the broker's own
		// cost of consulting a gate, without Lua.
		srv.SetGates(nil, nil, allowAll{})
	} else if name != "" {
		src, ok := benchScripts[name]
		if !ok {
			t.Fatalf("TIDE_PLUGINS_BENCH_SCRIPT=%s: not one of go, trivial, acl_like", name)
		}
		p := plugin(name, writeScript(t, t.TempDir(), name+".lua", src))
		p.Pool = 0 // the default: GOMAXPROCS
		if v := os.Getenv("TIDE_PLUGINS_BENCH_POOL"); v != "" {
			if _, err := fmt.Sscan(v, &p.Pool); err != nil {
				t.Fatalf("TIDE_PLUGINS_BENCH_POOL: %v", err)
			}
		}
		load(t, m, p)
		srv.SetGates(m, m, m)
	}
	if _, err := srv.ListenTCP(addr, core.ListenerOptions{Name: "bench", AllowAnonymous: true}); err != nil {
		t.Fatal(err)
	}
	t.Logf("serving on %s for %v", addr, d)
	time.Sleep(d) // a server's lifetime, not a wait for a condition
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
	_ = m.Close(ctx)
	for _, ps := range m.Stats() {
		t.Logf("%s: %+v", ps.Name, ps.Hooks["on_publish"])
	}
}
