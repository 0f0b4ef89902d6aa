package plugins

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"golang.org/x/crypto/bcrypt"

	"github.com/tidemq/tide/conf"
	"github.com/tidemq/tide/datastore/postgres/pgtest"
)

// exampleScript copies ../scripts/<name> into a temporary folder (with the files
// it reads next to it) and returns the plugin configuration running it.
func exampleScript(t *testing.T, name string, settings map[string]any, files map[string]string) conf.Plugin {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("..", "scripts", name))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for f, content := range files {
		writeScript(t, dir, f, content)
	}
	p := plugin(strings.TrimSuffix(name, ".lua"), writeScript(t, dir, name, string(src)))
	p.Settings = settings
	return p
}

func connectV5(t *testing.T, addr, id, user, pass string) (*v5, byte) {
	t.Helper()
	cp := &paho.Connect{ClientID: id, CleanStart: true}
	if user != "" {
		cp.Username, cp.UsernameFlag = user, true
	}
	if pass != "" {
		cp.Password, cp.PasswordFlag = []byte(pass), true
	}
	c, ack, err := dialV5(t, addr, cp)
	if err != nil {
		if ack == nil {
			t.Fatalf("connect %s: %v", id, err)
		}
		return nil, ack.ReasonCode
	}
	return c, 0
}

