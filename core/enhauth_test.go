package core_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/tidemq/tide/core"
	"github.com/tidemq/tide/core/event"
	"github.com/tidemq/tide/core/packet"
)

// The challenge-response method of these tests: the client names itself,
// the server sends a nonce, the client proves it knows the shared secret
// with HMAC-SHA256(secret, nonce).
const (
	hmacMethod = "TEST-HMAC"
	oneStep    = "TEST-TOKEN" // the token is the data of the CONNECT
	testSecret = "s3cret"
)

func proof(secret, nonce []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write(nonce)
	return []byte(hex.EncodeToString(m.Sum(nil)))
}

// authGates is a ConnectGate and AuthGate.
type authGates struct {
	nonces atomic.Int64
	steps  atomic.Int64
	reauth atomic.Int64
}

type hmacState struct{ user, nonce string }

func (*authGates) OnConnect(context.Context, *event.ConnectRequest) event.ConnectDecision {
	return event.ConnectDecision{Verdict: event.Deny, Reason: "on_connect must not be asked"}
}

func (g *authGates) OnAuth(_ context.Context, req *event.AuthRequest) event.AuthDecision {
	g.steps.Add(1)
	if req.Reauth {
		g.reauth.Add(1)
	}
	switch req.Method {
	case oneStep:
		if string(req.Data) == "good-token" {
			return event.AuthDecision{Verdict: event.Allow, Data: []byte("token accepted"), Username: ptr("token-user")}
		}
		return event.AuthDecision{Verdict: event.Deny, Code: byte(packet.BadUserNameOrPassword), Reason: "unknown token"}
	case hmacMethod:
		switch req.Step {
		case 1:
			nonce := "nonce-" + string(rune('a'+g.nonces.Add(1)%26))
			return event.AuthDecision{Continue: true, Data: []byte(nonce), State: hmacState{string(req.Data), nonce}}
		case 2:
			st := req.State.(hmacState)
			if !hmac.Equal(req.Data, proof([]byte(testSecret), []byte(st.nonce))) {
				return event.AuthDecision{Verdict: event.Deny, Code: byte(packet.BadUserNameOrPassword), Reason: "bad proof"}
			}
			return event.AuthDecision{Verdict: event.Allow, Data: []byte("welcome " + st.user), Username: &st.user, Attrs: map[string]any{"via": "hmac"}}
		}
		return event.AuthDecision{Verdict: event.Deny, Reason: "too many steps"}
	}
	return event.AuthDecision{} // not this gate's method
}

func (*authGates) OnSubscribe(context.Context, *event.Client, *event.Subscription) event.SubscribeDecision {
	return event.SubscribeDecision{}
}

func (*authGates) OnPublish(context.Context, *event.Client, *event.Message) event.PublishDecision {
	return event.PublishDecision{}
}

// hmacClient answers the server's challenges with a secret.
type hmacClient struct {
	secret        atomic.Value // string; the test changes it
	challenges    chan []byte
	authenticated chan struct{}
}

func newHMACClient(secret string) *hmacClient {
	h := &hmacClient{challenges: make(chan []byte, 10), authenticated: make(chan struct{}, 10)}
	h.secret.Store(secret)
	return h
}

func (h *hmacClient) Authenticate(a *paho.Auth) *paho.Auth {
	h.challenges <- a.Properties.AuthData
	return &paho.Auth{ReasonCode: byte(packet.ContinueAuthentication), Properties: &paho.AuthProperties{
		AuthMethod: a.Properties.AuthMethod, AuthData: proof([]byte(h.secret.Load().(string)), a.Properties.AuthData)}}
}

func (h *hmacClient) Authenticated() { h.authenticated <- struct{}{} }

func startAuthServer(t *testing.T, opts core.Options) (*core.Server, string, *authGates) {
	t.Helper()
	s, addr := startServer(t, opts, core.ListenerOptions{Name: "test", AllowAnonymous: false})
	g := &authGates{}
	s.SetGates(g, g, g)
	return s, addr, g
}

func TestEnhancedAuthChallengeResponse(t *testing.T) {
	s, addr, g := startAuthServer(t, core.Options{})
	h := newHMACClient(testSecret)
	c, ack, err := dialV5With(t, addr, &paho.Connect{ClientID: "hmac-1", CleanStart: true,
		Properties: &paho.ConnectProperties{AuthMethod: hmacMethod, AuthData: []byte("alice")}}, h)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	if ack.ReasonCode != 0 || ack.Properties.AuthMethod != hmacMethod || string(ack.Properties.AuthData) != "welcome alice" {
		t.Fatalf("CONNACK %d method %q data %q", ack.ReasonCode, ack.Properties.AuthMethod, ack.Properties.AuthData)
	}
	if ch := <-h.challenges; !bytes.HasPrefix(ch, []byte("nonce-")) {
		t.Fatalf("challenge %q", ch)
	}
	select {
	case <-h.authenticated:
	case <-time.After(5 * time.Second):
		t.Fatal("paho was not told it is authenticated")
	}
	ci, ok := s.Client("hmac-1")
	if !ok || ci.Username != "alice" {
		t.Fatalf("client %+v %v: want user name alice from the gate", ci, ok)
	}
	if g.steps.Load() != 2 {
		t.Fatalf("%d steps, want 2", g.steps.Load())
	}

	// It works as any client.
	c.subscribe(t, paho.SubscribeOptions{Topic: "a/#", QoS: 1})
	c.publish(t, &paho.Publish{Topic: "a/b", QoS: 1, Payload: []byte("x")})
	if m := c.recv(t); string(m.Payload) != "x" {
		t.Fatalf("got %q", m.Payload)
	}
}

