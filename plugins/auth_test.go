package plugins

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	lua "github.com/yuin/gopher-lua"

	"github.com/tidemq/tide/conf"
	"github.com/tidemq/tide/core/event"
)

const challengeMethod = "TIDE-HMAC-SHA256"

// hmacAnswerer is a paho client's side of auth_challenge.lua.
type hmacAnswerer struct {
	secret atomic.Value // string
	nonces chan string
}

func newAnswerer(secret string) *hmacAnswerer {
	h := &hmacAnswerer{nonces: make(chan string, 10)}
	h.secret.Store(secret)
	return h
}

func (h *hmacAnswerer) Authenticate(a *paho.Auth) *paho.Auth {
	nonce := string(a.Properties.AuthData)
	h.nonces <- nonce
	mac := hmac.New(sha256.New, []byte(h.secret.Load().(string)))
	mac.Write([]byte(nonce))
	return &paho.Auth{ReasonCode: 0x18, Properties: &paho.AuthProperties{AuthMethod: a.Properties.AuthMethod,
		AuthData: []byte(hex.EncodeToString(mac.Sum(nil)))}}
}

func (h *hmacAnswerer) Authenticated() {}

func challengeConnect(id, method, user string) *paho.Connect {
	return &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30,
		Properties: &paho.ConnectProperties{AuthMethod: method, AuthData: []byte(user)}}
}

func TestAuthChallengeExample(t *testing.T) {
	b := startBroker(t, exampleScript(t, "auth_challenge.lua", map[string]any{
		"secrets": map[string]any{"sensor-17": "k3y", "sensor-18": "other"},
	}, nil))

	h := newAnswerer("k3y")
	c, ack, err := dialV5Auth(t, b.addr, challengeConnect("s17", challengeMethod, "sensor-17"), h)
	if err != nil {
		t.Fatalf("connect: %v (CONNACK %+v)", err, ack)
	}
	if ack.Properties.AuthMethod != challengeMethod {
		t.Fatalf("CONNACK authentication method %q", ack.Properties.AuthMethod)
	}
	first := <-h.nonces
	if len(first) != 32 {
		t.Fatalf("nonce %q: want 16 random bytes in hex", first)
	}
	if ci, _ := b.srv.Client("s17"); ci.Username != "sensor-17" {
		t.Fatalf("user name %q, want sensor-17 from on_auth", ci.Username)
	}
	c.subscribe(t, "x/#", 1)
	c.publish(t, &paho.Publish{Topic: "x/1", QoS: 1, Payload: []byte("hi")})
	if m := c.recv(t); string(m.Payload) != "hi" {
		t.Fatalf("got %q", m.Payload)
	}

	// Re-authentication: a new nonce, the same proof of the secret.
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	resp, err := c.Authenticate(ctx, &paho.Auth{ReasonCode: 0x19, Properties: &paho.AuthProperties{AuthMethod: challengeMethod, AuthData: []byte("sensor-17")}})
	if err != nil || !resp.Success || resp.ReasonCode != 0 {
		t.Fatalf("re-authentication: %+v %v", resp, err)
	}
	if second := <-h.nonces; second == first {
		t.Fatal("the same nonce twice")
	}

	refused := []struct {
		name, method, user, secret string
		code                       byte
	}{
		{"wrong secret", challengeMethod, "sensor-17", "guess", 0x86},
		{"another user's secret", challengeMethod, "sensor-17", "other", 0x86},
		{"unknown user", challengeMethod, "nobody", "k3y", 0x86},
		{"a method no plugin offers", "SCRAM-SHA-256", "sensor-17", "k3y", 0x8C},
	}
	for _, tc := range refused {
		_, ack, err := dialV5Auth(t, b.addr, challengeConnect("bad", tc.method, tc.user), newAnswerer(tc.secret))
		if err == nil || ack == nil || ack.ReasonCode != tc.code {
			t.Errorf("%s: CONNACK %+v, %v: want 0x%02X", tc.name, ack, err, tc.code)
		}
	}

	// A client that names no method is not the script's business.
	mustV5(t, b.addr, "plain")

	st := b.m.Stats()[0].Hooks["on_auth"]
	// 2 steps for the first connect, 2 for the re-authentication, 2 for each
	// refused answer, 1 for the unknown method.
	if st.Calls != 2+2+3*2+1 || st.Denied != 3 || st.Errors != 0 {
		t.Fatalf("on_auth stats %+v", st)
	}
}