func hash(t *testing.T, password string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func TestAuthUsersScript(t *testing.T) {
	users := "# test users\nalice:" + hash(t, "wonderland") + "\n\n  bob:" + hash(t, "builder") + "  \n"
	b := startBroker(t, exampleScript(t, "auth_users.lua", map[string]any{"users_file": "users.txt"}, map[string]string{"users.txt": users}))
	cases := []struct {
		user, pass string
		want       byte
	}{
		{"alice", "wonderland", 0},
		{"bob", "builder", 0},
		{"alice", "builder", 0x86},
		{"mallory", "wonderland", 0x86},
		{"alice", "", 0x86},
		{"", "", 0}, // anonymous: the listener allows it
	}
	for i, tc := range cases {
		if _, rc := connectV5(t, b.addr, fmt.Sprint("c", i), tc.user, tc.pass); rc != tc.want {
			t.Errorf("%q/%q: CONNACK 0x%02x, want 0x%02x", tc.user, tc.pass, rc, tc.want)
		}
	}
	if _, err := dialV3(t, b.addr, "v3-ok", "alice", "wonderland"); err != nil {
		t.Errorf("MQTT 3.1.1 alice: %v", err)
	}
	if _, err := dialV3(t, b.addr, "v3-bad", "alice", "nope"); err == nil || !strings.Contains(err.Error(), "user name or password") {
		t.Errorf("MQTT 3.1.1 with a wrong password: %v, want a bad user name or password refusal", err)
	}

	// A malformed line is a load error with the file and line.
	bad := exampleScript(t, "auth_users.lua", map[string]any{"users_file": "users.txt"}, map[string]string{"users.txt": "alice:" + hash(t, "x") + "\nbob\n"})
	if err := b.m.Reload([]conf.Plugin{bad}); err == nil || !strings.Contains(err.Error(), "users.txt:2: want user:bcrypt-hash") {
		t.Errorf("malformed users file: %v", err)
	}
	missing := exampleScript(t, "auth_users.lua", map[string]any{"users_file": "nope.txt"}, nil)
	if err := b.m.Reload([]conf.Plugin{missing}); err == nil || !strings.Contains(err.Error(), "cannot read users_file") {
		t.Errorf("missing users file: %v", err)
	}
}

func TestAuthHTTPScript(t *testing.T) {
	var flaky atomic.Int32
	var requests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		var req struct {
			ClientID, Username string
			Password           *string
		}
		body, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(body, &req); err != nil || r.Header.Get("Authorization") != "Bearer t0k3n" {
			w.WriteHeader(400)
			return
		}
		switch req.Username {
		case "alice":
			if req.Password == nil || *req.Password != "secret" {
				w.WriteHeader(401)
				return
			}
			fmt.Fprint(w, `{"attrs": {"role": "admin", "tenant": "acme"}}`)
		case "bob":
			w.WriteHeader(401)
		case "flaky":
			if flaky.Add(1) == 1 {
				w.WriteHeader(500)
				return
			}
			fmt.Fprint(w, `{}`)
		case "down":
			w.WriteHeader(503)
		case "slow":
			select {
			case <-time.After(5 * time.Second):
			case <-r.Context().Done():
			}
		}
	}))
	defer srv.Close()
	settings := map[string]any{"url": srv.URL, "token": "t0k3n", "attempt_timeout": 2, "retries": 2}
	auth := exampleScript(t, "auth_http.lua", settings, nil)
	auth.Timeout.Duration = 500 * time.Millisecond
	// The second plugin proves that the attrs reached the client.
	attrs := scriptPlugin(t, "attrs", `function on_publish(client, msg) if client.attrs.role ~= "admin" then return false end end`)
	b := startBroker(t, auth, attrs)

	c, rc := connectV5(t, b.addr, "a", "alice", "secret")
	if rc != 0 {
		t.Fatalf("alice: CONNACK 0x%02x", rc)
	}
	if rc := c.publish(t, &paho.Publish{Topic: "x", QoS: 1}); rc != 0x10 {
		t.Errorf("alice's publish: 0x%02x, want 0x10 (allowed, no subscribers): attrs from the service lost?", rc)
	}
	if _, rc := connectV5(t, b.addr, "b", "bob", "x"); rc != 0x87 {
		t.Errorf("bob (401): CONNACK 0x%02x, want 0x87", rc)
	}
	n := requests.Load()
	if _, rc := connectV5(t, b.addr, "f", "flaky", "x"); rc != 0 {
		t.Errorf("flaky (500 then 200): CONNACK 0x%02x, want 0 after a retry", rc)
	}
	if got := requests.Load() - n; got != 2 {
		t.Errorf("flaky took %d requests, want 2", got)
	}
	if _, rc := connectV5(t, b.addr, "d", "down", "x"); rc != 0x87 {
		t.Errorf("down (503 x3): CONNACK 0x%02x, want 0x87 (fail closed)", rc)
	}
	start := time.Now()
	if _, rc := connectV5(t, b.addr, "s", "slow", "x"); rc != 0x87 {
		t.Errorf("slow: CONNACK 0x%02x, want 0x87 (timeout, fail closed)", rc)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("a slow identity service held the CONNECT %v, want about the plugin timeout (500ms)", took)
	}
	st := b.m.Stats()[0].Hooks["on_connect"]
	if st.Timeouts != 1 || st.Errors != 1 {
		t.Errorf("on_connect stats %+v, want 1 timeout (slow) and 1 error (down)", st)
	}

	// fail = "open" lets clients in while the service is down.
	auth.Fail = "open"
	load(t, b.m, auth)
	if _, rc := connectV5(t, b.addr, "s2", "slow", "x"); rc != 0 {
		t.Errorf("slow with fail open: CONNACK 0x%02x, want 0", rc)
	}
}

