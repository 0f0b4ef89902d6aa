package core_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/tidemq/tide/core"
	"github.com/tidemq/tide/core/packet"
)

// subscribeRaw subscribes and requires the granted QoS.
func subscribeRaw(t testing.TB, c *raw, filter string, qos byte) {
	t.Helper()
	c.send(&packet.Subscribe{PacketID: 99, Subs: []packet.SubOption{{Filter: filter, QoS: qos}}})
	sa := expect[*packet.Suback](c)
	if len(sa.Codes) != 1 || sa.Codes[0] != packet.ReasonCode(qos) {
		t.Fatalf("SUBACK %v, want QoS %d", sa.Codes, qos)
	}
}

// publishRaw publishes and completes the QoS handshake.
func publishRaw(t *testing.T, c *raw, topic string, qos byte, pid uint16, payload string) {
	t.Helper()
	c.send(&packet.Publish{Topic: topic, QoS: qos, PacketID: pid, Payload: []byte(payload)})
	switch qos {
	case 1:
		expect[*packet.Ack](c)
	case 2:
		expect[*packet.Ack](c)
		c.send(&packet.Ack{Kind: packet.PUBREL, PacketID: pid})
		expect[*packet.Ack](c)
	}
}

func TestPersistentSessionQueuesWhileOffline(t *testing.T) {
	s, addr := startServer(t, core.Options{})
	for _, v := range []byte{packet.V311, packet.V5} {
		id := uid("offline")
		cp := &packet.Connect{ClientID: id, CleanStart: true, Props: packet.Properties{SessionExpiry: packet.Ptr[uint32](300)}}
		if v != packet.V5 {
			cp.CleanStart = false
		}
		sub := dialRaw(t, addr, v)
		sub.connect(cp)
		subscribeRaw(t, sub, "offline/#", 2)
		sub.send(&packet.Disconnect{})
		sub.expectClosed()

		pub := rawConnected(t, addr, v, uid("pub"))
		before := s.Stats().DroppedOfflineQoS0
		publishRaw(t, pub, "offline/0", 0, 0, "q0")
		publishRaw(t, pub, "offline/1", 1, 1, "q1")
		publishRaw(t, pub, "offline/2", 2, 2, "q2")
		eventually(t, "QoS 0 drop counted", func() bool { return s.Stats().DroppedOfflineQoS0 == before+1 })

		back := dialRaw(t, addr, v)
		cp.CleanStart = false
		if ack := back.connect(cp); !ack.SessionPresent {
			t.Fatalf("v%d: session not present", v)
		}
		m1 := expect[*packet.Publish](back)
		m2 := expect[*packet.Publish](back)
		if m1.Topic != "offline/1" || m1.QoS != 1 || m2.Topic != "offline/2" || m2.QoS != 2 {
			t.Fatalf("v%d: got %s/%d then %s/%d", v, m1.Topic, m1.QoS, m2.Topic, m2.QoS)
		}
		if p, err := back.next(200 * time.Millisecond); err == nil {
			t.Fatalf("v%d: unexpected %+v (QoS 0 must not be queued)", v, p)
		}
	}
}

func TestQueueQoS0WhenConfigured(t *testing.T) {
	_, addr := startServer(t, core.Options{QueueQoS0: true})
	id := uid("q0")
	sub := dialRaw(t, addr, packet.V311)
	sub.connect(&packet.Connect{ClientID: id})
	subscribeRaw(t, sub, "q0/t", 0)
	sub.send(&packet.Disconnect{})
	sub.expectClosed()
	pub := rawConnected(t, addr, packet.V311, uid("p"))
	publishRaw(t, pub, "q0/t", 0, 0, "kept")
	publishRaw(t, pub, "q0/t", 1, 1, "after") // acknowledged: the QoS 0 one before it was routed
	back := dialRaw(t, addr, packet.V311)
	back.connect(&packet.Connect{ClientID: id})
	if m := expect[*packet.Publish](back); string(m.Payload) != "kept" {
		t.Fatalf("got %q", m.Payload)
	}
	if m := expect[*packet.Publish](back); string(m.Payload) != "after" {
		t.Fatalf("got %q", m.Payload)
	}
}

