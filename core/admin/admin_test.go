package admin_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tidemq/tide/core/admin"
	"github.com/tidemq/tide/core/event"
)

var creds = admin.Options{Token: "s3cret-token", Username: "admin", Password: "pa55word"}

func TestHealthzNeedsNoCredentials(t *testing.T) {
	e := start(t, creds)
	var got map[string]string
	e.do(t, "GET", "/healthz", "", noAuth).want(t, http.StatusOK, &got)
	if got["status"] != "ok" {
		t.Errorf("healthz = %v, want status ok", got)
	}
	e.do(t, "POST", "/healthz", "", noAuth).wantError(t, http.StatusMethodNotAllowed, "method not allowed")
}

func TestAuth(t *testing.T) {
	e := start(t, creds)
	cases := []struct {
		name string
		a    auth
		ok   bool
	}{
		{"none", noAuth, false},
		{"bearer", bearer("s3cret-token"), true},
		{"bearer, lower-case scheme", func(r *http.Request) { r.Header.Set("Authorization", "bearer s3cret-token") }, true},
		{"wrong bearer", bearer("s3cret-tokem"), false},
		{"bearer prefix of the token", bearer("s3cret"), false},
		{"basic", basic("admin", "pa55word"), true},
		{"basic, wrong password", basic("admin", "password"), false},
		{"basic, wrong user", basic("root", "pa55word"), false},
		{"token as basic password", basic("admin", "s3cret-token"), false},
	}
	failures := 0
	for _, tc := range cases {
		for _, path := range []string{"/api/clients", "/metrics", "/api/nowhere"} {
			r := e.do(t, "GET", path, "", tc.a)
			if tc.ok {
				if r.status == http.StatusUnauthorized {
					t.Errorf("%s: GET %s: 401, want accepted", tc.name, path)
				}
				continue
			}
			failures++
			r.wantError(t, http.StatusUnauthorized, "unauthorized")
			if got := r.header.Values("WWW-Authenticate"); !slices.Contains(got, `Bearer realm="tide"`) || !slices.Contains(got, `Basic realm="tide", charset="UTF-8"`) {
				t.Errorf("%s: WWW-Authenticate %q, want the Bearer and Basic challenges", tc.name, got)
			}
		}
	}
	r := e.do(t, "GET", "/metrics", "", bearer("s3cret-token")).want(t, http.StatusOK, nil)
	if got, _ := metric(r.body, "tide_admin_auth_failures_total"); int(got) != failures {
		t.Errorf("tide_admin_auth_failures_total = %v, want %d", got, failures)
	}

	// Token only: basic auth is not a way in, and the challenge is Bearer's.
	tok := start(t, admin.Options{Token: "t"})
	r = tok.do(t, "GET", "/api/clients", "", basic("admin", "t"))
	r.wantError(t, http.StatusUnauthorized, "unauthorized")
	if got := r.header.Values("WWW-Authenticate"); len(got) != 1 || got[0] != `Bearer realm="tide"` {
		t.Errorf("WWW-Authenticate %q, want only Bearer", got)
	}
	tok.do(t, "GET", "/api/clients", "", bearer("t")).want(t, http.StatusOK, nil)

	// No credentials configured: open (the lead binds it to loopback).
	open := start(t, admin.Options{})
	open.do(t, "GET", "/api/clients", "", noAuth).want(t, http.StatusOK, nil)
}

func TestCrossOriginRequestsRefused(t *testing.T) {
	e := start(t, admin.Options{})
	body := `{"topic":"x","payload":"y"}`
	e.do(t, "POST", "/api/publish", body, noAuth, "Sec-Fetch-Site", "cross-site").wantError(t, http.StatusForbidden, "cross-origin")
	e.do(t, "POST", "/api/publish", body, noAuth, "Origin", "https://evil.example").wantError(t, http.StatusForbidden, "cross-origin")
	e.do(t, "DELETE", "/api/clients/x", "", noAuth, "Sec-Fetch-Site", "cross-site").wantError(t, http.StatusForbidden, "cross-origin")
	// Reads, same-origin requests and non-browser clients pass.
	e.do(t, "GET", "/api/clients", "", noAuth, "Sec-Fetch-Site", "cross-site").want(t, http.StatusOK, nil)
	e.do(t, "POST", "/api/publish", body, noAuth, "Sec-Fetch-Site", "same-origin").want(t, http.StatusOK, nil)
	e.do(t, "POST", "/api/publish", body, noAuth).want(t, http.StatusOK, nil)
}