func TestAuthPluginsInOrderAndFailures(t *testing.T) {
	first := scriptPlugin(t, "first", `
function on_auth(client, auth)
  if auth.method == "ONE" then return {allow = true, data = "one:" .. (auth.data or ""), username = "u1"} end
  if auth.method == "BROKEN" then error("broken method") end
  if auth.method == "BOTH" then return {continue = true, allow = true} end
  if auth.method == "LIST" then return {continue = true, state = function() end} end
end`)
	second := scriptPlugin(t, "second", `
function on_auth(client, auth)
  if auth.method == "TWO" then
    if auth.step == 1 then return {continue = true, data = "more", state = {n = 1, from = client.id}} end
    if auth.state.n == 1 and auth.state.from == client.id and auth.data == "ok" then return true end
    return false, "wrong answer"
  end
end`, func(p *conf.Plugin) { p.Pool = 3 })
	b := startBroker(t, first, second)

	// (paho needs a handler even where the server asks nothing.)
	okAnswer := answerFunc(func(a *paho.Auth) []byte { return []byte("ok") })
	_, ack, err := dialV5Auth(t, b.addr, challengeConnect("c1", "ONE", "tok"), okAnswer)
	if err != nil || string(ack.Properties.AuthData) != "one:tok" {
		t.Fatalf("ONE: %+v %v", ack, err)
	}
	if ci, _ := b.srv.Client("c1"); ci.Username != "u1" {
		t.Fatalf("user name %q, want u1", ci.Username)
	}
	if _, ack, err := dialV5Auth(t, b.addr, challengeConnect("c2", "TWO", ""), okAnswer); err != nil {
		t.Fatalf("TWO: %+v %v", ack, err)
	}
	bad := answerFunc(func(a *paho.Auth) []byte { return []byte("nope") })
	if _, ack, _ := dialV5Auth(t, b.addr, challengeConnect("c3", "TWO", ""), bad); ack == nil || ack.ReasonCode != 0x87 || ack.Properties.ReasonString != "wrong answer" {
		t.Fatalf("TWO, wrong answer: %+v", ack)
	}
	// A failing script applies the plugin's fail policy (closed: 0x87), and
	// the log names the script and line.
	for _, m := range []string{"BROKEN", "BOTH", "LIST"} {
		_, ack, _ := dialV5Auth(t, b.addr, challengeConnect("c4", m, ""), okAnswer)
		if ack == nil || ack.ReasonCode != 0x87 || ack.Properties.ReasonString != "plugin first unavailable" {
			t.Fatalf("%s: %+v", m, ack)
		}
	}
	// (One line per plugin, hook and kind of failure every ten seconds.)
	eventually(t, "the error logged", func() bool { return containsAll(b.logs.String(), "first.lua:4: broken method", "hook=on_auth") })
	if st := b.m.Stats()[0].Hooks["on_auth"]; st.Errors != 3 {
		t.Fatalf("first's on_auth stats %+v, want 3 errors", st)
	}
}

// answerFunc answers every challenge with f's data.
type answerFunc func(*paho.Auth) []byte

func (f answerFunc) Authenticate(a *paho.Auth) *paho.Auth {
	return &paho.Auth{ReasonCode: 0x18, Properties: &paho.AuthProperties{AuthMethod: a.Properties.AuthMethod, AuthData: f(a)}}
}

func (answerFunc) Authenticated() {}

func TestParseAuth(t *testing.T) {
	L := lua.NewState()
	defer L.Close()
	for _, tc := range []struct {
		src  string
		want event.AuthDecision
		err  string
	}{
		{`return nil`, event.AuthDecision{}, ""},
		{`return true`, event.AuthDecision{Verdict: event.Allow}, ""},
		{`return false, "no"`, event.AuthDecision{Verdict: event.Deny, Reason: "no"}, ""},
		{`return {continue = true, data = "c"}`, event.AuthDecision{Continue: true, Data: []byte("c")}, ""},
		{`return {allow = false, code = 0x8A, reason = "banned"}`, event.AuthDecision{Verdict: event.Deny, Code: 0x8A, Reason: "banned"}, ""},
		{`return {data = 5}`, event.AuthDecision{}, "on_auth returned data = 5: want a string"},
		{`return {continue = "yes"}`, event.AuthDecision{}, "on_auth returned continue = yes: want true or false"},
		{`return {allow = true, code = 3}`, event.AuthDecision{}, "on_auth returned code = 3: want an MQTT 5 error reason code"},
		{`return 7`, event.AuthDecision{}, "on_auth returned a number: want nil, true, false or a table"},
		{`return {continue = true, allow = true}`, event.AuthDecision{}, "on_auth returned both continue and allow"},
		{`return {continue = true, state = function() end}`, event.AuthDecision{}, "on_auth returned a state that cannot be kept"},
	} {
		fn, err := L.LoadString(tc.src)
		if err != nil {
			t.Fatal(err)
		}
		L.Push(fn)
		if err := L.PCall(0, 2, nil); err != nil {
			t.Fatal(err)
		}
		r1, r2 := L.Get(-2), L.Get(-1)
		L.SetTop(0)
		d, err := parseAuth(r1, r2)
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error %v, want %q", tc.src, err, tc.err)
			}
		case err != nil:
			t.Errorf("%s: %v", tc.src, err)
		case d.Verdict != tc.want.Verdict || d.Continue != tc.want.Continue || string(d.Data) != string(tc.want.Data) || d.Reason != tc.want.Reason || d.Code != tc.want.Code:
			t.Errorf("%s: %+v, want %+v", tc.src, d, tc.want)
		}
	}
}
