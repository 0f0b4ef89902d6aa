package scheduler

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tidemq/tide/conf"
)

// state returns a job's saved state table.
func (e *env) state(name string) map[string]any {
	e.s.mu.Lock()
	sl := e.s.jobs[name]
	e.s.mu.Unlock()
	sl.mu.Lock()
	data, err := json.Marshal(sl.state)
	sl.mu.Unlock()
	if err != nil {
		e.t.Fatal(err)
	}
	// Through JSON, as the state file keeps it: numbers are float64.
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		e.t.Fatal(err)
	}
	return m
}

const planScript = `
local alert = require("alert")
function run(ctx)
  local step, r = config.plan[ctx.run], nil
  if step == "fire" then
    r = alert.fire{name = "disk-full", message = "disk at " .. (90 + ctx.run) .. "%",
      labels = {host = "db1", run = ctx.run}, ["repeat"] = "15m"}
  elseif step == "critical" then
    r = alert.fire{name = "disk-full", severity = "critical", message = "disk at 99%", labels = {host = "db1"}, ["repeat"] = 900}
  elseif step == "resolve" then
    r = alert.resolve("disk-full")
  end
  state.results = state.results or {}
  table.insert(state.results, tostring(r))
  local a = alert.get("disk-full")
  state.firing = a ~= nil
end`

func planJob(e *env, plan ...any) conf.Job {
	j := job("disk", e.script("disk.lua", planScript), 5*time.Minute)
	j.Settings = map[string]any{"plan": plan}
	return j
}

// TestAlertFireRepeatResolve checks an alert's episode end to end: one
// notice when it starts, repeats at most every 15 minutes, an immediate one
// when the severity changes, the resolved notice; each on MQTT (received by
// a real subscriber, retained while firing) and on the webhook.
func TestAlertFireRepeatResolve(t *testing.T) {
	srv, addr := startBroker(t)
	sub := dial(t, addr, "dashboard")
	sub.subscribe(t, "tide/alerts/#")
	hook := newHookServer(t, 0)
	e := newEnv(t, func(o *Options) {
		o.Broker = realBroker{srv}
		o.Alert = conf.Alert{TopicPrefix: "tide/alerts", ResolvedRetain: conf.Duration{Duration: time.Hour},
			Webhooks: []conf.Webhook{{URL: hook.URL, Headers: map[string]string{"X-Token": "s3cret"}, Timeout: conf.Duration{Duration: 5 * time.Second}}}}
	})
	e.load(planJob(e, "fire", "fire", "fire", "fire", "critical", "resolve", "resolve"))

	var got []Notice
	var payloads [][]byte
	for run := 1; run <= 7; run++ {
		if st := e.next("disk"); st.LastOutcome != OutcomeOK {
			t.Fatalf("run %d: %+v", run, st)
		}
		if run == 1 {
			m := sub.recv(t)
			payloads = append(payloads, m.Payload)
			got = append(got, notice(t, m.Payload))
			em, ok := srv.RetainedEvent("tide/alerts/disk-full")
			if !ok || !bytes.Equal(em.Payload, m.Payload) || em.Props.MessageExpiry != nil {
				t.Errorf("retained while firing: %q %v, want the firing notice, without expiry", em.Payload, ok)
			}
		}
		if run == 4 || run == 5 || run == 6 {
			m := sub.recv(t)
			payloads = append(payloads, m.Payload)
			got = append(got, notice(t, m.Payload))
		}
	}
	if want := []any{"true", "false", "false", "true", "true", "true", "false"}; !reflect.DeepEqual(e.state("disk")["results"], want) {
		t.Errorf("fire/resolve returned %v, want %v", e.state("disk")["results"], want)
	}
	since := t0.Add(5 * time.Minute)
	want := []Notice{
		{Name: "disk-full", Status: StatusFiring, Severity: "warning", Message: "disk at 91%", Labels: map[string]string{"host": "db1", "run": "1"},
			Job: "disk", Since: since, Time: since, Notification: 1},
		{Name: "disk-full", Status: StatusFiring, Severity: "warning", Message: "disk at 94%", Labels: map[string]string{"host": "db1", "run": "4"},
			Job: "disk", Since: since, Time: t0.Add(20 * time.Minute), Notification: 2},
		{Name: "disk-full", Status: StatusFiring, Severity: "critical", Message: "disk at 99%", Labels: map[string]string{"host": "db1"},
			Job: "disk", Since: since, Time: t0.Add(25 * time.Minute), Notification: 3},
		{Name: "disk-full", Status: StatusResolved, Severity: "critical", Message: "disk at 99%", Labels: map[string]string{"host": "db1"},
			Job: "disk", Since: since, Time: t0.Add(30 * time.Minute), Notification: 3, DurationSeconds: 1500},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("notices on MQTT:\n%+v\nwant\n%+v", got, want)
	}
	em, ok := srv.RetainedEvent("tide/alerts/disk-full")
	if !ok || !bytes.Equal(em.Payload, payloads[3]) || em.Props.MessageExpiry == nil || *em.Props.MessageExpiry < 3590 || em.Props.ContentType != "application/json" {
		t.Errorf("retained after resolve: %q %v %+v, want the resolved notice expiring in an hour", em.Payload, ok, em.Props)
	}
	eventually(t, "the webhook to get 4 notices", func() bool { return len(hook.received()) == 4 })
	for i, b := range hook.received() {
		if !bytes.Equal(b, payloads[i]) {
			t.Errorf("webhook notice %d = %s, want %s", i, b, payloads[i])
		}
	}
	hook.mu.Lock()
	h := hook.headers[0]
	hook.mu.Unlock()
	if h.Get("X-Token") != "s3cret" || h.Get("Content-Type") != "application/json" {
		t.Errorf("webhook headers = %v", h)
	}
	eventually(t, "the webhook to count 4 notices sent", func() bool { return e.s.Alerts().Webhooks[0].Sent == 4 })
	a := e.s.Alerts()
	if a.Firing != 0 || a.Notifications != 4 || a.Webhooks[0].Failed != 0 {
		t.Errorf("alert stats = %+v", a)
	}
}