func TestAuthPostgresScript(t *testing.T) {
	dsn, conn := pgtest.Schema(t)
	c := context.Background()
	if _, err := conn.Exec(c, `CREATE TABLE mqtt_users (username text PRIMARY KEY, password_hash text NOT NULL, attrs jsonb, enabled boolean NOT NULL DEFAULT true)`); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(c, `INSERT INTO mqtt_users (username, password_hash, attrs, enabled) VALUES ($1, $2, '{"role": "admin"}', true), ($3, $4, NULL, true), ($5, $6, NULL, false)`,
		"alice", hash(t, "secret"), "bob", hash(t, "builder"), "carol", hash(t, "gone")); err != nil {
		t.Fatal(err)
	}
	auth := exampleScript(t, "auth_postgres.lua", map[string]any{"dsn": dsn}, nil)
	auth.Timeout.Duration = 2 * time.Second
	attrs := scriptPlugin(t, "attrs", `function on_publish(client, msg) if client.attrs.role ~= "admin" then return false end end`)
	b := startBroker(t, auth, attrs)
	a, rc := connectV5(t, b.addr, "a", "alice", "secret")
	if rc != 0 {
		t.Fatalf("alice: CONNACK 0x%02x", rc)
	}
	if rc := a.publish(t, &paho.Publish{Topic: "x", QoS: 1}); rc != 0x10 {
		t.Errorf("alice (admin from the attrs column): 0x%02x, want 0x10", rc)
	}
	bob, rc := connectV5(t, b.addr, "b", "bob", "builder")
	if rc != 0 {
		t.Fatalf("bob: CONNACK 0x%02x", rc)
	}
	if rc := bob.publish(t, &paho.Publish{Topic: "x", QoS: 1}); rc != 0x87 {
		t.Errorf("bob (no attrs): 0x%02x, want 0x87", rc)
	}
	for _, tc := range []struct{ user, pass string }{{"alice", "wrong"}, {"carol", "gone"}, {"nobody", "x"}, {"x' OR '1'='1", "x"}} {
		if _, rc := connectV5(t, b.addr, "r", tc.user, tc.pass); rc != 0x87 {
			t.Errorf("%s/%s: CONNACK 0x%02x, want 0x87", tc.user, tc.pass, rc)
		}
	}

	// An unreachable database fails closed, within the timeout.
	down := exampleScript(t, "auth_postgres.lua", map[string]any{"dsn": "postgres://tide@127.0.0.1:1/none?sslmode=disable&connect_timeout=1"}, nil)
	down.Timeout.Duration = 2 * time.Second
	load(t, b.m, down)
	if _, rc := connectV5(t, b.addr, "d", "alice", "secret"); rc != 0x87 {
		t.Errorf("with the database down: CONNACK 0x%02x, want 0x87", rc)
	}
	if st := b.m.Stats()[0].Hooks["on_connect"]; st.Errors != 1 {
		t.Errorf("errors = %d, want 1", st.Errors)
	}
	if !containsAll(b.logs.String(), "user lookup failed", "auth_postgres.lua:") {
		t.Errorf("the database failure is not logged with the script line:\n%s", b.logs)
	}
}

func TestACLClientIDScript(t *testing.T) {
	b := startBroker(t, exampleScript(t, "acl_clientid.lua", map[string]any{"prefix": "devices/"}, nil))
	c := mustV5(t, b.addr, "dev1")
	if sa := c.subscribe(t, "devices/dev1/#", 1); sa.Reasons[0] != 1 {
		t.Errorf("own subtree: SUBACK 0x%02x, want 1", sa.Reasons[0])
	}
	if sa := c.subscribe(t, "$share/g/devices/dev1/cmd", 1); sa.Reasons[0] != 1 {
		t.Errorf("shared own subtree: SUBACK 0x%02x, want 1", sa.Reasons[0])
	}
	for _, f := range []string{"devices/#", "devices/+/temp", "devices/dev2/#", "$share/g/devices/dev2/#", "devices/dev1"} {
		if sa := c.subscribe(t, f, 1); sa.Reasons[0] != 0x87 {
			t.Errorf("%s: SUBACK 0x%02x, want 0x87", f, sa.Reasons[0])
		}
	}
	if rc := c.publish(t, &paho.Publish{Topic: "devices/dev1/temp", QoS: 1, Payload: []byte("21")}); rc != 0 {
		t.Errorf("own topic: PUBACK 0x%02x, want 0", rc)
	}
	if m := c.recv(t); m.Topic != "devices/dev1/temp" {
		t.Errorf("received %s", m.Topic)
	}
	for _, topic := range []string{"devices/dev2/temp", "devices/dev1", "other"} {
		if rc := c.publish(t, &paho.Publish{Topic: topic, QoS: 1}); rc != 0x87 {
			t.Errorf("%s: PUBACK 0x%02x, want 0x87", topic, rc)
		}
	}
	if _, rc := connectV5(t, b.addr, "dev1/sub", "", ""); rc != 0x87 {
		t.Errorf("client id with a slash: CONNACK 0x%02x, want 0x87", rc)
	}

	// A will follows the same rule: dev2's will into dev1's subtree is not
	// published (it would otherwise be a way around the ACL).
	before := b.srv.Stats().Denied
	w, _, err := dialV5(t, b.addr, &paho.Connect{ClientID: "dev2", CleanStart: true,
		WillMessage: &paho.WillMessage{Topic: "devices/dev1/cmd", Payload: []byte("forged")}})
	if err != nil {
		t.Fatal(err)
	}
	_ = w.Disconnect(&paho.Disconnect{ReasonCode: 0x04}) // with will
	eventually(t, "dev2's will to be refused", func() bool { return b.srv.Stats().Denied > before })
	if rc := c.publish(t, &paho.Publish{Topic: "devices/dev1/temp", QoS: 1, Payload: []byte("22")}); rc != 0 {
		t.Errorf("own topic: PUBACK 0x%02x, want 0", rc)
	}
	if m := c.recv(t); string(m.Payload) != "22" {
		t.Errorf("received %s %q, want devices/dev1/temp \"22\" (not dev2's will)", m.Topic, m.Payload)
	}
}

