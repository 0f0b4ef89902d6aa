package listener_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"
)

// v3 is a paho.mqtt.golang (MQTT 3.1.1) client with what it received.
type v3 struct {
	mqtt3.Client
	msgs chan mqtt3.Message
	lost chan error
}

// dialV3 connects a 3.1.1 client to url (tcp://, ssl://, ws:// or wss://).
func dialV3(t testing.TB, url, id string, tc *tls.Config) (*v3, error) {
	t.Helper()
	c := &v3{msgs: make(chan mqtt3.Message, 100), lost: make(chan error, 1)}
	o := mqtt3.NewClientOptions().AddBroker(url).SetClientID(id).
		SetAutoReconnect(false).SetConnectRetry(false).
		SetConnectTimeout(5 * time.Second).SetKeepAlive(30 * time.Second).
		SetCleanSession(true).SetProtocolVersion(4).
		SetConnectionLostHandler(func(_ mqtt3.Client, err error) { c.lost <- err }).
		SetDefaultPublishHandler(func(_ mqtt3.Client, m mqtt3.Message) { c.msgs <- m })
	if tc != nil {
		o.SetTLSConfig(tc)
	}
	c.Client = mqtt3.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return nil, context.DeadlineExceeded
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c, nil
}

func mustDialV3(t testing.TB, url, id string, tc *tls.Config) *v3 {
	t.Helper()
	c, err := dialV3(t, url, id, tc)
	if err != nil {
		t.Fatalf("connect %s to %s: %v", id, url, err)
	}
	return c
}

// roundTrip subscribes to topic, publishes payload at QoS 1 and waits for it.
func (c *v3) roundTrip(t testing.TB, topic, payload string) {
	t.Helper()
	if tok := c.Subscribe(topic, 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", topic, tok.Error())
	}
	if tok := c.Publish(topic, 1, false, payload); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
	select {
	case m := <-c.msgs:
		if m.Topic() != topic || string(m.Payload()) != payload {
			t.Fatalf("got %s %q, want %s %q", m.Topic(), m.Payload(), topic, payload)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no message on %s", topic)
	}
}

// v5 is a paho.golang (MQTT 5) client with what it received.
type v5 struct {
	*paho.Client
	msgs chan *paho.Publish
}

// dialV5 runs an MQTT 5 CONNECT over conn.
func dialV5(t testing.TB, conn net.Conn, id string) (*v5, error) {
	t.Helper()
	c := &v5{msgs: make(chan *paho.Publish, 100)}
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
	// No keep alive: paho.golang (v0.23.0) sends its first PINGREQ at once,
	// from its own goroutine, while the test writes SUBSCRIBE; it writes a
	// packet as several Write calls, which on a TLS or WebSocket connection
	// (no writev) can interleave, and the broker rightly refuses the
	// mangled SUBSCRIBE (0x81). About one run in thirty failed so.
	ack, err := c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true})
	if err != nil {
		conn.Close()
		return nil, err
	}
	if ack.ReasonCode != 0 {
		conn.Close()
		return nil, &connackError{code: ack.ReasonCode}
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c, nil
}

type connackError struct{ code byte }

func (e *connackError) Error() string { return fmt.Sprintf("CONNACK reason 0x%02x", e.code) }

// roundTrip subscribes to topic, publishes payload at QoS 1 and waits for it.
func (c *v5) roundTrip(t testing.TB, topic, payload string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: topic, QoS: 1}}}); err != nil {
		t.Fatalf("subscribe %s: %v", topic, err)
	}
	if _, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(payload)}); err != nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
	select {
	case m := <-c.msgs:
		if m.Topic != topic || string(m.Payload) != payload {
			t.Fatalf("got %s %q, want %s %q", m.Topic, m.Payload, topic, payload)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no message on %s", topic)
	}
}