// TestAlertStateSurvivesRestart fires an alert, restarts the scheduler and
// fires it again: no second notice; the resolve that follows names the
// original start of the episode.
func TestAlertStateSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	hook := newHookServer(t, 0)
	e := newEnv(t, func(o *Options) {
		o.StateDir = dir
		o.Alert = conf.Alert{TopicPrefix: "tide/alerts", Webhooks: []conf.Webhook{{URL: hook.URL, Timeout: conf.Duration{Duration: 5 * time.Second}}}}
	})
	e.load(planJob(e, "fire"))
	e.next("disk")
	eventually(t, "the firing notice", func() bool { return len(hook.received()) == 1 })
	e.stop()

	// A restart, and the same job again: the alert's repeat interval
	// (15m) has not passed, so firing again notifies nobody.
	e.start()
	if a := e.s.Alerts(); a.Firing != 1 || a.Alerts[0].Name != "disk-full" || !a.Alerts[0].Since.Equal(t0.Add(5*time.Minute)) {
		t.Fatalf("after the restart: %+v, want disk-full firing since 00:05", a)
	}
	// The run count carries on from the state file: runs 2 and 3.
	e.load(planJob(e, "fire", "fire", "resolve"))
	e.next("disk")
	e.next("disk")
	eventually(t, "the resolved notice", func() bool { return len(hook.received()) == 2 })
	n := notice(t, hook.received()[1])
	if n.Status != StatusResolved || !n.Since.Equal(t0.Add(5*time.Minute)) || n.Notification != 1 {
		t.Errorf("second notice = %+v, want the resolve of the episode that began at 00:05, after a single firing notice", n)
	}
	if got := e.state("disk")["results"]; !reflect.DeepEqual(got, []any{"true", "false", "true"}) {
		t.Errorf("results = %v, want true (fired), false (still firing after the restart), true (resolved)", got)
	}
}

// TestWebhookRetries checks the back-off (on the fake clock), a delivery
// after two failures, and a notice given up after its retries.
func TestWebhookRetries(t *testing.T) {
	flaky := newHookServer(t, 2)
	down := newHookServer(t, 1000)
	e := newEnv(t, func(o *Options) {
		o.Alert = conf.Alert{TopicPrefix: "tide/alerts", Webhooks: []conf.Webhook{
			{URL: flaky.URL, Timeout: conf.Duration{Duration: 5 * time.Second}, Retries: 3},
			{URL: down.URL, Timeout: conf.Duration{Duration: 5 * time.Second}, Retries: 2},
		}}
	})
	e.load(planJob(e, "fire"))
	e.next("disk")
	// Both fail once and wait 1s (the job's loop waits too: 3 timers).
	eventually(t, "the first attempts", func() bool {
		a := e.s.Alerts()
		return a.Webhooks[0].Retried == 1 && a.Webhooks[1].Retried == 1 && e.clk.Timers() == 3
	})
	e.clk.Advance(time.Second)
	eventually(t, "the second attempts", func() bool {
		a := e.s.Alerts()
		return a.Webhooks[0].Retried == 2 && a.Webhooks[1].Retried == 2 && e.clk.Timers() == 3
	})
	e.clk.Advance(2 * time.Second)
	eventually(t, "the outcome", func() bool {
		a := e.s.Alerts()
		return a.Webhooks[0].Sent == 1 && a.Webhooks[1].Failed == 1
	})
	if flaky.callCount() != 3 || down.callCount() != 3 {
		t.Errorf("calls = %d, %d; want 3 each (1 + 2 retries)", flaky.callCount(), down.callCount())
	}
	if !strings.Contains(e.logs.String(), `msg="alert webhook failed: notice given up"`) || !strings.Contains(e.logs.String(), "503 Service Unavailable: not now") {
		t.Errorf("log lacks the failed webhook:\n%s", e.logs.String())
	}
}

// TestAlertErrors checks bad alerts are run errors with the script's line,
// and notices without a broker are counted.
func TestAlertErrors(t *testing.T) {
	e := newEnv(t)
	path := e.script("bad.lua", `local alert = require("alert")
function run(ctx)
  if ctx.run == 1 then alert.fire{name = "a/+/b"} end
  if ctx.run == 2 then alert.fire{name = "x", labels = {1, 2, {}}} end
  if ctx.run == 3 then alert.fire{name = "x", ["repeat"] = "soon"} end
  if ctx.run == 4 then alert.fire{} end
  if ctx.run == 5 then alert.fire{name = "x"} end
end`)
	e.load(job("bad", path, time.Minute))
	for _, want := range []string{
		path + `:3: alert.fire: alert name "a/+/b" holds + or #: it is part of the topic tide/alerts/<name>`,
		path + `:4: bad argument #1 to fire (labels: a name must be a string, not a number)`,
		path + `:5: bad argument #1 to fire (repeat: invalid duration "soon"`,
		path + `:6: alert.fire: alert name is empty`,
		"",
	} {
		st := e.next("bad")
		if !strings.HasPrefix(st.LastError, want) || want == "" && st.LastError != "" {
			t.Errorf("error = %q, want %q", st.LastError, want)
		}
	}
	if a := e.s.Alerts(); a.Firing != 1 || a.PublishErrors != 1 {
		t.Errorf("alerts = %+v, want x firing, its notice counted as not published (no broker)", a)
	}
}
