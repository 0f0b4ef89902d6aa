package plugins

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tidemq/tide/conf"
	"github.com/tidemq/tide/core/event"
)

// withScript loads one plugin running src (edited by the optional funcs).
func withScript(t *testing.T, src string, edit ...func(*conf.Plugin)) (*Manager, *logBuffer) {
	t.Helper()
	lg, lb := newLogger()
	m := newManager(t, Options{Logger: lg})
	p := plugin("p", writeScript(t, t.TempDir(), "p.lua", src))
	for _, e := range edit {
		e(&p)
	}
	load(t, m, p)
	return m, lb
}

var (
	testClient = &event.Client{ID: "dev1", Username: "alice", RemoteAddr: "127.0.0.1:5000", Listener: "tcp", Protocol: 5, CleanStart: true, KeepAlive: 60,
		Attrs: map[string]any{"role": "sensor", "zone": int64(3)}}
	ctx = context.Background()
)

func testMessage() *event.Message {
	return &event.Message{Topic: "devices/dev1/temp", Payload: []byte(`{"t":21.5}`), QoS: 1}
}

func TestPublishAnswers(t *testing.T) {
	cases := []struct {
		name, body string
		verdict    event.Verdict
		reason     string
		rewrite    func(*testing.T, *event.Message)
	}{
		{"true allows", `return true`, event.Allow, "", nil},
		{"false denies", `return false, "not yours"`, event.Deny, "not yours", nil},
		{"nil passes", `return nil`, event.Pass, "", nil},
		{"no return passes", ``, event.Pass, "", nil},
		{"drop drops", `return "drop"`, event.Drop, "", nil},
		{"allow=false denies", `return {allow = false, reason = "quota"}`, event.Deny, "quota", nil},
		{"empty table allows unchanged", `return {}`, event.Allow, "", nil},
		{"table rewrites", `return {topic = "new/" .. msg.topic, payload = msg.payload .. "!", qos = 0, retain = true}`, event.Allow, "",
			func(t *testing.T, m *event.Message) {
				if m.Topic != "new/devices/dev1/temp" || string(m.Payload) != `{"t":21.5}!` || m.QoS != 0 || !m.Retain {
					t.Errorf("rewritten = %s %q qos %d retain %v, want new/devices/dev1/temp, payload with !, qos 0, retained", m.Topic, m.Payload, m.QoS, m.Retain)
				}
			}},
		{"edited msg rewrites", `msg.topic = "moved"; return msg`, event.Allow, "",
			func(t *testing.T, m *event.Message) {
				if m.Topic != "moved" || string(m.Payload) != `{"t":21.5}` || m.QoS != 1 {
					t.Errorf("rewritten = %s %q qos %d, want moved with the same payload and qos", m.Topic, m.Payload, m.QoS)
				}
			}},
		{"properties rewrite", `return {properties = {content_type = "application/json", user = {{key = "a", value = "1"}, {"b", "2"}}, message_expiry = 60}}`, event.Allow, "",
			func(t *testing.T, m *event.Message) {
				p := m.Props
				if p.ContentType != "application/json" || len(p.User) != 2 || p.User[1] != (event.UserProperty{Key: "b", Value: "2"}) || p.MessageExpiry == nil || *p.MessageExpiry != 60 {
					t.Errorf("properties = %+v, want content type, two user properties and expiry 60", p)
				}
			}},
		{"user properties as a map", `return {properties = {user = {z = "26", a = 1}}}`, event.Allow, "",
			func(t *testing.T, m *event.Message) {
				if got := fmt.Sprint(m.Props.User); got != "[{a 1} {z 26}]" {
					t.Errorf("user properties = %s, want [{a 1} {z 26}]", got)
				}
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, _ := withScript(t, "function on_publish(client, msg)\n"+tc.body+"\nend")
			d := m.OnPublish(ctx, testClient, testMessage())
			if d.Verdict != tc.verdict || d.Reason != tc.reason {
				t.Fatalf("decision = %v %q, want %v %q", d.Verdict, d.Reason, tc.verdict, tc.reason)
			}
			switch {
			case tc.rewrite != nil && d.Message == nil:
				t.Fatal("no rewritten message")
			case tc.rewrite != nil:
				tc.rewrite(t, d.Message)
			case d.Message != nil:
				t.Fatalf("unexpected rewrite %+v", d.Message)
			}
			if st := m.Stats()[0].Hooks["on_publish"]; st.Calls != 1 || st.Errors != 0 {
				t.Errorf("stats = %+v, want 1 call and no error", st)
			}
		})
	}
}

