package plugins

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/tidemq/tide/conf"
	"github.com/tidemq/tide/core"
)

// logBuffer collects log lines for tests that check what was logged, and
// copies them to stderr when TIDE_TEST_LOG is set.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if os.Getenv("TIDE_TEST_LOG") != "" {
		os.Stderr.Write(p)
	}
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newLogger() (*slog.Logger, *logBuffer) {
	lb := &logBuffer{}
	return slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})), lb
}

// writeScript writes a script into dir (created if needed) and returns its path.
func writeScript(t testing.TB, dir, name, src string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// plugin returns a plugin configuration with test-friendly defaults.
func plugin(name, script string) conf.Plugin {
	return conf.Plugin{Name: name, Script: script, Timeout: conf.Duration{Duration: 200 * time.Millisecond}, Pool: 2, Fail: "closed", QueueSize: 1000}
}

// newManager returns a manager closed at the end of the test.
func newManager(t testing.TB, opts Options) *Manager {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger, _ = newLogger()
	}
	m := New(opts)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := m.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return m
}

// load reloads m with cfgs and fails the test on error.
func load(t testing.TB, m *Manager, cfgs ...conf.Plugin) {
	t.Helper()
	if err := m.Reload(cfgs); err != nil {
		t.Fatalf("Reload: %v", err)
	}
}

// testBroker is a real Tide broker on a loopback port with a plugin manager
// installed as its gates, observers and "broker" module.
type testBroker struct {
	srv  *core.Server
	m    *Manager
	addr string
	logs *logBuffer
}

func startBroker(t testing.TB, cfgs ...conf.Plugin) *testBroker {
	t.Helper()
	return startBrokerWith(t, core.Options{}, cfgs...)
}

func startBrokerWith(t testing.TB, opts core.Options, cfgs ...conf.Plugin) *testBroker {
	t.Helper()
	if opts.SysInterval == 0 {
		opts.SysInterval = -1
	}
	lg, lb := newLogger()
	srv := core.New(opts, lg)
	m := newManager(t, Options{Logger: lg, Bus: srv.Bus(), Broker: serverBroker{srv}})
	if len(cfgs) > 0 {
		load(t, m, cfgs...)
	}
	srv.SetGates(m, m, m)
	srv.AddSysSource(m.SysValues)
	addr, err := srv.ListenTCP("127.0.0.1:0", core.ListenerOptions{Name: "test", AllowAnonymous: true})
	if err != nil {
		t.Fatal(err)
	}
	// Registered after newManager's cleanup, so it runs first: the broker
	// stops before the plugins it calls.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return &testBroker{srv: srv, m: m, addr: addr.String(), logs: lb}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// v5 is a paho.golang client with the messages it received.
type v5 struct {
	*paho.Client
	msgs chan *paho.Publish
}

// dialV5 connects an MQTT 5 client; it returns the CONNACK and the error
// (a refused CONNECT is an error with the CONNACK set).
func dialV5(t testing.TB, addr string, cp *paho.Connect) (*v5, *paho.Connack, error) {
	t.Helper()
	return dialV5Auth(t, addr, cp, nil)
}

// dialV5Auth is dialV5 with an MQTT 5 enhanced authentication handler.
func dialV5Auth(t testing.TB, addr string, cp *paho.Connect, auth paho.Auther) (*v5, *paho.Connack, error) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := &v5{msgs: make(chan *paho.Publish, 1000)}
	c.Client = paho.NewClient(paho.ClientConfig{
		ClientID:    cp.ClientID,
		Conn:        conn,
		AuthHandler: auth,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			c.msgs <- pr.Packet
			return true, nil
		}},
		OnClientError: func(error) {},
	})
	if cp.KeepAlive == 0 {
		cp.KeepAlive = 30
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ack, err := c.Connect(ctx, cp)
	if err != nil {
		conn.Close()
		return nil, ack, err
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c, ack, nil
}

func mustV5(t testing.TB, addr, id string) *v5 {
	t.Helper()
	c, _, err := dialV5(t, addr, &paho.Connect{ClientID: id, CleanStart: true})
	if err != nil {
		t.Fatalf("connect %s: %v", id, err)
	}
	return c
}

func (c *v5) subscribe(t testing.TB, filter string, qos byte) *paho.Suback {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sa, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: qos}}})
	if err != nil && sa == nil {
		t.Fatalf("subscribe %s: %v", filter, err)
	}
	return sa
}

// publish sends a message; for QoS 1 it returns the PUBACK's reason code.
func (c *v5) publish(t testing.TB, p *paho.Publish) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := c.Publish(ctx, p)
	if r == nil {
		if err != nil {
			t.Fatalf("publish %s: %v", p.Topic, err)
		}
		return 0
	}
	return r.ReasonCode
}

func (c *v5) recv(t testing.TB) *paho.Publish {
	t.Helper()
	select {
	case m := <-c.msgs:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no message within 5s")
	}
	return nil
}

// none requires that no message arrives within d.
func (c *v5) none(t testing.TB, d time.Duration) {
	t.Helper()
	select {
	case m := <-c.msgs:
		t.Fatalf("unexpected message %s %q", m.Topic, m.Payload)
	case <-time.After(d):
	}
}

// dialV3 connects an MQTT 3.1.1 client with paho.mqtt.golang.
func dialV3(t testing.TB, addr, id, user, pass string) (mqtt3.Client, error) {
	t.Helper()
	o := mqtt3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetProtocolVersion(4).
		SetAutoReconnect(false).SetConnectRetry(false).SetCleanSession(true).SetKeepAlive(30 * time.Second).
		SetConnectTimeout(5 * time.Second)
	if user != "" {
		o.SetUsername(user).SetPassword(pass)
	}
	c := mqtt3.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		t.Fatalf("v3 connect %s: no answer", id)
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c, nil
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
