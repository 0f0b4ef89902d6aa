package core_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/tidemq/tide/core"
	"github.com/tidemq/tide/core/event"
	"github.com/tidemq/tide/core/packet"
)

// gates is a Go implementation of the three gates for tests.
type gates struct{}

func (gates) OnConnect(_ context.Context, r *event.ConnectRequest) event.ConnectDecision {
	switch {
	case r.Client.ID == "banned":
		return event.ConnectDecision{Verdict: event.Deny, Code: byte(packet.Banned), Reason: "go away"}
	case strings.HasPrefix(r.Client.ID, "dev-"):
		return event.ConnectDecision{Verdict: event.Allow, Attrs: map[string]any{"room": "kitchen"}}
	}
	return event.ConnectDecision{} // pass: the listener default applies
}

func (gates) OnSubscribe(_ context.Context, c *event.Client, s *event.Subscription) event.SubscribeDecision {
	switch {
	case strings.HasPrefix(s.Filter, "secret/"):
		return event.SubscribeDecision{Verdict: event.Deny}
	case strings.HasPrefix(s.Filter, "cheap/"):
		return event.SubscribeDecision{Verdict: event.Allow, QoS: 0, HasQoS: true}
	}
	return event.SubscribeDecision{}
}

func (gates) OnPublish(ctx context.Context, c *event.Client, m *event.Message) event.PublishDecision {
	switch {
	case ctx.Err() != nil: // as a Lua plugin failing closed when its call is cancelled
		return event.PublishDecision{Verdict: event.Deny, Reason: "cancelled"}
	case strings.HasPrefix(m.Topic, "deny/"):
		return event.PublishDecision{Verdict: event.Deny, Reason: "no"}
	case strings.HasPrefix(m.Topic, "drop/"):
		return event.PublishDecision{Verdict: event.Drop}
	case strings.HasPrefix(m.Topic, "legacy/"):
		r := *m
		r.Topic = "new/" + strings.TrimPrefix(m.Topic, "legacy/") + "/" + c.Attrs["room"].(string)
		r.Payload = append([]byte("rewritten:"), m.Payload...)
		return event.PublishDecision{Verdict: event.Allow, Message: &r}
	}
	return event.PublishDecision{}
}

func TestGates(t *testing.T) {
	s := core.New(core.Options{SysInterval: -1}, testLogger(t))
	g := gates{}
	s.SetGates(g, g, g)
	addr, err := s.ListenTCP("127.0.0.1:0", core.ListenerOptions{AllowAnonymous: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Shutdown(t.Context()) })

	r := dialRaw(t, addr.String(), packet.V5)
	r.send(&packet.Connect{ProtocolLevel: 5, ClientID: "banned", CleanStart: true})
	if ack := expect[*packet.Connack](r); ack.ReasonCode != packet.Banned || ack.Props.ReasonString != "go away" {
		t.Fatalf("CONNACK %v %q", ack.ReasonCode, ack.Props.ReasonString)
	}

	c, _ := dialV5(t, addr.String(), &paho.Connect{ClientID: "dev-1", CleanStart: true})
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	// paho reports the refused filter as an error and still returns the SUBACK.
	sa, _ := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "secret/x", QoS: 1}, {Topic: "cheap/x", QoS: 2},
		{Topic: "new/#", QoS: 1}, {Topic: "drop/#"}, {Topic: "deny/#"}}})
	if sa == nil {
		t.Fatal("no SUBACK")
	}
	if got := sa.Reasons; got[0] != 0x87 || got[1] != 0 || got[2] != 1 {
		t.Fatalf("SUBACK %v, want [0x87 0 1 ...]", got)
	}
	if r, err := c.Publish(ctx, &paho.Publish{Topic: "deny/x", QoS: 1, Payload: []byte("x")}); r == nil || r.ReasonCode != 0x87 {
		t.Fatalf("denied publish: %+v %v, want PUBACK 0x87", r, err)
	}
	if r := c.publish(t, &paho.Publish{Topic: "drop/x", QoS: 1, Payload: []byte("x")}); r.ReasonCode >= 0x80 {
		t.Fatalf("dropped publish: PUBACK %#x, want success", r.ReasonCode)
	}
	c.publish(t, &paho.Publish{Topic: "legacy/temp", QoS: 1, Payload: []byte("21")})
	m := c.recv(t)
	if m.Topic != "new/temp/kitchen" || string(m.Payload) != "rewritten:21" {
		t.Fatalf("got %s %q", m.Topic, m.Payload)
	}
	c.none(t, 200*time.Millisecond)
}