func TestInvalidAnswersFailClosedOrOpen(t *testing.T) {
	cases := []struct{ hook, body, want string }{
		{"on_publish", `return "maybe"`, `the only string answer is \"drop\"`},
		{"on_publish", `return {qos = 5}`, "qos = 5: want 0, 1 or 2"},
		{"on_publish", `return 42`, "returned a number"},
		{"on_publish", `return {topic = ""}`, "empty topic"},
		{"on_subscribe", `return 3`, "a granted QoS is 0, 1 or 2"},
		{"on_subscribe", `return "yes"`, "returned a string"},
		{"on_connect", `return {allow = "yes"}`, "allow = yes"},
		{"on_connect", `return {allow = true, code = 5}`, "code = 5"},
		{"on_connect", `return {allow = true, attrs = {print}}`, "cannot be kept"},
	}
	for _, fail := range []string{"closed", "open"} {
		for _, tc := range cases {
			t.Run(fail+"/"+tc.hook+"/"+tc.body, func(t *testing.T) {
				m, logs := withScript(t, "function "+tc.hook+"(a, b)\n"+tc.body+"\nend", func(p *conf.Plugin) { p.Fail = fail })
				var v event.Verdict
				switch tc.hook {
				case "on_publish":
					v = m.OnPublish(ctx, testClient, testMessage()).Verdict
				case "on_subscribe":
					v = m.OnSubscribe(ctx, testClient, &event.Subscription{Filter: "a/b", QoS: 1}).Verdict
				case "on_connect":
					v = m.OnConnect(ctx, &event.ConnectRequest{Client: testClient}).Verdict
				}
				want := event.Deny
				if fail == "open" {
					want = event.Allow
				}
				if v != want {
					t.Errorf("verdict = %v, want %v (fail %s)", v, want, fail)
				}
				if st := m.Stats()[0].Hooks[tc.hook]; st.Errors != 1 {
					t.Errorf("errors = %d, want 1", st.Errors)
				}
				if !strings.Contains(logs.String(), tc.want) {
					t.Errorf("log does not say %q:\n%s", tc.want, logs)
				}
			})
		}
	}
}

func TestSubscribeAnswers(t *testing.T) {
	cases := []struct {
		body    string
		verdict event.Verdict
		qos     byte
		hasQoS  bool
		reason  string
	}{
		{`return true`, event.Allow, 0, false, ""},
		{`return false, "private"`, event.Deny, 0, false, "private"},
		{`return nil`, event.Pass, 0, false, ""},
		{`return 0`, event.Allow, 0, true, ""},
		{`return sub.qos - 1`, event.Allow, 1, true, ""},
		{`return {allow = true, qos = 1}`, event.Allow, 1, true, ""},
		{`return {qos = 0}`, event.Allow, 0, true, ""},
		{`return {allow = false, reason = "r"}`, event.Deny, 0, false, "r"},
		{`return {}`, event.Pass, 0, false, ""},
	}
	for _, tc := range cases {
		t.Run(tc.body, func(t *testing.T) {
			m, _ := withScript(t, "function on_subscribe(client, sub)\n"+tc.body+"\nend")
			d := m.OnSubscribe(ctx, testClient, &event.Subscription{Filter: "devices/#", QoS: 2})
			if d.Verdict != tc.verdict || d.QoS != tc.qos || d.HasQoS != tc.hasQoS || d.Reason != tc.reason {
				t.Errorf("decision = %+v, want verdict %v qos %d (%v) reason %q", d, tc.verdict, tc.qos, tc.hasQoS, tc.reason)
			}
		})
	}
}