func TestTransformScript(t *testing.T) {
	b := startBroker(t, exampleScript(t, "transform.lua", map[string]any{"from": "legacy/", "to": "v2/"}, nil))
	sub := mustV5(t, b.addr, "sub")
	sub.subscribe(t, "#", 1)
	pub := mustV5(t, b.addr, "pub")

	before := time.Now().UnixMilli()
	pub.publish(t, &paho.Publish{Topic: "legacy/site/temp", QoS: 1, Payload: []byte(`{"t": 21.5}`)})
	after := time.Now().UnixMilli()
	m := sub.recv(t)
	var doc struct {
		T          float64 `json:"t"`
		ReceivedAt int64   `json:"received_at"`
	}
	if err := json.Unmarshal(m.Payload, &doc); err != nil {
		t.Fatalf("payload %q: %v", m.Payload, err)
	}
	if m.Topic != "v2/site/temp" || doc.T != 21.5 || doc.ReceivedAt < before || doc.ReceivedAt > after {
		t.Errorf("got %s %s, want v2/site/temp with t 21.5 and received_at in [%d, %d]", m.Topic, m.Payload, before, after)
	}
	pub.publish(t, &paho.Publish{Topic: "legacy/raw", QoS: 1, Payload: []byte("not json")})
	if m := sub.recv(t); m.Topic != "v2/raw" || string(m.Payload) != "not json" {
		t.Errorf("non-JSON: %s %q, want v2/raw with the payload unchanged", m.Topic, m.Payload)
	}
	pub.publish(t, &paho.Publish{Topic: "other", QoS: 1, Payload: []byte(`{"received_at": 1}`)})
	if m := sub.recv(t); m.Topic != "other" || string(m.Payload) != `{"received_at": 1}` {
		t.Errorf("already stamped: %s %q, want it unchanged", m.Topic, m.Payload)
	}
	pub.publish(t, &paho.Publish{Topic: "arr", QoS: 1, Payload: []byte(`[1,2]`)})
	if m := sub.recv(t); string(m.Payload) != `[1,2]` {
		t.Errorf("JSON array: %q, want it unchanged", m.Payload)
	}
}