func TestEnhancedAuthOneStep(t *testing.T) {
	s, addr, _ := startAuthServer(t, core.Options{})
	_, ack, err := dialV5With(t, addr, &paho.Connect{ClientID: "tok-1", CleanStart: true,
		Properties: &paho.ConnectProperties{AuthMethod: oneStep, AuthData: []byte("good-token")}}, newHMACClient(""))
	if err != nil {
		t.Fatal(err)
	}
	if ack.Properties.AuthMethod != oneStep || string(ack.Properties.AuthData) != "token accepted" {
		t.Fatalf("CONNACK method %q data %q", ack.Properties.AuthMethod, ack.Properties.AuthData)
	}
	if ci, _ := s.Client("tok-1"); ci.Username != "token-user" {
		t.Fatalf("user name %q", ci.Username)
	}
}

func TestEnhancedAuthRefused(t *testing.T) {
	s, addr, _ := startAuthServer(t, core.Options{})
	for _, tc := range []struct {
		name, method, data, secret string
		code                       byte
		reason                     string
	}{
		{"wrong secret", hmacMethod, "bob", "guess", byte(packet.BadUserNameOrPassword), "bad proof"},
		{"bad token", oneStep, "forged", "", byte(packet.BadUserNameOrPassword), "unknown token"},
		{"method nobody offers", "SCRAM-SHA-1", "n,,n=user", "", byte(packet.BadAuthenticationMethod), `authentication method "SCRAM-SHA-1" is not supported`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, ack, err := dialV5With(t, addr, &paho.Connect{ClientID: "refused", CleanStart: true,
				Properties: &paho.ConnectProperties{AuthMethod: tc.method, AuthData: []byte(tc.data)}}, newHMACClient(tc.secret))
			if err == nil {
				t.Fatal("connected")
			}
			if ack == nil || ack.ReasonCode != tc.code || ack.Properties.ReasonString != tc.reason {
				t.Fatalf("CONNACK %+v, want 0x%02X %q", ack, tc.code, tc.reason)
			}
			if ack.Properties.AuthMethod != "" {
				t.Fatalf("a refusing CONNACK carries method %q", ack.Properties.AuthMethod)
			}
		})
	}
	if _, ok := s.Client("refused"); ok {
		t.Fatal("a refused client is connected")
	}
}