func TestConnectAnswers(t *testing.T) {
	m, _ := withScript(t, `
function on_connect(client)
  if client.username == "nil" then return nil end
  if client.username == "yes" then return true end
  if client.username == "no" then return false, "bad password" end
  if client.username == "banned" then return {allow = false, reason = "banned", code = 0x8A} end
  return {allow = true, username = "user:" .. client.username, attrs = {role = "admin", tags = {"a", "b"}, level = 3}}
end`)
	req := func(user string) *event.ConnectRequest {
		return &event.ConnectRequest{Client: &event.Client{ID: "c-" + user, Username: user}}
	}
	if d := m.OnConnect(ctx, req("nil")); d.Verdict != event.Pass {
		t.Errorf("nil: verdict %v, want pass", d.Verdict)
	}
	if d := m.OnConnect(ctx, req("yes")); d.Verdict != event.Allow {
		t.Errorf("true: verdict %v, want allow", d.Verdict)
	}
	if d := m.OnConnect(ctx, req("no")); d.Verdict != event.Deny || d.Reason != "bad password" {
		t.Errorf("false: %v %q, want deny \"bad password\"", d.Verdict, d.Reason)
	}
	if d := m.OnConnect(ctx, req("banned")); d.Verdict != event.Deny || d.Code != 0x8A || d.Reason != "banned" {
		t.Errorf("table deny: %+v, want deny with code 0x8A", d)
	}
	d := m.OnConnect(ctx, req("bob"))
	if d.Verdict != event.Allow || d.Username == nil || *d.Username != "user:bob" {
		t.Fatalf("table allow: %+v, want allow as user:bob", d)
	}
	if got := fmt.Sprint(d.Attrs); got != "map[level:3 role:admin tags:[a b]]" {
		t.Errorf("attrs = %s, want map[level:3 role:admin tags:[a b]]", got)
	}
}

// TestHookArguments checks every field the hooks receive, from inside the
// script: a failed assert is a Lua error, which denies.
func TestHookArguments(t *testing.T) {
	m, logs := withScript(t, `
local function check(cond, what) if not cond then error("bad argument: " .. what) end end
function on_connect(c)
  check(c.id == "dev1" and c.username == "alice" and c.password == "s3cret", "identity")
  check(c.remote_addr == "127.0.0.1:5000" and c.listener == "tcp" and c.protocol == 5, "connection")
  check(c.clean_start == true and c.keepalive == 60, "session")
  check(c.tls.cn == "dev1.example" and c.tls.verified == true and c.tls.sans[1] == "dev1.example", "tls")
  check(#c.properties == 2 and c.properties[2].key == "k2" and c.properties[2].value == "v2", "properties")
  return true
end
function on_subscribe(c, s)
  check(c.id == "dev1" and c.attrs.role == "sensor" and c.attrs.zone == 3, "client")
  check(c.password == nil, "no password after connect")
  check(s.filter == "$share/g/a/+" and s.qos == 1 and s.no_local == false, "filter")
  check(s.retain_as_published == true and s.retain_handling == 2 and s.identifier == 7, "options")
  return true
end
function on_publish(c, m)
  check(c.username == "alice", "client")
  check(m.topic == "devices/dev1/temp" and m.payload == '{"t":21.5}' and m.qos == 1 and m.retain == false, "message")
  check(m.properties.content_type == "text/plain" and m.properties.user[1].key == "u", "properties")
  check(m.properties.correlation_data == "id-1" and m.properties.payload_format == 1, "more properties")
  return true
end`)
	c := *testClient
	c.TLS = &event.TLS{CN: "dev1.example", SANs: []string{"dev1.example"}, Verified: true}
	req := &event.ConnectRequest{Client: &c, Password: []byte("s3cret"), HasPassword: true,
		UserProperties: []event.UserProperty{{Key: "k1", Value: "v1"}, {Key: "k2", Value: "v2"}}}
	if d := m.OnConnect(ctx, req); d.Verdict != event.Allow {
		t.Errorf("on_connect: %v\n%s", d.Verdict, logs)
	}
	sub := &event.Subscription{Filter: "$share/g/a/+", QoS: 1, RetainAsPublished: true, RetainHandling: 2, Identifier: 7}
	if d := m.OnSubscribe(ctx, testClient, sub); d.Verdict != event.Allow {
		t.Errorf("on_subscribe: %v\n%s", d.Verdict, logs)
	}
	pf := byte(1)
	msg := testMessage()
	msg.Props = event.Properties{ContentType: "text/plain", CorrelationData: []byte("id-1"), PayloadFormat: &pf, User: []event.UserProperty{{Key: "u", Value: "v"}}}
	if d := m.OnPublish(ctx, testClient, msg); d.Verdict != event.Allow {
		t.Errorf("on_publish: %v\n%s", d.Verdict, logs)
	}
}