func TestRateLimitScript(t *testing.T) {
	b := startBroker(t, exampleScript(t, "rate_limit.lua", map[string]any{"max": 5}, nil))
	sub := mustV5(t, b.addr, "sub")
	sub.subscribe(t, "#", 0)
	pub := mustV5(t, b.addr, "pub")
	other := mustV5(t, b.addr, "other")
	accepted, denied := 0, 0
	start := time.Now()
	for range 20 {
		switch rc := pub.publish(t, &paho.Publish{Topic: "t", QoS: 1}); rc {
		case 0:
			accepted++
		case 0x87:
			denied++
		default:
			t.Fatalf("PUBACK 0x%02x", rc)
		}
	}
	if time.Since(start) > 900*time.Millisecond {
		t.Skip("20 publishes took longer than the 1s window: the machine is too slow for this test")
	}
	if accepted != 5 || denied != 15 {
		t.Errorf("accepted %d, denied %d; want 5 and 15", accepted, denied)
	}
	// Another client has its own budget.
	if rc := other.publish(t, &paho.Publish{Topic: "t", QoS: 1}); rc != 0 {
		t.Errorf("another client: PUBACK 0x%02x, want 0", rc)
	}
	// A new window opens a second later.
	eventually(t, "a new window", func() bool { return pub.publish(t, &paho.Publish{Topic: "t", QoS: 1}) == 0 })

	// action = "drop": the publisher is acknowledged, nobody receives.
	drop := exampleScript(t, "rate_limit.lua", map[string]any{"max": 1, "action": "drop"}, nil)
	load(t, b.m, drop)
	// A fresh client: the counters live in kv, which outlives reloads.
	pub2 := mustV5(t, b.addr, "pub2")
	for range 3 {
		if rc := pub2.publish(t, &paho.Publish{Topic: "d", QoS: 1}); rc != 0 {
			t.Errorf("dropped publish acknowledged with 0x%02x, want 0", rc)
		}
	}
	n := 0
	for {
		select {
		case m := <-sub.msgs:
			if m.Topic == "d" {
				n++
			}
			continue
		case <-time.After(200 * time.Millisecond):
		}
		break
	}
	if n != 1 {
		t.Errorf("%d messages delivered with max 1 and action drop, want 1", n)
	}
	bad := exampleScript(t, "rate_limit.lua", map[string]any{"action": "block"}, nil)
	if err := b.m.Reload([]conf.Plugin{bad}); err == nil || !strings.Contains(err.Error(), `settings.action must be "deny" or "drop", not block`) {
		t.Errorf("bad action: %v", err)
	}
}

// TestScriptsTogether runs the access control, rate limit and transform
// scripts in the order the README recommends: the first two return nil when
// they do not object, so the transform still sees the allowed messages.
func TestScriptsTogether(t *testing.T) {
	b := startBroker(t,
		exampleScript(t, "acl_clientid.lua", map[string]any{"prefix": "devices/"}, nil),
		exampleScript(t, "rate_limit.lua", map[string]any{"max": 100}, nil),
		exampleScript(t, "transform.lua", map[string]any{"from": "devices/dev1/legacy/", "to": "devices/dev1/v2/"}, nil))
	c := mustV5(t, b.addr, "dev1")
	c.subscribe(t, "devices/dev1/#", 1)
	if rc := c.publish(t, &paho.Publish{Topic: "devices/dev2/x", QoS: 1}); rc != 0x87 {
		t.Errorf("another device's topic: 0x%02x, want 0x87", rc)
	}
	c.publish(t, &paho.Publish{Topic: "devices/dev1/legacy/temp", QoS: 1, Payload: []byte(`{"t":1}`)})
	m := c.recv(t)
	if m.Topic != "devices/dev1/v2/temp" || !strings.Contains(string(m.Payload), `"received_at":`) {
		t.Errorf("received %s %s, want the transformed message", m.Topic, m.Payload)
	}
	st := b.m.Stats()
	if len(st) != 3 || st[1].Hooks["on_publish"].Calls != 1 || st[2].Hooks["on_publish"].Calls != 1 {
		t.Errorf("calls per plugin: %+v; want the rate limit and the transform called once (for the allowed message)", st)
	}
}