func TestMetricsAfterTraffic(t *testing.T) {
	e := start(t, creds)
	// A bus subscriber that never reads and holds one event: the other
	// publish events are dropped for it, and counted.
	sub := e.srv.Bus().Subscribe("test-observer", event.Publish, event.QueueOptions{Size: 1})
	defer sub.Close()
	reg := prometheus.NewCounter(prometheus.CounterOpts{Name: "tide_test_registered_total", Help: "A collector added by another component."})
	if err := e.a.Register(reg); err != nil {
		t.Fatal(err)
	}
	reg.Add(3)

	p := dialV5(t, e.mqttAddr, &paho.Connect{ClientID: "metrics-pub", CleanStart: true})
	p.publish(t, "m/retained", 0, true, []byte("kept"))
	s := dialV5(t, e.mqttAddr, &paho.Connect{ClientID: "metrics-sub", CleanStart: true})
	s.subscribe(t, "m/#")
	for i := range 5 {
		p.publish(t, fmt.Sprintf("m/%d", i), 1, false, []byte("12345"))
	}
	for range 6 {
		s.next(t)
	}

	want := map[string]float64{
		`tide_messages_received_total{qos="0"}`:                      1,
		`tide_messages_received_total{qos="1"}`:                      5,
		`tide_messages_received_total{qos="2"}`:                      0,
		`tide_messages_sent_total{qos="0"}`:                          1,
		`tide_messages_sent_total{qos="1"}`:                          5,
		`tide_clients_connected`:                                     2,
		`tide_sessions`:                                              2,
		`tide_connects_total`:                                        2,
		`tide_subscriptions`:                                         1,
		`tide_retained_messages`:                                     1,
		`tide_messages_unrouted_total`:                               1, // the retained one, sent before the subscription
		`tide_event_queue_length{subscriber="test-observer"}`:        1,
		`tide_event_queue_dropped_total{subscriber="test-observer"}`: 5,
		`tide_test_registered_total`:                                 3,
	}
	for _, r := range []string{"qos0_queue_full", "session_queue_full", "too_large", "expired", "offline_qos0", "denied"} {
		want[`tide_messages_dropped_total{reason="`+r+`"}`] = 0
	}
	var body []byte
	var mismatch []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		body = e.do(t, "GET", "/metrics", "", bearer(creds.Token)).want(t, http.StatusOK, nil).body
		mismatch = mismatch[:0]
		for series, v := range want {
			if got, ok := metric(body, series); !ok || got != v {
				mismatch = append(mismatch, fmt.Sprintf("%s = %v (present %v), want %v", series, got, ok, v))
			}
		}
		if len(mismatch) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10s:\n%s", strings.Join(mismatch, "\n"))
		}
	}
	for _, series := range []string{"tide_received_bytes_total", "tide_sent_bytes_total", "tide_uptime_seconds", "go_goroutines", "process_cpu_seconds_total"} {
		if v, ok := metric(body, series); !ok || v <= 0 {
			t.Errorf("%s = %v (present %v), want > 0", series, v, ok)
		}
	}
	for _, help := range []string{"# TYPE tide_messages_received_total counter", "# TYPE tide_clients_connected gauge", "# TYPE tide_messages_dropped_total counter"} {
		if !strings.Contains(string(body), help) {
			t.Errorf("/metrics lacks %q", help)
		}
	}
	if e.a.Registry() == nil {
		t.Errorf("Registry() = nil")
	}
}

type clientJSON struct {
	ID            string    `json:"id"`
	Username      string    `json:"username"`
	RemoteAddr    string    `json:"remote_addr"`
	Listener      string    `json:"listener"`
	Protocol      string    `json:"protocol"`
	ProtocolLevel int       `json:"protocol_level"`
	ConnectedAt   time.Time `json:"connected_at"`
	Subscriptions []string  `json:"subscriptions"`
	QueueDepth    int       `json:"queue_depth"`
	KeepAlive     int       `json:"keep_alive_seconds"`
}