func TestChainOrder(t *testing.T) {
	dir := t.TempDir()
	// first answers only for topics under a/, and records every call.
	first := writeScript(t, dir, "first.lua", `
local kv = require("kv")
function on_publish(client, msg)
  kv.set("last", (kv.get("last") or "") .. "first,")
  if msg.topic == "a/deny" then return false, "first says no" end
  if msg.topic == "a/allow" then return true end
  return nil
end`)
	second := writeScript(t, dir, "second.lua", `
local kv = require("kv")
function on_publish(client, msg)
  kv.set("last", (kv.get("last") or "") .. "second,")
  if msg.topic == "b/deny" then return false, "second says no" end
  return nil
end`)
	m := newManager(t, Options{})
	load(t, m, plugin("first", first), plugin("second", second))
	cases := []struct {
		topic, calls string
		verdict      event.Verdict
		reason       string
	}{
		{"a/deny", "first,", event.Deny, "first says no"},
		{"a/allow", "first,", event.Allow, ""},
		{"b/deny", "first,second,", event.Deny, "second says no"},
		{"c/other", "first,second,", event.Pass, ""},
	}
	for _, tc := range cases {
		m.KV().Del("last")
		msg := testMessage()
		msg.Topic = tc.topic
		d := m.OnPublish(ctx, testClient, msg)
		if d.Verdict != tc.verdict || d.Reason != tc.reason {
			t.Errorf("%s: %v %q, want %v %q", tc.topic, d.Verdict, d.Reason, tc.verdict, tc.reason)
		}
		if got := m.KV().Get("last").String(); got != tc.calls {
			t.Errorf("%s: called %q, want %q", tc.topic, got, tc.calls)
		}
	}
	// Attributes of a plugin that passes are kept for the one that decides.
	enrich := writeScript(t, dir, "enrich.lua", `function on_connect(c) return {attrs = {tier = "gold", who = "enrich"}} end`)
	decide := writeScript(t, dir, "decide.lua", `function on_connect(c) return {allow = true, attrs = {who = "decide"}} end`)
	load(t, m, plugin("enrich", enrich), plugin("decide", decide))
	d := m.OnConnect(ctx, &event.ConnectRequest{Client: &event.Client{ID: "x"}})
	if d.Verdict != event.Allow || fmt.Sprint(d.Attrs) != "map[tier:gold who:decide]" {
		t.Errorf("chained connect = %v %v, want allow with map[tier:gold who:decide]", d.Verdict, d.Attrs)
	}
}

