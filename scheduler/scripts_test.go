package scheduler

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tidemq/tide/conf"
	"github.com/tidemq/tide/core"
	"github.com/tidemq/tide/datastore"
	"github.com/tidemq/tide/datastore/postgres/pgtest"
	"github.com/tidemq/tide/scheduler/window"

	_ "github.com/tidemq/tide/datastore/postgres"
)

// exampleConfig is the room-temperature example as tide.toml documents it.
const exampleConfig = `
[[aggregate]]
name = "temperature"
topics = ["home/+/temperature"]
windows = ["1m", "5m", "10m"]

[[job]]
name = "room-temperature"
script = %q
every = "1m"
[job.settings]
threshold = 30.0
`

// roomWorld is a broker with a sensor publisher, a dashboard subscribed
// to the alerts, a webhook receiver and a scheduler on a fake clock.
type roomWorld struct {
	*env
	srv       *core.Server
	sensor    *mqttClient
	dashboard *mqttClient
	hook      *hookServer
}

func newRoomWorld(t *testing.T, start time.Time, edit func(*Options)) *roomWorld {
	srv, addr := startBroker(t)
	w := &roomWorld{srv: srv, sensor: dial(t, addr, "sensor"), dashboard: dial(t, addr, "dashboard"), hook: newHookServer(t, 0)}
	w.dashboard.subscribe(t, "tide/alerts/#")
	clk := newFakeClock(start)
	w.env = newEnv(t, func(o *Options) {
		o.Clock, o.Broker = clk, realBroker{srv}
		o.Alert = conf.Alert{TopicPrefix: "tide/alerts", ResolvedRetain: conf.Duration{Duration: time.Hour},
			Webhooks: []conf.Webhook{{URL: w.hook.URL, Timeout: conf.Duration{Duration: 5 * time.Second}}}}
		edit(o)
	})
	w.clk = clk
	return w
}

// publish sends readings: pairs of room and payload.
func (w *roomWorld) publish(readings ...string) {
	for i := 0; i+1 < len(readings); i += 2 {
		w.sensor.publish(w.t, "home/"+readings[i]+"/temperature", readings[i+1])
	}
}

// expect checks the next alert notice on MQTT and on the webhook.
func (w *roomWorld) expect(n int, status, room string, message ...string) Notice {
	w.t.Helper()
	m := w.dashboard.recv(w.t)
	got := notice(w.t, m.Payload)
	if m.Topic != "tide/alerts/high-temperature-"+room || got.Status != status || got.Labels["room"] != room && status == StatusFiring {
		w.t.Fatalf("notice on %s: %+v, want %s for %s", m.Topic, got, status, room)
	}
	for _, s := range message {
		if !strings.Contains(got.Message, s) {
			w.t.Errorf("message %q lacks %q", got.Message, s)
		}
	}
	eventually(w.t, fmt.Sprintf("webhook notice %d", n), func() bool { return len(w.hook.received()) >= n })
	if body := w.hook.received()[n-1]; string(body) != string(m.Payload) {
		w.t.Errorf("webhook notice %d = %s, want %s", n, body, m.Payload)
	}
	return got
}