func TestClientsAPI(t *testing.T) {
	e := start(t, creds)
	tok := bearer(creds.Token)
	before := time.Now().Add(-time.Second)
	alice := dialV5(t, e.mqttAddr, &paho.Connect{ClientID: "alice-phone", CleanStart: true, Username: "alice", UsernameFlag: true, KeepAlive: 45})
	alice.subscribe(t, "b/c", "a/#")
	dialV5(t, e.mqttAddr, &paho.Connect{ClientID: "dev/1", CleanStart: true})

	var list struct {
		Clients []clientJSON `json:"clients"`
		Count   int          `json:"count"`
	}
	e.do(t, "GET", "/api/clients", "", tok).want(t, http.StatusOK, &list)
	if list.Count != 2 || len(list.Clients) != 2 || list.Clients[0].ID != "alice-phone" || list.Clients[1].ID != "dev/1" {
		t.Fatalf("clients = %+v, want alice-phone and dev/1", list)
	}
	c := list.Clients[0]
	if c.Username != "alice" || c.Protocol != "5.0" || c.ProtocolLevel != 5 || c.Listener != "test" || c.KeepAlive != 45 {
		t.Errorf("alice-phone = %+v", c)
	}
	if !slices.Equal(c.Subscriptions, []string{"a/#", "b/c"}) {
		t.Errorf("subscriptions = %q, want [a/# b/c]", c.Subscriptions)
	}
	if host, _, _ := net.SplitHostPort(c.RemoteAddr); host != "127.0.0.1" {
		t.Errorf("remote_addr = %q", c.RemoteAddr)
	}
	if c.ConnectedAt.Before(before) || c.ConnectedAt.After(time.Now()) {
		t.Errorf("connected_at = %v, want about now", c.ConnectedAt)
	}
	if list.Clients[1].Subscriptions == nil {
		t.Errorf("subscriptions of a client without any: null, want []")
	}

	var one clientJSON
	e.do(t, "GET", "/api/clients/dev%2F1", "", tok).want(t, http.StatusOK, &one)
	if one.ID != "dev/1" {
		t.Errorf("GET /api/clients/dev%%2F1 = %+v", one)
	}
	e.do(t, "GET", "/api/clients/nobody", "", tok).wantError(t, http.StatusNotFound, `"nobody" is not connected`)
	e.do(t, "GET", "/api/clients/", "", tok).wantError(t, http.StatusBadRequest, "client id")
	r := e.do(t, "PUT", "/api/clients/alice-phone", "", tok)
	r.wantError(t, http.StatusMethodNotAllowed, "method not allowed")
	if got := r.header.Get("Allow"); got != "GET, DELETE" {
		t.Errorf("Allow = %q, want GET, DELETE", got)
	}
	e.do(t, "POST", "/api/clients", "", tok).wantError(t, http.StatusMethodNotAllowed, "GET")

	var del map[string]string
	e.do(t, "DELETE", "/api/clients/alice-phone?reason=maintenance", "", tok).want(t, http.StatusOK, &del)
	if del["disconnected"] != "alice-phone" {
		t.Errorf("DELETE answer %v", del)
	}
	select {
	case d := <-alice.disc:
		if d.ReasonCode != 0x98 {
			t.Errorf("DISCONNECT reason 0x%02x, want 0x98 administrative action", d.ReasonCode)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("alice-phone got no DISCONNECT")
	}
	e.do(t, "GET", "/api/clients/alice-phone", "", tok).wantError(t, http.StatusNotFound, "not connected")
	e.do(t, "DELETE", "/api/clients/alice-phone", "", tok).wantError(t, http.StatusNotFound, "not connected")
}

type retainedJSON struct {
	Retained []struct {
		Topic      string     `json:"topic"`
		Payload    string     `json:"payload"`
		Encoding   string     `json:"encoding"`
		QoS        int        `json:"qos"`
		ReceivedAt *time.Time `json:"received_at"`
	} `json:"retained"`
	Count     int  `json:"count"`
	Truncated bool `json:"truncated"`
}

func (r retainedJSON) topics() []string {
	var out []string
	for _, m := range r.Retained {
		out = append(out, m.Topic)
	}
	return out
}

func TestRetainedAPI(t *testing.T) {
	e := start(t, creds)
	tok := bearer(creds.Token)
	c := dialV5(t, e.mqttAddr, &paho.Connect{ClientID: "retainer", CleanStart: true})
	c.publish(t, "sensors/t1", 1, true, []byte("21.5"))
	c.publish(t, "sensors/bin", 0, true, []byte{0xff, 0x00, 0xfe})
	c.publish(t, "other/x", 0, true, []byte("x"))
	c.publish(t, "/leading", 0, true, []byte("slash"))
	eventually(t, "four retained messages", func() bool { return e.srv.Stats().Retained == 4 })

	var got retainedJSON
	e.do(t, "GET", "/api/retained?filter=sensors/%23", "", tok).want(t, http.StatusOK, &got)
	if !slices.Equal(got.topics(), []string{"sensors/bin", "sensors/t1"}) || got.Truncated {
		t.Fatalf("sensors/# = %+v", got)
	}
	bin, t1 := got.Retained[0], got.Retained[1]
	if t1.Payload != "21.5" || t1.Encoding != "utf-8" || t1.QoS != 1 || t1.ReceivedAt == nil {
		t.Errorf("sensors/t1 = %+v, want text 21.5 at QoS 1 with received_at", t1)
	}
	if bin.Encoding != "base64" || bin.Payload != base64.StdEncoding.EncodeToString([]byte{0xff, 0x00, 0xfe}) {
		t.Errorf("sensors/bin = %+v, want base64 of ff00fe", bin)
	}

	e.do(t, "GET", "/api/retained", "", tok).want(t, http.StatusOK, &got)
	if got.Count != 4 {
		t.Errorf("default filter # gave %q, want the 4 topics", got.topics())
	}
	got = retainedJSON{}
	e.do(t, "GET", "/api/retained?limit=1", "", tok).want(t, http.StatusOK, &got)
	if got.Count != 1 || !got.Truncated {
		t.Errorf("limit=1: count %d, truncated %v; want 1, true", got.Count, got.Truncated)
	}
	e.do(t, "GET", "/api/retained?filter=a/%23/b", "", tok).wantError(t, http.StatusBadRequest, "filter")
	e.do(t, "GET", "/api/retained?filter=", "", tok).wantError(t, http.StatusBadRequest, "filter")
	for _, l := range []string{"abc", "0", "-1", "10001"} {
		e.do(t, "GET", "/api/retained?limit="+l, "", tok).wantError(t, http.StatusBadRequest, "limit")
	}

	var del map[string]string
	e.do(t, "DELETE", "/api/retained/sensors%2Ft1", "", tok).want(t, http.StatusOK, &del)
	if del["deleted"] != "sensors/t1" {
		t.Errorf("DELETE answer %v", del)
	}
	e.do(t, "DELETE", "/api/retained/sensors%2Ft1", "", tok).wantError(t, http.StatusNotFound, "no retained message")
	e.do(t, "DELETE", "/api/retained/sensors/bin", "", tok).want(t, http.StatusOK, nil)
	e.do(t, "DELETE", "/api/retained/%2Fleading", "", tok).want(t, http.StatusOK, nil)
	e.do(t, "DELETE", "/api/retained/sensors%2F%23", "", tok).wantError(t, http.StatusBadRequest, "topic")
	e.do(t, "DELETE", "/api/retained/", "", tok).wantError(t, http.StatusBadRequest, "topic")
	e.do(t, "GET", "/api/retained/other%2Fx", "", tok).wantError(t, http.StatusMethodNotAllowed, "DELETE")
	got = retainedJSON{}
	e.do(t, "GET", "/api/retained", "", tok).want(t, http.StatusOK, &got)
	if !slices.Equal(got.topics(), []string{"other/x"}) {
		t.Errorf("after the deletes: %q, want [other/x]", got.topics())
	}
}

func TestPublishAPI(t *testing.T) {
	e := start(t, creds)
	tok := bearer(creds.Token)
	s := dialV5(t, e.mqttAddr, &paho.Connect{ClientID: "listener", CleanStart: true})
	s.subscribe(t, "cmd/#")

	var res map[string]int
	e.do(t, "POST", "/api/publish", `{"topic":"cmd/light","payload":"on","qos":1}`, tok).want(t, http.StatusOK, &res)
	if res["delivered"] != 1 {
		t.Errorf("delivered = %d, want 1", res["delivered"])
	}
	if m := s.next(t); m.Topic != "cmd/light" || string(m.Payload) != "on" || m.QoS != 1 {
		t.Errorf("received %s %q QoS %d", m.Topic, m.Payload, m.QoS)
	}
	raw := []byte{0, 1, 2, 0xff}
	e.do(t, "POST", "/api/publish", `{"topic":"cmd/raw","payload_base64":"`+base64.StdEncoding.EncodeToString(raw)+`","retain":true}`, tok).want(t, http.StatusOK, &res)
	if m := s.next(t); string(m.Payload) != string(raw) {
		t.Errorf("received %x, want %x", m.Payload, raw)
	}
	if m, ok := e.srv.Retained("cmd/raw"); !ok || string(m.Payload) != string(raw) {
		t.Errorf("cmd/raw not retained: %+v %v", m, ok)
	}
	e.do(t, "POST", "/api/publish", `{"topic":"nobody/listens"}`, tok).want(t, http.StatusOK, &res)
	if res["delivered"] != 0 {
		t.Errorf("delivered = %d to no subscriber", res["delivered"])
	}

	bad := []struct{ body, want string }{
		{``, "empty body"},
		{`{`, "bad JSON"},
		{`[1]`, "bad JSON"},
		{`{"topic":"cmd/a"} {}`, "after the JSON"},
		{`{"topic":"cmd/a","paylod":"x"}`, "unknown field"},
		{`{"payload":"x"}`, "topic: missing"},
		{`{"topic":"cmd/+","payload":"x"}`, "topic"},
		{`{"topic":"cmd/a","payload":"x","payload_base64":"eA=="}`, "not both"},
		{`{"topic":"cmd/a","payload_base64":"not base64!"}`, "payload_base64"},
		{`{"topic":"cmd/a","qos":3}`, "qos 3"},
		{`{"topic":"cmd/a","qos":-1}`, "qos -1"},
		{`{"topic":"cmd/a","qos":"1"}`, "bad JSON"},
		{`{"topic":"cmd/a","retain":"yes"}`, "bad JSON"},
	}
	for _, b := range bad {
		e.do(t, "POST", "/api/publish", b.body, tok).wantError(t, http.StatusBadRequest, b.want)
	}
	big := `{"topic":"a","payload":"` + strings.Repeat("x", 5<<20) + `"}`
	e.do(t, "POST", "/api/publish", big, tok).wantError(t, http.StatusRequestEntityTooLarge, "larger than")
	e.do(t, "GET", "/api/publish", "", tok).wantError(t, http.StatusMethodNotAllowed, "POST")
	// The refused publishes were under cmd/ too: none may arrive before a
	// last good one. A second copy of cmd/raw with the retain flag is not
	// one of them: the core sends a subscription's retained messages after
	// its SUBACK, so a message retained in between can arrive twice
	// (reported to the core).
	e.do(t, "POST", "/api/publish", `{"topic":"cmd/last"}`, tok).want(t, http.StatusOK, nil)
	for {
		m := s.next(t)
		if m.Topic == "cmd/last" {
			break
		}
		if m.Topic != "cmd/raw" || !m.Retain {
			t.Errorf("a refused publish was delivered: %s %q", m.Topic, m.Payload)
		}
	}
}

func TestReloadAndJobsHooks(t *testing.T) {
	e := start(t, creds)
	tok := bearer(creds.Token)
	e.do(t, "POST", "/api/reload", "", tok).wantError(t, http.StatusNotImplemented, "reload is not available")
	e.do(t, "GET", "/api/jobs", "", tok).wantError(t, http.StatusNotImplemented, "jobs are not available")

	calls := 0
	var fail error
	e.a.SetReload(func() error { calls++; return fail })
	var ok map[string]string
	e.do(t, "POST", "/api/reload", "", tok).want(t, http.StatusOK, &ok)
	if ok["status"] != "reloaded" || calls != 1 {
		t.Errorf("reload answer %v after %d calls", ok, calls)
	}
	fail = errors.New("tide.toml:12: listener[0].cert_file: no such file")
	e.do(t, "POST", "/api/reload", "", tok).wantError(t, http.StatusInternalServerError, "tide.toml:12")
	e.do(t, "GET", "/api/reload", "", tok).wantError(t, http.StatusMethodNotAllowed, "POST")

	type job struct {
		Name    string `json:"name"`
		LastRun string `json:"last_run"`
	}
	e.a.SetJobs(func() any { return []job{{"cleanup", "2026-01-01T00:00:00Z"}} })
	var jobs []job
	e.do(t, "GET", "/api/jobs", "", tok).want(t, http.StatusOK, &jobs)
	if len(jobs) != 1 || jobs[0].Name != "cleanup" {
		t.Errorf("jobs = %+v", jobs)
	}
	e.do(t, "DELETE", "/api/jobs", "", tok).wantError(t, http.StatusMethodNotAllowed, "GET")
	e.a.SetJobs(nil)
	e.do(t, "GET", "/api/jobs", "", tok).wantError(t, http.StatusNotImplemented, "jobs")
}

func TestUnknownPaths(t *testing.T) {
	e := start(t, creds)
	for _, p := range []string{"/", "/api", "/api/", "/api/unknown", "/metrics/x", "/healthz/"} {
		e.do(t, "GET", p, "", bearer(creds.Token)).wantError(t, http.StatusNotFound, "not found")
	}
}

func TestLifecycle(t *testing.T) {
	off := admin.New(nil, admin.Options{}, nil)
	if off.Enabled() {
		t.Errorf("Enabled() with no address")
	}
	if err := off.ListenAndServe(); err != nil || off.Addr() != nil {
		t.Errorf("ListenAndServe without address: %v, %v; want nil, nil", err, off.Addr())
	}
	if err := off.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown of a server never started: %v", err)
	}

	e := start(t, creds)
	busy := admin.New(adminBroker{e.srv}, admin.Options{Address: e.a.Addr().String()}, nil)
	if err := busy.ListenAndServe(); err == nil || !strings.Contains(err.Error(), "admin") {
		t.Errorf("ListenAndServe on a busy address: %v, want an admin error", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := e.a.Serve(ln); err == nil {
		t.Errorf("a second Serve succeeded")
	}

	a := admin.New(adminBroker{e.srv}, admin.Options{Address: "127.0.0.1:0"}, nil)
	if err := a.ListenAndServe(); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + a.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("healthz: %d", resp.StatusCode)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if _, err := http.Get("http://" + a.Addr().String() + "/healthz"); err == nil {
		t.Errorf("still serving after Shutdown")
	}
	if err := a.Serve(ln); err == nil {
		t.Errorf("Serve after Shutdown succeeded")
	}
}

func TestBackupAndFigures(t *testing.T) {
	e := start(t, creds)
	tok := bearer(creds.Token)
	e.do(t, "GET", "/api/backup", "", tok).wantError(t, http.StatusNotImplemented, "persistence")
	e.a.SetBackup(func(w io.Writer) (int64, error) {
		n, err := w.Write([]byte("store bytes"))
		return int64(n), err
	})
	r := e.do(t, "GET", "/api/backup", "", tok)
	if r.status != http.StatusOK || string(r.body) != "store bytes" {
		t.Fatalf("backup: %d %q", r.status, r.body)
	}
	if err := e.a.RegisterFigures(func() []admin.Figure {
		return []admin.Figure{{Name: "tide_sink_written_total", Help: "Records written.", Counter: true, Labels: map[string]string{"sink": "history"}, Value: 42}}
	}); err != nil {
		t.Fatal(err)
	}
	m := e.do(t, "GET", "/metrics", "", tok)
	if !strings.Contains(string(m.body), `tide_sink_written_total{sink="history"} 42`) {
		t.Fatalf("figure missing from /metrics")
	}
}