func TestTimeoutFailPolicy(t *testing.T) {
	for _, fail := range []string{"closed", "open"} {
		t.Run(fail, func(t *testing.T) {
			m, logs := withScript(t, `
function on_publish(client, msg)
  if msg.topic == "loop" then
    while true do end
  end
  return true
end`, func(p *conf.Plugin) { p.Fail = fail; p.Timeout.Duration = 50 * time.Millisecond; p.Pool = 1 })
			msg := testMessage()
			msg.Topic = "loop"
			start := time.Now()
			d := m.OnPublish(ctx, testClient, msg)
			took := time.Since(start)
			want := event.Deny
			if fail == "open" {
				want = event.Allow
			}
			if d.Verdict != want {
				t.Errorf("verdict %v, want %v", d.Verdict, want)
			}
			if took > time.Second {
				t.Errorf("the endless loop took %v to be cut, want about 50ms", took)
			}
			// The VM was replaced: the next call is served.
			eventually(t, "a replacement VM", func() bool {
				return m.OnPublish(ctx, testClient, testMessage()).Verdict == event.Allow
			})
			st := m.Stats()[0]
			if st.Hooks["on_publish"].Timeouts != 1 || st.VMsReplaced != 1 {
				t.Errorf("stats = %+v, want 1 timeout and 1 VM replaced", st)
			}
			if !containsAll(logs.String(), "failure=timeout", "p.lua:4", "timed out after 50ms") {
				t.Errorf("log does not locate the timeout:\n%s", logs)
			}
		})
	}
}

func TestLuaErrorLoggedWithFileAndLine(t *testing.T) {
	m, logs := withScript(t, `
function on_publish(client, msg)
  local t = nil
  return t.field
end`)
	if d := m.OnPublish(ctx, testClient, testMessage()); d.Verdict != event.Deny {
		t.Errorf("verdict %v, want deny (fail closed)", d.Verdict)
	}
	if !containsAll(logs.String(), "p.lua:4:", "attempt to index", "hook=on_publish", "failure=error") {
		t.Errorf("log does not name the file and line:\n%s", logs)
	}
	// Repeated failures are counted, and logged once per interval.
	for range 5 {
		m.OnPublish(ctx, testClient, testMessage())
	}
	if got := m.Stats()[0].Hooks["on_publish"].Errors; got != 6 {
		t.Errorf("errors = %d, want 6", got)
	}
	if n := strings.Count(logs.String(), "attempt to index"); n != 1 {
		t.Errorf("the error was logged %d times, want once (rate-limited)", n)
	}
}

func TestBusyPoolFailsAfterTimeout(t *testing.T) {
	m, _ := withScript(t, `
function on_publish(client, msg)
  if msg.topic == "slow" then
    local t = os.clock()
    while os.clock() - t < 0.3 do end
  end
  return true
end`, func(p *conf.Plugin) { p.Pool = 1; p.Timeout.Duration = time.Second })
	slow := testMessage()
	slow.Topic = "slow"
	done := make(chan event.Verdict)
	go func() { done <- m.OnPublish(ctx, testClient, slow).Verdict }()
	// Wait until the slow call holds the only VM.
	eventually(t, "the slow call", func() bool { return m.Stats()[0].Hooks["on_publish"].Calls == 1 })
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if v := m.OnPublish(short, testClient, testMessage()).Verdict; v != event.Deny {
		t.Errorf("verdict with the pool busy = %v, want deny", v)
	}
	if v := <-done; v != event.Allow {
		t.Errorf("slow call verdict = %v, want allow", v)
	}
	if st := m.Stats()[0].Hooks["on_publish"]; st.Busy != 1 {
		t.Errorf("busy = %d, want 1", st.Busy)
	}
}