func TestEnhancedAuthReauthenticate(t *testing.T) {
	_, addr, g := startAuthServer(t, core.Options{})
	h := newHMACClient(testSecret)
	c, _, err := dialV5With(t, addr, &paho.Connect{ClientID: "re-1", CleanStart: true,
		Properties: &paho.ConnectProperties{AuthMethod: hmacMethod, AuthData: []byte("carol")}}, h)
	if err != nil {
		t.Fatal(err)
	}
	<-h.challenges
	c.subscribe(t, paho.SubscribeOptions{Topic: "re/#", QoS: 1})

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	resp, err := c.Authenticate(ctx, &paho.Auth{ReasonCode: byte(packet.ReAuthenticate),
		Properties: &paho.AuthProperties{AuthMethod: hmacMethod, AuthData: []byte("carol")}})
	if err != nil || !resp.Success || resp.ReasonCode != 0 {
		t.Fatalf("re-authentication: %+v, %v", resp, err)
	}
	if g.reauth.Load() != 2 {
		t.Fatalf("%d re-authentication steps, want 2", g.reauth.Load())
	}
	// Other flows go on.
	c.publish(t, &paho.Publish{Topic: "re/x", QoS: 1, Payload: []byte("after")})
	if m := c.recv(t); string(m.Payload) != "after" {
		t.Fatalf("got %q", m.Payload)
	}

	// A failed re-authentication ends the connection with DISCONNECT
	// [MQTT-4.12.1-2].
	h.secret.Store("changed")
	go func() {
		_, _ = c.Authenticate(ctx, &paho.Auth{ReasonCode: byte(packet.ReAuthenticate), Properties: &paho.AuthProperties{AuthMethod: hmacMethod, AuthData: []byte("carol")}})
	}()
	select {
	case d := <-c.disc:
		if d.ReasonCode != byte(packet.BadUserNameOrPassword) || d.Properties.ReasonString != "bad proof" {
			t.Fatalf("DISCONNECT 0x%02X %q", d.ReasonCode, d.Properties.ReasonString)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no DISCONNECT after a failed re-authentication")
	}
}

// Protocol errors, with raw packets.
func TestEnhancedAuthProtocolErrors(t *testing.T) {
	_, addr, _ := startAuthServer(t, core.Options{ConnectTimeout: 500 * time.Millisecond})
	start := func(t *testing.T) (*raw, *packet.Auth) {
		r := dialRaw(t, addr, packet.V5)
		r.send(&packet.Connect{ProtocolLevel: 5, ClientID: "raw", CleanStart: true, Props: packet.Properties{AuthMethod: hmacMethod, AuthData: []byte("dave")}})
		a := expect[*packet.Auth](r)
		if a.ReasonCode != packet.ContinueAuthentication || a.Props.AuthMethod != hmacMethod {
			t.Fatalf("AUTH 0x%02X %q", byte(a.ReasonCode), a.Props.AuthMethod)
		}
		return r, a
	}
	refusedWith := func(t *testing.T, r *raw, code packet.ReasonCode, reason string) {
		t.Helper()
		got := r.expectClosed()
		if len(got) != 1 {
			t.Fatalf("got %+v, want one CONNACK", got)
		}
		ack, ok := got[0].(*packet.Connack)
		if !ok || ack.ReasonCode != code || !strings.Contains(ack.Props.ReasonString, reason) {
			t.Fatalf("got %+v, want CONNACK %v %q", got[0], code, reason)
		}
	}
	t.Run("another method in AUTH", func(t *testing.T) {
		r, _ := start(t)
		r.send(&packet.Auth{ReasonCode: packet.ContinueAuthentication, Props: packet.Properties{AuthMethod: "OTHER", AuthData: []byte("x")}})
		refusedWith(t, r, packet.ProtocolError, `AUTH names authentication method "OTHER"`)
	})
	t.Run("re-authenticate before CONNACK", func(t *testing.T) {
		r, _ := start(t)
		r.send(&packet.Auth{ReasonCode: packet.ReAuthenticate, Props: packet.Properties{AuthMethod: hmacMethod}})
		refusedWith(t, r, packet.ProtocolError, "AUTH with reason code 0x19")
	})
	t.Run("PUBLISH before CONNACK", func(t *testing.T) {
		r, _ := start(t)
		r.send(&packet.Publish{Topic: "a", Payload: []byte("x")})
		refusedWith(t, r, packet.ProtocolError, "PUBLISH before CONNACK")
	})
	t.Run("DISCONNECT during the exchange", func(t *testing.T) {
		r, _ := start(t)
		r.send(&packet.Disconnect{})
		if got := r.expectClosed(); len(got) != 0 {
			t.Fatalf("got %+v after DISCONNECT", got)
		}
	})
	t.Run("no answer", func(t *testing.T) {
		r, _ := start(t)
		began := time.Now()
		if got := r.expectClosed(); len(got) != 0 {
			t.Fatalf("got %+v", got)
		}
		if d := time.Since(began); d > 5*time.Second {
			t.Fatalf("closed after %v; the connect timeout is 500ms", d)
		}
	})
	t.Run("the right answer", func(t *testing.T) {
		r, a := start(t)
		r.send(&packet.Auth{ReasonCode: packet.ContinueAuthentication, Props: packet.Properties{AuthMethod: hmacMethod, AuthData: proof([]byte(testSecret), a.Props.AuthData)}})
		ack := expect[*packet.Connack](r)
		if ack.ReasonCode != packet.Success || ack.Props.AuthMethod != hmacMethod {
			t.Fatalf("CONNACK %v %q", ack.ReasonCode, ack.Props.AuthMethod)
		}
		// Connected: AUTH 0x18 outside a re-authentication, and AUTH with
		// another method, are protocol errors (DISCONNECT 0x82).
		r.send(&packet.Auth{ReasonCode: packet.ContinueAuthentication, Props: packet.Properties{AuthMethod: hmacMethod}})
		got := r.expectClosed()
		if len(got) != 1 || got[0].(*packet.Disconnect).ReasonCode != packet.ProtocolError {
			t.Fatalf("got %+v, want DISCONNECT protocol error", got)
		}
	})
	t.Run("re-authenticate with another method", func(t *testing.T) {
		r, a := start(t)
		r.send(&packet.Auth{ReasonCode: packet.ContinueAuthentication, Props: packet.Properties{AuthMethod: hmacMethod, AuthData: proof([]byte(testSecret), a.Props.AuthData)}})
		expect[*packet.Connack](r)
		r.send(&packet.Auth{ReasonCode: packet.ReAuthenticate, Props: packet.Properties{AuthMethod: oneStep, AuthData: []byte("good-token")}})
		got := r.expectClosed()
		if len(got) != 1 || got[0].(*packet.Disconnect).ReasonCode != packet.ProtocolError {
			t.Fatalf("got %+v, want DISCONNECT protocol error", got)
		}
	})
}

func ptr[T any](v T) *T { return &v }
