package scheduler

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/tidemq/tide/conf"
	"github.com/tidemq/tide/core"
	"github.com/tidemq/tide/core/event"
)

// fakeClock is a Clock that moves only when told. Timers fire, in order of
// their time, as Advance passes them.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	clk *fakeClock
	at  time.Time
	c   chan time.Time
}

func newFakeClock(t time.Time) *fakeClock { return &fakeClock{now: t} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{clk: c, at: c.now.Add(d), c: make(chan time.Time, 1)}
	if d <= 0 {
		t.c <- c.now
		return t
	}
	c.timers = append(c.timers, t)
	return t
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

func (t *fakeTimer) Stop() bool {
	c := t.clk
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, o := range c.timers {
		if o == t {
			c.timers = append(c.timers[:i], c.timers[i+1:]...)
			return true
		}
	}
	return false
}

// Advance moves the clock forward by d, firing the timers it passes.
func (c *fakeClock) Advance(d time.Duration) { c.AdvanceTo(c.Now().Add(d)) }

// AdvanceTo moves the clock to t (if later), firing the timers it passes,
// each with the clock set to its time.
func (c *fakeClock) AdvanceTo(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		sort.SliceStable(c.timers, func(i, j int) bool { return c.timers[i].at.Before(c.timers[j].at) })
		if len(c.timers) == 0 || c.timers[0].at.After(t) {
			break
		}
		tm := c.timers[0]
		c.timers = c.timers[1:]
		if tm.at.After(c.now) {
			c.now = tm.at
		}
		tm.c <- c.now
	}
	if t.After(c.now) {
		c.now = t
	}
}

// Earliest returns the time of the first timer waiting (zero when none).
func (c *fakeClock) Earliest() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	var first time.Time
	for _, t := range c.timers {
		if first.IsZero() || t.at.Before(first) {
			first = t.at
		}
	}
	return first
}

// TimerAt reports whether a timer waits for exactly t.
func (c *fakeClock) TimerAt(t time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, tm := range c.timers {
		if tm.at.Equal(t) {
			return true
		}
	}
	return false
}

// Timers returns the number of timers waiting.
func (c *fakeClock) Timers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// t0 is a Monday, midnight UTC.
var t0 = time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)

// eventually polls cond until it holds, failing the test after 10s.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(200 * time.Microsecond)
	}
}

type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// env is a scheduler on a fake clock with a folder for scripts.
type env struct {
	t    *testing.T
	clk  *fakeClock
	s    *Scheduler
	dir  string
	logs *logBuffer
	opts Options
}

func newEnv(t *testing.T, edit ...func(*Options)) *env {
	t.Helper()
	e := &env{t: t, clk: newFakeClock(t0), dir: t.TempDir(), logs: &logBuffer{}}
	e.opts = Options{
		Logger: slog.New(slog.NewTextHandler(io.MultiWriter(e.logs, testWriter{t}), &slog.HandlerOptions{Level: slog.LevelDebug})),
		Clock:  e.clk,
	}
	for _, f := range edit {
		f(&e.opts)
	}
	e.start()
	return e
}

// start makes a new scheduler with the env's options (a restart).
func (e *env) start() {
	e.s = New(e.opts)
	s := e.s
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			e.t.Errorf("Close: %v", err)
		}
	})
}

// stop closes the scheduler, as the broker does when it stops.
func (e *env) stop() {
	e.t.Helper()
	if err := e.s.Close(context.Background()); err != nil {
		e.t.Fatalf("Close: %v", err)
	}
}

// testWriter sends log lines to the test's log, shown on failure.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (e *env) script(name, src string) string {
	e.t.Helper()
	p := filepath.Join(e.dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		e.t.Fatal(err)
	}
	return p
}

func job(name, script string, every time.Duration) conf.Job {
	return conf.Job{Name: name, Script: script, Every: conf.Duration{Duration: every}, Timeout: conf.Duration{Duration: 10 * time.Second}}
}

func (e *env) load(jobs ...conf.Job) {
	e.t.Helper()
	if err := e.s.Reload(jobs); err != nil {
		e.t.Fatalf("Reload: %v", err)
	}
}

func (e *env) status(name string) JobStatus {
	e.t.Helper()
	st, ok := e.s.Job(name)
	if !ok {
		e.t.Fatalf("no job %q", name)
	}
	return st
}

// armed waits for the job's loop to wait for its first due time.
func (e *env) armed(name string) {
	e.t.Helper()
	eventually(e.t, "the job to wait for its first run", func() bool {
		return !e.status(name).NextRun.IsZero() && e.clk.Timers() > 0
	})
}