func TestSessionQueueLimitDropsAndCounts(t *testing.T) {
	for _, policy := range []core.QueueFullPolicy{core.DropNew, core.DropOldest} {
		t.Run(string(policy), func(t *testing.T) {
			s, addr := startServer(t, core.Options{MaxQueuedMessages: 3, QueueFullPolicy: policy})
			id := uid("limit")
			sub := dialRaw(t, addr, packet.V311)
			sub.connect(&packet.Connect{ClientID: id})
			subscribeRaw(t, sub, "limit", 1)
			sub.send(&packet.Disconnect{})
			sub.expectClosed()
			pub := rawConnected(t, addr, packet.V311, uid("p"))
			for i := 1; i <= 5; i++ {
				publishRaw(t, pub, "limit", 1, uint16(i), fmt.Sprint(i))
			}
			if got := s.Stats().DroppedQueueFull; got != 2 {
				t.Fatalf("dropped %d, want 2", got)
			}
			back := dialRaw(t, addr, packet.V311)
			back.connect(&packet.Connect{ClientID: id})
			var got string
			for i := 0; i < 3; i++ {
				m := expect[*packet.Publish](back)
				got += string(m.Payload)
				back.send(&packet.Ack{Kind: packet.PUBACK, PacketID: m.PacketID})
			}
			want := map[core.QueueFullPolicy]string{core.DropNew: "123", core.DropOldest: "345"}[policy]
			if got != want {
				t.Fatalf("received %q, want %q", got, want)
			}
		})
	}
}

func TestUnackedOutboundResentWithDup(t *testing.T) {
	_, addr := startServer(t, core.Options{})
	for _, v := range []byte{packet.V311, packet.V5} {
		id := uid("dup")
		cp := &packet.Connect{ClientID: id, Props: packet.Properties{SessionExpiry: packet.Ptr[uint32](60)}}
		sub := dialRaw(t, addr, v)
		sub.connect(cp)
		subscribeRaw(t, sub, "dup/#", 2)
		pub := rawConnected(t, addr, v, uid("p"))
		publishRaw(t, pub, "dup/1", 1, 1, "one")
		publishRaw(t, pub, "dup/2", 2, 2, "two")
		m1 := expect[*packet.Publish](sub)
		m2 := expect[*packet.Publish](sub)
		if m1.Dup || m2.Dup {
			t.Fatal("first delivery has DUP set")
		}
		// QoS 2: PUBREC sent, PUBREL received, PUBCOMP not sent before the drop.
		sub.send(&packet.Ack{Kind: packet.PUBREC, PacketID: m2.PacketID})
		expect[*packet.Ack](sub)
		sub.conn.Close()

		back := dialRaw(t, addr, v)
		back.connect(cp)
		r1 := expect[*packet.Publish](back)
		if !r1.Dup || r1.PacketID != m1.PacketID || string(r1.Payload) != "one" {
			t.Fatalf("v%d: resend %+v, want DUP of packet %d", v, r1, m1.PacketID)
		}
		rel := expect[*packet.Ack](back)
		if rel.Kind != packet.PUBREL || rel.PacketID != m2.PacketID {
			t.Fatalf("v%d: got %+v, want PUBREL %d", v, rel, m2.PacketID)
		}
		back.send(&packet.Ack{Kind: packet.PUBACK, PacketID: r1.PacketID})
		back.send(&packet.Ack{Kind: packet.PUBCOMP, PacketID: rel.PacketID})
		if p, err := back.next(200 * time.Millisecond); err == nil {
			t.Fatalf("v%d: unexpected %+v", v, p)
		}
	}
}