// TestRoomTemperatureExample runs scripts/alerts/room_temperature.lua as
// documented: sensors publish over MQTT, the live windows average them,
// the job fires and resolves high-temperature-{room}, seen by a real MQTT
// subscriber and a webhook.
func TestRoomTemperatureExample(t *testing.T) {
	script, _ := filepath.Abs("../scripts/alerts/room_temperature.lua")
	cfg, err := conf.Parse("tide.toml", fmt.Appendf(nil, exampleConfig, script))
	if err != nil {
		t.Fatal(err)
	}
	var win *window.Store
	w := newRoomWorld(t, t0, func(o *Options) {
		win, err = window.New(cfg.Aggregates, window.Options{Now: o.Clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		o.Windows = win
	})
	win.Start(w.srv.Bus())
	t.Cleanup(win.Close)
	w.load(cfg.Jobs...)
	w.armed("room-temperature")

	// 00:00:10: the kitchen is hot, the hall is fine.
	w.clk.AdvanceTo(t0.Add(10 * time.Second))
	w.publish("kitchen", "31", "kitchen", "32", "kitchen", "31.5", "hall", "21", "hall", "22.5")
	eventually(t, "5 samples", func() bool { return win.Figures()[0].Samples == 5 })
	if st := w.next("room-temperature"); st.LastOutcome != OutcomeOK {
		t.Fatalf("run 1: %+v", st)
	}
	n := w.expect(1, StatusFiring, "kitchen", "kitchen: 31.5 °C over 5 minutes, 31.5 °C over 10 minutes (threshold 30.0 °C)")
	if n.Labels["avg_5m"] != "31.5" || n.Job != "room-temperature" || n.Severity != "warning" {
		t.Errorf("firing notice = %+v", n)
	}
	if em, ok := w.srv.RetainedEvent("tide/alerts/high-temperature-kitchen"); !ok || notice(t, em.Payload).Status != StatusFiring {
		t.Errorf("the firing notice is not retained")
	}

	// 00:02: still hot, nothing new (one notice per episode).
	w.next("room-temperature")
	// 00:02:30: the kitchen cools down; at 00:03 its 5-minute average is
	// 26.25 °C and the alert is resolved.
	w.clk.AdvanceTo(t0.Add(150 * time.Second))
	w.publish("kitchen", "22", "kitchen", "21", "kitchen", "20")
	eventually(t, "8 samples", func() bool { return win.Figures()[0].Samples == 8 })
	w.next("room-temperature")
	n = w.expect(2, StatusResolved, "kitchen", "kitchen: back to 26.2 °C over 5 minutes")
	if !n.Since.Equal(t0.Add(time.Minute)) || n.DurationSeconds != 120 {
		t.Errorf("resolved notice = %+v, want the episode of 00:01 to 00:03", n)
	}
	em, ok := w.srv.RetainedEvent("tide/alerts/high-temperature-kitchen")
	if !ok || notice(t, em.Payload).Status != StatusResolved || em.Props.MessageExpiry == nil {
		t.Errorf("retained after resolve: %q, want the resolved notice with an expiry", em.Payload)
	}

	// The hall heats up at 00:06:10, when its readings of 00:00:10 are out
	// of the 5-minute window but still in the 10-minute one; then its
	// sensor dies, and the alert is resolved when the 10-minute window is
	// empty.
	for range 3 {
		w.next("room-temperature") // 00:04, 00:05, 00:06
	}
	w.clk.AdvanceTo(t0.Add(6*time.Minute + 10*time.Second))
	w.publish("hall", "35", "hall", "36", "hall", "35", "hall", "36", "hall", "35", "hall", "36")
	eventually(t, "14 samples", func() bool { return win.Figures()[0].Samples == 14 })
	w.next("room-temperature") // 00:07: 10-minute average (21+22.5+6*35.5)/8 = 32.06
	w.expect(3, StatusFiring, "hall", "hall: 35.5 °C over 5 minutes, 32.1 °C over 10 minutes")
	for w.s.Alerts().Firing > 0 {
		if st := w.next("room-temperature"); st.LastScheduled.After(t0.Add(20 * time.Minute)) {
			t.Fatalf("the hall's alert still fires at %v", st.LastScheduled)
		}
	}
	n = w.expect(4, StatusResolved, "hall", "hall: no reading for 10 minutes")
	if !n.Time.Equal(t0.Add(16 * time.Minute)) {
		t.Errorf("the hall was resolved at %v, want 00:16 (its last readings at 00:06:10 left the 10-minute window)", n.Time)
	}
	if st := w.status("room-temperature"); st.Failures != 0 || st.Runs != 16 {
		t.Errorf("status = %+v, want 16 good runs", st)
	}
	if a := w.s.Alerts(); a.Firing != 0 || a.Notifications != 4 {
		t.Errorf("alerts = %+v, want 4 notices and nothing firing", a)
	}
}

// TestRoomTemperatureSQLExample runs scripts/alerts/room_temperature_sql.lua
// against the real PostgreSQL through the real datastore pipeline: MQTT
// messages routed to a postgres sink, averaged by SQL.
func TestRoomTemperatureSQLExample(t *testing.T) {
	dsn, _ := pgtest.Schema(t)
	script, _ := filepath.Abs("../scripts/alerts/room_temperature_sql.lua")
	cfg, err := conf.Parse("tide.toml", fmt.Appendf(nil, `
[persistence]
dir = %q
[[sink]]
name = "archive"
type = "postgres"
dsn = %q
flush_interval = "10ms"
[[route]]
topics = ["home/+/temperature"]
sinks = ["archive"]
[[job]]
name = "room-temperature-sql"
script = %q
cron = "* * * * *"
[job.settings]
sink = "archive"
threshold = 30.0
`, t.TempDir(), dsn, script))
	if err != nil {
		t.Fatal(err)
	}
	rt, err := datastore.FromConfig(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Close(context.Background()) })
	// The messages are stamped by the broker's real clock: the fake clock
	// starts from it, so that the job's windows cover them.
	w := newRoomWorld(t, time.Now().Truncate(time.Second), func(o *Options) { o.Stores = rt })
	rt.Start(w.srv.Bus())
	w.load(cfg.Jobs...)
	w.armed("room-temperature-sql")

	q, _ := rt.Querier("archive")
	stored := func(n int64) func() bool {
		return func() bool {
			rows, err := q.Query(context.Background(), "SELECT count(*) AS n FROM mqtt_messages")
			return err == nil && rows[0]["n"] == n
		}
	}
	w.publish("kitchen", "31", "kitchen", `{"temp": 32}`, "kitchen", "31.5", "hall", "21", "hall", "not a number")
	eventually(t, "5 rows in PostgreSQL", stored(5))
	if st := w.next("room-temperature-sql"); st.LastOutcome != OutcomeOK {
		t.Fatalf("run 1: %+v", st)
	}
	w.expect(1, StatusFiring, "kitchen", "kitchen: 31.5 °C over 5 minutes, 31.5 °C over 10 minutes")

	w.publish("kitchen", "22", "kitchen", "21", "kitchen", "20")
	eventually(t, "8 rows in PostgreSQL", stored(8))
	if st := w.next("room-temperature-sql"); st.LastOutcome != OutcomeOK {
		t.Fatalf("run 2: %+v", st)
	}
	w.expect(2, StatusResolved, "kitchen", "kitchen: back to 26.2 °C over 5 minutes")
}