// next advances the clock to the job's next due time and waits for the run
// it starts to end; it returns the status after the run.
func (e *env) next(name string) JobStatus {
	e.t.Helper()
	before := e.status(name)
	var due time.Time
	// Its own timer, not just any: a job that read the clock before the
	// advance and armed its timer after would wait a whole period more.
	eventually(e.t, "the job's next due time", func() bool {
		due = e.status(name).NextRun
		return due.After(before.LastScheduled) && e.clk.TimerAt(due)
	})
	e.clk.AdvanceTo(due)
	var st JobStatus
	eventually(e.t, "the run to end", func() bool {
		st = e.status(name)
		return st.Runs+st.Skipped > before.Runs+before.Skipped && !st.Running
	})
	return st
}

// realBroker adapts a real broker to Broker, as cmd/tide does.
type realBroker struct{ s *core.Server }

func (b realBroker) Publish(m event.Message) error {
	_, err := b.s.PublishEvent(m)
	return err
}

func (b realBroker) Retained(topic string) (event.Message, bool) { return b.s.RetainedEvent(topic) }
func (b realBroker) Client(id string) (event.ClientInfo, bool)   { return b.s.Client(id) }
func (b realBroker) Disconnect(id, reason string) bool           { return b.s.DisconnectClient(id, reason) }

func (b realBroker) RetainedMatch(filter string, limit int) []event.Message {
	var out []event.Message
	for _, m := range b.s.RetainedMatch(filter, limit) {
		if em, ok := b.s.RetainedEvent(m.Topic); ok {
			out = append(out, em)
		}
	}
	return out
}

func (b realBroker) Stats() map[string]float64 {
	st := b.s.Stats()
	return map[string]float64{"clients_connected": float64(st.ClientsConnected), "retained": float64(st.Retained),
		"messages_received": float64(st.MessagesReceived)}
}

// startBroker runs a real broker on 127.0.0.1:0.
func startBroker(t *testing.T) (*core.Server, string) {
	t.Helper()
	srv := core.New(core.Options{SysInterval: -1}, slog.New(slog.DiscardHandler))
	addr, err := srv.ListenTCP("127.0.0.1:0", core.ListenerOptions{Name: "test", AllowAnonymous: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return srv, addr.String()
}

// mqttClient is a real MQTT 5 client (paho) that collects what it receives.
type mqttClient struct {
	*paho.Client
	msgs chan *paho.Publish
}

func dial(t *testing.T, addr, id string) *mqttClient {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := &mqttClient{msgs: make(chan *paho.Publish, 1000)}
	c.Client = paho.NewClient(paho.ClientConfig{
		ClientID: id,
		Conn:     conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			c.msgs <- pr.Packet
			return true, nil
		}},
		OnClientError: func(error) {},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30}); err != nil {
		t.Fatalf("connect %s: %v", id, err)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c
}

func (c *mqttClient) subscribe(t *testing.T, filter string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}}); err != nil {
		t.Fatalf("subscribe %s: %v", filter, err)
	}
}

func (c *mqttClient) publish(t *testing.T, topic, payload string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Publish(ctx, &paho.Publish{Topic: topic, Payload: []byte(payload), QoS: 1}); err != nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
}

// recv returns the next message, failing after 5s.
func (c *mqttClient) recv(t *testing.T) *paho.Publish {
	t.Helper()
	select {
	case m := <-c.msgs:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no message within 5s")
	}
	return nil
}

// notice decodes an alert notice.
func notice(t *testing.T, payload []byte) Notice {
	t.Helper()
	var n Notice
	if err := json.Unmarshal(payload, &n); err != nil {
		t.Fatalf("notice %q: %v", payload, err)
	}
	return n
}

// hookServer is a webhook receiver; fail makes it answer 500 that many
// times first.
type hookServer struct {
	*httptest.Server
	mu      sync.Mutex
	bodies  [][]byte
	headers []http.Header
	fail    int
	calls   int
}

func newHookServer(t *testing.T, fail int) *hookServer {
	h := &hookServer{fail: fail}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		defer h.mu.Unlock()
		h.calls++
		if h.fail > 0 {
			h.fail--
			http.Error(w, "not now", http.StatusServiceUnavailable)
			return
		}
		h.bodies = append(h.bodies, body)
		h.headers = append(h.headers, r.Header.Clone())
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *hookServer) received() [][]byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([][]byte(nil), h.bodies...)
}

func (h *hookServer) callCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.calls
}