// A QoS 2 message whose PUBREL is lost with the connection is not routed
// again when the client resends it after reconnecting [MQTT-4.3.3-10].
func TestQoS2ExactlyOnceAcrossReconnect(t *testing.T) {
	_, addr := startServer(t, core.Options{})
	sub := rawConnected(t, addr, packet.V311, uid("s"))
	subscribeRaw(t, sub, "eo", 2)
	id := uid("eo-pub")
	pub := dialRaw(t, addr, packet.V311)
	pub.connect(&packet.Connect{ClientID: id})
	pub.send(&packet.Publish{Topic: "eo", QoS: 2, PacketID: 7, Payload: []byte("once")})
	if a := expect[*packet.Ack](pub); a.Kind != packet.PUBREC {
		t.Fatalf("got %+v", a)
	}
	pub.conn.Close()

	m := expect[*packet.Publish](sub)
	sub.send(&packet.Ack{Kind: packet.PUBREC, PacketID: m.PacketID})
	expect[*packet.Ack](sub)
	sub.send(&packet.Ack{Kind: packet.PUBCOMP, PacketID: m.PacketID})

	again := dialRaw(t, addr, packet.V311)
	if ack := again.connect(&packet.Connect{ClientID: id}); !ack.SessionPresent {
		t.Fatal("session not present")
	}
	again.send(&packet.Publish{Dup: true, Topic: "eo", QoS: 2, PacketID: 7, Payload: []byte("once")})
	if a := expect[*packet.Ack](again); a.Kind != packet.PUBREC || a.PacketID != 7 {
		t.Fatalf("got %+v", a)
	}
	again.send(&packet.Ack{Kind: packet.PUBREL, PacketID: 7})
	if a := expect[*packet.Ack](again); a.Kind != packet.PUBCOMP || a.ReasonCode != 0 {
		t.Fatalf("got %+v", a)
	}
	if p, err := sub.next(300 * time.Millisecond); err == nil {
		t.Fatalf("delivered twice: %+v", p)
	}
}

func TestSessionExpiryV5(t *testing.T) {
	s, addr := startServer(t, core.Options{})
	id := uid("exp")
	c, _ := dialV5(t, addr, &paho.Connect{ClientID: id, CleanStart: true, Properties: &paho.ConnectProperties{SessionExpiryInterval: packet.Ptr[uint32](1)}})
	c.subscribe(t, paho.SubscribeOptions{Topic: "exp", QoS: 1})
	_ = c.Disconnect(&paho.Disconnect{})
	eventually(t, "session expiry", func() bool { return s.Stats().ClientsTotal == 0 })
	r := dialRaw(t, addr, packet.V5)
	if ack := r.connect(&packet.Connect{ClientID: id}); ack.SessionPresent {
		t.Fatal("expired session still present")
	}
	if s.Stats().Subscriptions != 0 {
		t.Fatalf("%d subscriptions left after expiry", s.Stats().Subscriptions)
	}
}

func TestSessionExpiryChangedOnDisconnect(t *testing.T) {
	_, addr := startServer(t, core.Options{})
	id := uid("expd")
	r := dialRaw(t, addr, packet.V5)
	r.connect(&packet.Connect{ClientID: id, Props: packet.Properties{SessionExpiry: packet.Ptr[uint32](300)}})
	r.send(&packet.Disconnect{Props: packet.Properties{SessionExpiry: packet.Ptr[uint32](0)}})
	r.expectClosed()
	r2 := dialRaw(t, addr, packet.V5)
	if ack := r2.connect(&packet.Connect{ClientID: id, Props: packet.Properties{SessionExpiry: packet.Ptr[uint32](0)}}); ack.SessionPresent {
		t.Fatal("session kept although DISCONNECT set expiry 0")
	}
	// Expiry 0 at CONNECT cannot become non-zero at DISCONNECT [MQTT-3.14.2-2].
	r2.send(&packet.Disconnect{Props: packet.Properties{SessionExpiry: packet.Ptr[uint32](60)}})
	got := r2.expectClosed()
	if len(got) != 1 || got[0].(*packet.Disconnect).ReasonCode != packet.ProtocolError {
		t.Fatalf("got %+v, want DISCONNECT protocol error", got)
	}
}