func TestEventsEmitted(t *testing.T) {
	s, addr := startServer(t, core.Options{})
	obs := s.Bus().Subscribe("test", event.All, event.QueueOptions{Size: 100})
	c := rawConnected(t, addr, packet.V5, "ev-client")
	subscribeRaw(t, c, "ev/#", 0)
	c.send(&packet.Publish{Topic: "ev/1", Payload: []byte(`{"t":1}`)})
	expect[*packet.Publish](c)
	c.send(&packet.Unsubscribe{PacketID: 2, Filters: []string{"ev/#"}})
	expect[*packet.Unsuback](c)
	c.send(&packet.Disconnect{})
	c.expectClosed()
	want := []event.Kind{event.Connect, event.Subscribe, event.Publish, event.Deliver, event.Unsubscribe, event.Disconnect}
	for _, k := range want {
		select {
		case e := <-obs.Queue(0):
			if e.Kind != k {
				t.Fatalf("event %v, want %v", e.Kind, k)
			}
			if e.Client == nil || e.Client.ID != "ev-client" {
				t.Fatalf("%v event client %+v", k, e.Client)
			}
			if k == event.Publish && (e.Message.ID == "" || string(e.Message.Payload) != `{"t":1}` || e.Message.Topic != "ev/1") {
				t.Fatalf("publish event %+v", e.Message)
			}
			if k == event.Disconnect && !e.Disconnect.Graceful {
				t.Fatalf("disconnect event %+v", e.Disconnect)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no %v event", k)
		}
	}
}

// A will is published as if its client had published it: through the
// publish gate (denied, dropped or rewritten like the client's own
// messages, with the client's attributes) and never to a $ topic, so that
// a will cannot reach where its client may not publish.
func TestWillsPassThePublishGate(t *testing.T) {
	s, addr := startServer(t, core.Options{})
	g := gates{}
	s.SetGates(g, g, g)
	watch := rawConnected(t, addr, packet.V5, uid("watch"))
	subscribeRaw(t, watch, "deny/#", 0)
	subscribeRaw(t, watch, "drop/#", 0)
	subscribeRaw(t, watch, "new/#", 0)
	subscribeRaw(t, watch, "ok/#", 0)

	dieWith := func(id, topic string, retain bool) {
		t.Helper()
		c := dialRaw(t, addr, packet.V5)
		c.connect(&packet.Connect{ClientID: id, CleanStart: true, Will: &packet.Will{Topic: topic, Payload: []byte("bye"), Retain: retain}})
		c.conn.Close()
	}
	for i, topic := range []string{"deny/w", "drop/w", "$SYS/broker/version"} {
		before := s.Stats().Denied
		dieWith(fmt.Sprintf("dev-%d", i), topic, true)
		eventually(t, "the will to "+topic+" to be refused", func() bool { return s.Stats().Denied > before })
	}
	if m, ok := s.Retained("$SYS/broker/version"); ok && string(m.Payload) == "bye" {
		t.Errorf("a will overwrote $SYS/broker/version")
	}
	dieWith("dev-rw", "legacy/w", false)
	if m := expect[*packet.Publish](watch); m.Topic != "new/w/kitchen" || string(m.Payload) != "rewritten:bye" {
		t.Errorf("rewritten will: %s %q, want new/w/kitchen \"rewritten:bye\"", m.Topic, m.Payload)
	}
	dieWith("dev-ok", "ok/w", false)
	if m := expect[*packet.Publish](watch); m.Topic != "ok/w" {
		t.Errorf("got %s, want the will to ok/w (and nothing to deny/, drop/ or $SYS)", m.Topic)
	}
}

// Shutdown publishes the wills of the clients it disconnects through the
// publish gate too, and its cancellation of the broker's context must not
// cut those gate calls short (the test gate refuses a cancelled call, as a
// Lua plugin failing closed does).
func TestShutdownWillsPassThePublishGate(t *testing.T) {
	s, addr := startServer(t, core.Options{}) // its cleanup's second Shutdown is a no-op
	g := gates{}
	s.SetGates(g, g, g)
	for _, w := range []string{"legacy/s", "deny/s"} {
		c := dialRaw(t, addr, packet.V5)
		c.connect(&packet.Connect{ClientID: "dev-" + w[:4], CleanStart: true, Will: &packet.Will{Topic: w, Payload: []byte("bye"), Retain: true}})
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if m, ok := s.Retained("new/s/kitchen"); !ok || string(m.Payload) != "rewritten:bye" {
		t.Errorf("rewritten will at shutdown: %+v %v, want new/s/kitchen retained", m, ok)
	}
	if _, ok := s.Retained("deny/s"); ok {
		t.Error("a denied will was published at shutdown")
	}
}