func TestCacheTTL(t *testing.T) {
	m, _ := withScript(t, `
local kv = require("kv")
function on_connect(client) kv.incr("connect") return client.password == "ok" end
function on_subscribe(client, sub) kv.incr("subscribe") return sub.filter ~= "secret" end
`, func(p *conf.Plugin) { p.CacheTTL.Duration = 200 * time.Millisecond })
	req := func(pw string) *event.ConnectRequest {
		return &event.ConnectRequest{Client: &event.Client{ID: "c", Username: "u"}, Password: []byte(pw), HasPassword: true}
	}
	for range 3 {
		if v := m.OnConnect(ctx, req("ok")).Verdict; v != event.Allow {
			t.Fatalf("connect verdict %v, want allow", v)
		}
		if v := m.OnConnect(ctx, req("bad")).Verdict; v != event.Deny {
			t.Fatalf("connect with a bad password: %v, want deny", v)
		}
		if v := m.OnSubscribe(ctx, testClient, &event.Subscription{Filter: "secret"}).Verdict; v != event.Deny {
			t.Fatalf("subscribe verdict %v, want deny", v)
		}
	}
	if n, s := m.KV().Get("connect").String(), m.KV().Get("subscribe").String(); n != "2" || s != "1" {
		t.Errorf("script calls: connect %s, subscribe %s; want 2 and 1 (the rest cached)", n, s)
	}
	st := m.Stats()[0].Hooks
	if st["on_connect"].CacheHits != 4 || st["on_connect"].Calls != 6 || st["on_connect"].Denied != 3 {
		t.Errorf("on_connect stats = %+v, want 6 calls, 4 cache hits, 3 denied", st["on_connect"])
	}
	// Once the 200ms cache_ttl has passed, the script is asked again.
	eventually(t, "the cached answer to expire", func() bool {
		m.OnConnect(ctx, req("ok"))
		return m.KV().Get("connect").String() == "3"
	})
}

func TestUnneededArgumentsAreNotBuilt(t *testing.T) {
	// A hook that declares no msg parameter still gets its answer applied.
	m, _ := withScript(t, `function on_publish(client) return client.id == "dev1" end`)
	if v := m.OnPublish(ctx, testClient, testMessage()).Verdict; v != event.Allow {
		t.Errorf("verdict %v, want allow", v)
	}
	m2, _ := withScript(t, `function on_publish(...) local c, msg = ... return msg.qos == 1 end`)
	if v := m2.OnPublish(ctx, testClient, testMessage()).Verdict; v != event.Allow {
		t.Errorf("vararg hook verdict %v, want allow", v)
	}
}

// TestMessageTableReuse: a hook that only reads msg's fields gets one
// table per VM, refilled; a hook that keeps msg gets a table per call.
func TestMessageTableReuse(t *testing.T) {
	m, _ := withScript(t, `
function on_publish(client, msg)
  local p = msg.properties
  return false, msg.topic .. " " .. msg.payload .. " " .. tostring(p and p.content_type)
end`, func(p *conf.Plugin) { p.Pool = 1 })
	gates := m.cur.Load().all[0].gates
	v := gates.tryGet()
	reused := v.msg != nil
	gates.put(v)
	if !reused {
		t.Fatal("the hook only reads msg, yet its table is not reused")
	}
	first := testMessage()
	first.Props.ContentType = "text/plain"
	second := testMessage()
	second.Topic, second.Payload = "b", []byte("2")
	if d := m.OnPublish(ctx, testClient, first); d.Reason != `devices/dev1/temp {"t":21.5} text/plain` {
		t.Errorf("first call saw %q", d.Reason)
	}
	if d := m.OnPublish(ctx, testClient, second); d.Reason != "b 2 nil" {
		t.Errorf("second call saw %q: fields of the first message left over", d.Reason)
	}

	keep, _ := withScript(t, `
local last
function on_publish(client, msg)
  local before = last and last.topic or "none"
  last = msg
  return false, before
end`, func(p *conf.Plugin) { p.Pool = 1 })
	if d := keep.OnPublish(ctx, testClient, first); d.Reason != "none" {
		t.Errorf("first call: %q", d.Reason)
	}
	if d := keep.OnPublish(ctx, testClient, second); d.Reason != "devices/dev1/temp" {
		t.Errorf("a kept msg changed under the script: %q, want the first message's topic", d.Reason)
	}
}