func TestClientReceiveMaximumHonoured(t *testing.T) {
	_, addr := startServer(t, core.Options{})
	sub := dialRaw(t, addr, packet.V5)
	sub.connect(&packet.Connect{ClientID: uid("rm"), CleanStart: true, Props: packet.Properties{ReceiveMaximum: packet.Ptr[uint16](2)}})
	subscribeRaw(t, sub, "rm", 1)
	pub := rawConnected(t, addr, packet.V5, uid("p"))
	for i := 1; i <= 5; i++ {
		publishRaw(t, pub, "rm", 1, uint16(i), fmt.Sprint(i))
	}
	a := expect[*packet.Publish](sub)
	b := expect[*packet.Publish](sub)
	if p, err := sub.next(200 * time.Millisecond); err == nil {
		t.Fatalf("third message %+v sent beyond receive maximum 2", p)
	}
	seen := string(a.Payload) + string(b.Payload)
	for len(seen) < 5 {
		sub.send(&packet.Ack{Kind: packet.PUBACK, PacketID: a.PacketID})
		a, b = b, expect[*packet.Publish](sub)
		seen += string(b.Payload)
	}
	if seen != "12345" {
		t.Fatalf("order %q", seen)
	}
}

func TestInboundReceiveMaximumExceeded(t *testing.T) {
	_, addr := startServer(t, core.Options{ReceiveMaximum: 2})
	r := dialRaw(t, addr, packet.V5)
	ack := r.connect(&packet.Connect{ClientID: uid("rmx"), CleanStart: true})
	if ack.Props.ReceiveMaximum == nil || *ack.Props.ReceiveMaximum != 2 {
		t.Fatalf("CONNACK receive maximum %v, want 2", ack.Props.ReceiveMaximum)
	}
	for i := 1; i <= 3; i++ {
		r.send(&packet.Publish{Topic: "x", QoS: 2, PacketID: uint16(i)})
	}
	got := r.expectClosed()
	last := got[len(got)-1].(*packet.Disconnect)
	if last.ReasonCode != packet.ReceiveMaximumExceeded {
		t.Fatalf("got %v, want receive maximum exceeded", last.ReasonCode)
	}
}

func TestPacketIDsUniqueAndRecycled(t *testing.T) {
	_, addr := startServer(t, core.Options{MaxInflight: 10, MaxQueuedMessages: -1})
	sub := rawConnected(t, addr, packet.V311, uid("ids"))
	subscribeRaw(t, sub, "ids", 1)
	pub := rawConnected(t, addr, packet.V311, uid("p"))
	const n = 70000 // more than 65535 identifiers: they must be recycled
	go func() {
		for i := 0; i < n; i++ {
			pub.send(&packet.Publish{Topic: "ids", Payload: []byte{1}, QoS: 1, PacketID: uint16(i%60000 + 1)})
		}
	}()
	seen := map[uint16]bool{}
	for got := 0; got < n; {
		// Take a full window, check its identifiers, then acknowledge it.
		batch := map[uint16]bool{}
		for len(batch) < 10 && got+len(batch) < n {
			m := expect[*packet.Publish](sub)
			if batch[m.PacketID] || m.PacketID == 0 {
				t.Fatalf("packet id %d reused while in flight", m.PacketID)
			}
			batch[m.PacketID] = true
			seen[m.PacketID] = true
		}
		for pid := range batch {
			sub.send(&packet.Ack{Kind: packet.PUBACK, PacketID: pid})
		}
		got += len(batch)
	}
	if len(seen) != 65535 {
		t.Fatalf("%d distinct identifiers used, want all 65535 in turn", len(seen))
	}
}
