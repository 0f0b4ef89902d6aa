package core_test

import (
	"context"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/tidemq/tide/core"
	"github.com/tidemq/tide/core/packet"
)

func TestRetainedStoreReplaceDelete(t *testing.T) {
	s, addr := startServer(t, core.Options{})
	for _, v := range []byte{packet.V31, packet.V311, packet.V5} {
		topic := fmt.Sprintf("ret/%d", v)
		pub := rawConnected(t, addr, v, uid("p"))
		pub.send(&packet.Publish{Topic: topic, Retain: true, Payload: []byte("first")})
		pub.send(&packet.Publish{Topic: topic, Retain: true, QoS: 1, PacketID: 1, Payload: []byte("second")})
		expect[*packet.Ack](pub)

		sub := rawConnected(t, addr, v, uid("s"))
		subscribeRaw(t, sub, "ret/#", 1)
		m := expect[*packet.Publish](sub)
		if !m.Retain || string(m.Payload) != "second" || m.QoS != 1 {
			t.Fatalf("v%d: retained delivery %+v", v, m)
		}
		sub.send(&packet.Ack{Kind: packet.PUBACK, PacketID: m.PacketID})
		// A live message to an existing subscription has retain 0 [MQTT-3.3.1-9].
		pub.send(&packet.Publish{Topic: topic, Retain: true, Payload: []byte("third")})
		if m := expect[*packet.Publish](sub); m.Retain || string(m.Payload) != "third" {
			t.Fatalf("v%d: live delivery %+v", v, m)
		}
		// An empty retained payload deletes, and is delivered as a normal message.
		pub.send(&packet.Publish{Topic: topic, Retain: true})
		if m := expect[*packet.Publish](sub); len(m.Payload) != 0 {
			t.Fatalf("v%d: got %+v", v, m)
		}
		eventually(t, "retained deleted", func() bool { _, ok := s.Retained(topic); return !ok })
		late := rawConnected(t, addr, v, uid("late"))
		subscribeRaw(t, late, topic, 0)
		if p, err := late.next(200 * time.Millisecond); err == nil {
			t.Fatalf("v%d: deleted retained message delivered: %+v", v, p)
		}
	}
}

func TestRetainHandlingAndRetainAsPublished(t *testing.T) {
	s, addr := startServer(t, core.Options{})
	pub := rawConnected(t, addr, packet.V5, uid("p"))
	pub.send(&packet.Publish{Topic: "rh/a", Retain: true, Payload: []byte("r")})
	eventually(t, "retained stored", func() bool { _, ok := s.Retained("rh/a"); return ok })
	sub := rawConnected(t, addr, packet.V5, uid("s"))
	try := func(o packet.SubOption, want bool) {
		t.Helper()
		sub.send(&packet.Subscribe{PacketID: 1, Subs: []packet.SubOption{o}})
		expect[*packet.Suback](sub)
		p, err := sub.next(200 * time.Millisecond)
		if got := err == nil; got != want {
			t.Fatalf("%+v: retained delivered = %v (%+v), want %v", o, got, p, want)
		}
		if want && !p.(*packet.Publish).Retain {
			t.Fatal("retained message without the retain flag")
		}
	}
	try(packet.SubOption{Filter: "rh/+", RetainHandling: 2}, false) // never
	try(packet.SubOption{Filter: "rh/#", RetainHandling: 1}, true)  // new subscription
	try(packet.SubOption{Filter: "rh/#", RetainHandling: 1}, false) // existing subscription
	try(packet.SubOption{Filter: "rh/#", RetainHandling: 0}, true)  // always

	rap := rawConnected(t, addr, packet.V5, uid("rap"))
	rap.send(&packet.Subscribe{PacketID: 1, Subs: []packet.SubOption{{Filter: "rap/+", RetainAsPublished: true}, {Filter: "rap/x/#"}}})
	expect[*packet.Suback](rap)
	pub.send(&packet.Publish{Topic: "rap/x", Retain: true, Payload: []byte("keep flag")})
	if m := expect[*packet.Publish](rap); !m.Retain {
		t.Fatal("retain as published: flag cleared")
	}
	pub.send(&packet.Publish{Topic: "rap/x", Retain: true})
}

func TestMessageExpiry(t *testing.T) {
	s, addr := startServer(t, core.Options{})
	// Retained message that expires.
	pub := rawConnected(t, addr, packet.V5, uid("p"))
	pub.send(&packet.Publish{Topic: "exp/ret", Retain: true, Payload: []byte("x"), Props: packet.Properties{MessageExpiry: packet.Ptr[uint32](1)}})
	eventually(t, "retained stored", func() bool { _, ok := s.Retained("exp/ret"); return ok })
	// Queued message: one expiring, one not; and the interval is decremented.
	id := uid("q")
	sub := dialRaw(t, addr, packet.V5)
	sub.connect(&packet.Connect{ClientID: id, Props: packet.Properties{SessionExpiry: packet.Ptr[uint32](60)}})
	subscribeRaw(t, sub, "exp/q", 1)
	sub.send(&packet.Disconnect{})
	sub.expectClosed()
	publishRaw(t, pub, "exp/q", 1, 1, "short")
	pub.send(&packet.Publish{Topic: "exp/q", QoS: 1, PacketID: 2, Payload: []byte("long"), Props: packet.Properties{MessageExpiry: packet.Ptr[uint32](100)}})
	expect[*packet.Ack](pub)
	pub.send(&packet.Publish{Topic: "exp/q", QoS: 1, PacketID: 3, Payload: []byte("gone"), Props: packet.Properties{MessageExpiry: packet.Ptr[uint32](1)}})
	expect[*packet.Ack](pub)
	time.Sleep(2100 * time.Millisecond)

	late := rawConnected(t, addr, packet.V5, uid("late"))
	subscribeRaw(t, late, "exp/#", 0)
	if p, err := late.next(200 * time.Millisecond); err == nil {
		t.Fatalf("expired retained message delivered: %+v", p)
	}
	back := dialRaw(t, addr, packet.V5)
	back.connect(&packet.Connect{ClientID: id, Props: packet.Properties{SessionExpiry: packet.Ptr[uint32](60)}})
	a := expect[*packet.Publish](back)
	b := expect[*packet.Publish](back)
	if string(a.Payload) != "short" || a.Props.MessageExpiry != nil {
		t.Fatalf("first: %q expiry %v", a.Payload, a.Props.MessageExpiry)
	}
	if string(b.Payload) != "long" || b.Props.MessageExpiry == nil || *b.Props.MessageExpiry > 98 {
		t.Fatalf("second: %q expiry %v, want decremented below 99", b.Payload, b.Props.MessageExpiry)
	}
	if p, err := back.next(200 * time.Millisecond); err == nil {
		t.Fatalf("expired queued message delivered: %+v", p)
	}
	if s.Stats().DroppedExpired == 0 {
		t.Fatal("expired messages not counted")
	}
}

func TestWillOnUngracefulCloseNotOnDisconnect(t *testing.T) {
	_, addr := startServer(t, core.Options{})
	watch := rawConnected(t, addr, packet.V5, uid("w"))
	subscribeRaw(t, watch, "lw/#", 2)
	will := func(name string, qos byte, retain bool) *packet.Will {
		return &packet.Will{Topic: "lw/" + name, Payload: []byte(name), QoS: qos, Retain: retain}
	}
	// Graceful DISCONNECT: no will.
	for _, v := range []byte{packet.V311, packet.V5} {
		c := dialRaw(t, addr, v)
		c.connect(&packet.Connect{ClientID: uid("g"), CleanStart: true, Will: will("graceful", 0, false)})
		c.send(&packet.Disconnect{})
		c.expectClosed()
	}
	if p, err := watch.next(200 * time.Millisecond); err == nil {
		t.Fatalf("will sent after DISCONNECT: %+v", p)
	}
	// v5 DISCONNECT 0x04: will sent.
	c := dialRaw(t, addr, packet.V5)
	c.connect(&packet.Connect{ClientID: uid("g"), CleanStart: true, Will: will("withwill", 0, false)})
	c.send(&packet.Disconnect{ReasonCode: packet.DisconnectWithWill})
	if m := expect[*packet.Publish](watch); m.Topic != "lw/withwill" {
		t.Fatalf("got %+v", m)
	}
	// I/O close: will sent with its QoS and retain flag.
	c = dialRaw(t, addr, packet.V311)
	c.connect(&packet.Connect{ClientID: uid("io"), CleanStart: true, Will: will("io", 2, true)})
	c.conn.Close()
	m := expect[*packet.Publish](watch)
	if m.Topic != "lw/io" || m.QoS != 2 {
		t.Fatalf("got %+v", m)
	}
	watch.send(&packet.Ack{Kind: packet.PUBREC, PacketID: m.PacketID})
	expect[*packet.Ack](watch)
	watch.send(&packet.Ack{Kind: packet.PUBCOMP, PacketID: m.PacketID})
	late := rawConnected(t, addr, packet.V311, uid("late"))
	subscribeRaw(t, late, "lw/io", 0)
	if m := expect[*packet.Publish](late); !m.Retain || string(m.Payload) != "io" {
		t.Fatalf("retained will: %+v", m)
	}
	// Protocol error: will sent.
	c = dialRaw(t, addr, packet.V5)
	c.connect(&packet.Connect{ClientID: uid("pe"), CleanStart: true, Will: will("protoerr", 0, false)})
	c.sendBytes([]byte{0xC1, 0}) // PINGREQ with reserved flags
	c.expectClosed()
	if m := expect[*packet.Publish](watch); m.Topic != "lw/protoerr" {
		t.Fatalf("got %+v", m)
	}
}

func TestWillDelayCancelledByReconnect(t *testing.T) {
	_, addr := startServer(t, core.Options{})
	watch := rawConnected(t, addr, packet.V5, uid("w"))
	subscribeRaw(t, watch, "wd/#", 0)
	id := uid("wd")
	connect := func() *raw {
		c := dialRaw(t, addr, packet.V5)
		c.connect(&packet.Connect{ClientID: id, Props: packet.Properties{SessionExpiry: packet.Ptr[uint32](60)},
			Will: &packet.Will{Topic: "wd/" + id, Payload: []byte("late"), Props: packet.Properties{WillDelay: packet.Ptr[uint32](1)}}})
		return c
	}
	c := connect()
	c.conn.Close()
	time.Sleep(300 * time.Millisecond)
	c = connect() // back within the delay
	if p, err := watch.next(1500 * time.Millisecond); err == nil {
		t.Fatalf("will sent although the client came back: %+v", p)
	}
	start := time.Now()
	c.conn.Close()
	m := expect[*packet.Publish](watch)
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Fatalf("will sent after %v, want the 1s delay", d)
	}
	if string(m.Payload) != "late" {
		t.Fatalf("got %+v", m)
	}
}

func TestOverlappingSubscriptions(t *testing.T) {
	_, addr := startServer(t, core.Options{})
	pub := rawConnected(t, addr, packet.V311, uid("p"))
	// v3: one copy at the highest granted QoS.
	s3 := rawConnected(t, addr, packet.V311, uid("s3"))
	s3.send(&packet.Subscribe{PacketID: 1, Subs: []packet.SubOption{{Filter: "ov/#", QoS: 0}, {Filter: "ov/+", QoS: 1}, {Filter: "ov/a", QoS: 2}}})
	expect[*packet.Suback](s3)
	// v5: one copy with every subscription identifier.
	s5 := rawConnected(t, addr, packet.V5, uid("s5"))
	for i, f := range []string{"ov/#", "ov/+", "ov/a"} {
		s5.send(&packet.Subscribe{PacketID: uint16(i + 1), Props: packet.Properties{SubscriptionIDs: []uint32{uint32(i + 10)}}, Subs: []packet.SubOption{{Filter: f, QoS: 1}}})
		expect[*packet.Suback](s5)
	}
	publishRaw(t, pub, "ov/a", 2, 1, "x")
	m := expect[*packet.Publish](s3)
	if m.QoS != 2 {
		t.Fatalf("v3 QoS %d, want 2", m.QoS)
	}
	if p, err := s3.next(200 * time.Millisecond); err == nil {
		t.Fatalf("v3 second copy %+v", p)
	}
	m5 := expect[*packet.Publish](s5)
	ids := append([]uint32(nil), m5.Props.SubscriptionIDs...)
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	if fmt.Sprint(ids) != "[10 11 12]" {
		t.Fatalf("subscription identifiers %v, want [10 11 12]", ids)
	}
	if p, err := s5.next(200 * time.Millisecond); err == nil {
		t.Fatalf("v5 second copy %+v", p)
	}
}

func TestSubscriptionIdentifierWithPaho(t *testing.T) {
	_, addr := startServer(t, core.Options{})
	c, _ := dialV5(t, addr, &paho.Connect{ClientID: uid("sid"), CleanStart: true})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Properties: &paho.SubscribeProperties{SubscriptionIdentifier: packet.Ptr(42)},
		Subscriptions: []paho.SubscribeOptions{{Topic: "sid/#"}}}); err != nil {
		t.Fatal(err)
	}
	c.publish(t, &paho.Publish{Topic: "sid/x", Payload: []byte("y")})
	m := c.recv(t)
	if m.Properties.SubscriptionIdentifier == nil || *m.Properties.SubscriptionIdentifier != 42 {
		t.Fatalf("subscription identifier %v, want 42", m.Properties.SubscriptionIdentifier)
	}
}

func TestNoLocal(t *testing.T) {
	_, addr := startServer(t, core.Options{})
	c := rawConnected(t, addr, packet.V5, uid("nl"))
	c.send(&packet.Subscribe{PacketID: 1, Subs: []packet.SubOption{{Filter: "nl/mine", NoLocal: true}, {Filter: "nl/other"}}})
	expect[*packet.Suback](c)
	c.send(&packet.Publish{Topic: "nl/mine", Payload: []byte("1")})
	c.send(&packet.Publish{Topic: "nl/other", Payload: []byte("2")})
	if m := expect[*packet.Publish](c); m.Topic != "nl/other" {
		t.Fatalf("got %+v, want only nl/other", m)
	}
	if p, err := c.next(200 * time.Millisecond); err == nil {
		t.Fatalf("own message delivered despite no local: %+v", p)
	}
	// No local on a shared subscription is a protocol error [MQTT-3.8.3-4].
	c.send(&packet.Subscribe{PacketID: 2, Subs: []packet.SubOption{{Filter: "$share/g/nl", NoLocal: true}}})
	got := c.expectClosed()
	if d, ok := got[len(got)-1].(*packet.Disconnect); !ok || d.ReasonCode != packet.ProtocolError {
		t.Fatalf("got %+v", got)
	}
}

func TestSharedSubscriptionRotation(t *testing.T) {
	s, addr := startServer(t, core.Options{})
	members := make([]*raw, 3)
	for i := range members {
		members[i] = rawConnected(t, addr, packet.V5, uid("m"))
		subscribeRaw(t, members[i], "$share/workers/jobs/+", 1)
	}
	// A plain subscriber still gets every message.
	plain := rawConnected(t, addr, packet.V311, uid("plain"))
	subscribeRaw(t, plain, "jobs/#", 0)
	pub := rawConnected(t, addr, packet.V311, uid("p"))
	counts := make([]int, 3)
	for i := 0; i < 9; i++ {
		publishRaw(t, pub, "jobs/x", 1, uint16(i+1), fmt.Sprint(i))
		expect[*packet.Publish](plain)
	}
	for i, m := range members {
		for {
			p, err := m.next(200 * time.Millisecond)
			if err != nil {
				break
			}
			counts[i]++
			m.send(&packet.Ack{Kind: packet.PUBACK, PacketID: p.(*packet.Publish).PacketID})
		}
	}
	if counts[0] != 3 || counts[1] != 3 || counts[2] != 3 {
		t.Fatalf("per member %v, want 3 each", counts)
	}
	// A member that leaves or goes offline does not swallow messages.
	members[0].send(&packet.Unsubscribe{PacketID: 5, Filters: []string{"$share/workers/jobs/+"}})
	expect[*packet.Unsuback](members[0])
	members[1].conn.Close()
	eventually(t, "member offline", func() bool { return s.Stats().ClientsConnected == 4 })
	for i := 0; i < 4; i++ {
		publishRaw(t, pub, "jobs/y", 1, uint16(i+20), fmt.Sprint(i))
	}
	for i := 0; i < 4; i++ {
		m := expect[*packet.Publish](members[2])
		members[2].send(&packet.Ack{Kind: packet.PUBACK, PacketID: m.PacketID})
	}
	if p, err := members[0].next(200 * time.Millisecond); err == nil {
		t.Fatalf("unsubscribed member received %+v", p)
	}
}

func TestSharedSubscriptionGetsNoRetained(t *testing.T) {
	s, addr := startServer(t, core.Options{})
	pub := rawConnected(t, addr, packet.V5, uid("p"))
	pub.send(&packet.Publish{Topic: "shr/a", Retain: true, Payload: []byte("r")})
	eventually(t, "retained stored", func() bool { _, ok := s.Retained("shr/a"); return ok })
	m := rawConnected(t, addr, packet.V5, uid("m"))
	subscribeRaw(t, m, "$share/g/shr/#", 0)
	if p, err := m.next(200 * time.Millisecond); err == nil {
		t.Fatalf("retained message sent to a shared subscription: %+v", p)
	}
	pub.send(&packet.Publish{Topic: "shr/a", Retain: true})
}

func TestTopicAliasInbound(t *testing.T) {
	_, addr := startServer(t, core.Options{TopicAliasMaximum: 2})
	sub := rawConnected(t, addr, packet.V5, uid("s"))
	subscribeRaw(t, sub, "alias/#", 0)
	pub := dialRaw(t, addr, packet.V5)
	ack := pub.connect(&packet.Connect{ClientID: uid("p"), CleanStart: true})
	if *ack.Props.TopicAliasMaximum != 2 {
		t.Fatalf("topic alias maximum %d, want 2", *ack.Props.TopicAliasMaximum)
	}
	pub.send(&packet.Publish{Topic: "alias/one", Payload: []byte("1"), Props: packet.Properties{TopicAlias: packet.Ptr[uint16](1)}})
	pub.send(&packet.Publish{Topic: "", Payload: []byte("2"), Props: packet.Properties{TopicAlias: packet.Ptr[uint16](1)}})
	for _, want := range []string{"1", "2"} {
		if m := expect[*packet.Publish](sub); m.Topic != "alias/one" || string(m.Payload) != want || m.Props.TopicAlias != nil {
			t.Fatalf("got %+v", m)
		}
	}
	pub.send(&packet.Publish{Topic: "alias/x", Props: packet.Properties{TopicAlias: packet.Ptr[uint16](3)}})
	got := pub.expectClosed()
	if d := got[len(got)-1].(*packet.Disconnect); d.ReasonCode != packet.TopicAliasInvalid {
		t.Fatalf("got %v, want topic alias invalid", d.ReasonCode)
	}
	// An alias with no mapping is a protocol error.
	p2 := rawConnected(t, addr, packet.V5, uid("p2"))
	p2.send(&packet.Publish{Topic: "", Props: packet.Properties{TopicAlias: packet.Ptr[uint16](2)}})
	got = p2.expectClosed()
	if d := got[len(got)-1].(*packet.Disconnect); d.ReasonCode != packet.ProtocolError {
		t.Fatalf("got %v, want protocol error", d.ReasonCode)
	}
}

func TestMaximumPacketSizeBothWays(t *testing.T) {
	s, addr := startServer(t, core.Options{MaxPacketSize: 1000})
	small := dialRaw(t, addr, packet.V5)
	small.connect(&packet.Connect{ClientID: uid("small"), CleanStart: true, Props: packet.Properties{MaximumPacketSize: packet.Ptr[uint32](100)}})
	subscribeRaw(t, small, "size/#", 0)
	big := rawConnected(t, addr, packet.V5, uid("big"))
	subscribeRaw(t, big, "size/#", 0)
	pub := rawConnected(t, addr, packet.V5, uid("p"))
	pub.send(&packet.Publish{Topic: "size/x", Payload: make([]byte, 200)})
	pub.send(&packet.Publish{Topic: "size/x", Payload: []byte("fits")})
	// The large one is dropped for the small client only, which stays connected.
	if m := expect[*packet.Publish](small); string(m.Payload) != "fits" {
		t.Fatalf("small client got %d bytes", len(m.Payload))
	}
	if m := expect[*packet.Publish](big); len(m.Payload) != 200 {
		t.Fatalf("big client got %d bytes", len(m.Payload))
	}
	expect[*packet.Publish](big)
	if s.Stats().DroppedTooLarge != 1 {
		t.Fatalf("dropped too large = %d, want 1", s.Stats().DroppedTooLarge)
	}
	// Inbound: a packet over the broker's maximum closes with 0x95.
	pub.send(&packet.Publish{Topic: "size/x", Payload: make([]byte, 2000)})
	got := pub.expectClosed()
	if d := got[len(got)-1].(*packet.Disconnect); d.ReasonCode != packet.PacketTooLarge {
		t.Fatalf("got %v, want packet too large", d.ReasonCode)
	}
}

func TestDollarTopics(t *testing.T) {
	_, addr := startServer(t, core.Options{SysInterval: 50 * time.Millisecond})
	all := rawConnected(t, addr, packet.V5, uid("all"))
	subscribeRaw(t, all, "#", 0)
	plus := rawConnected(t, addr, packet.V5, uid("plus"))
	subscribeRaw(t, plus, "+/broker/#", 0)
	sys := rawConnected(t, addr, packet.V5, uid("sys"))
	subscribeRaw(t, sys, "$SYS/#", 0)
	seen := map[string]string{}
	want := []string{"version", "uptime", "clients/connected", "clients/total", "messages/received", "messages/sent",
		"messages/retained/count", "subscriptions/count", "bytes/received", "bytes/sent"}
	missing := func() bool {
		for _, k := range want {
			if _, ok := seen[k]; !ok {
				return true
			}
		}
		return false
	}
	deadline := time.Now().Add(3 * time.Second)
	for missing() && time.Now().Before(deadline) {
		p, err := sys.next(time.Second)
		if err != nil {
			t.Fatal(err)
		}
		m := p.(*packet.Publish)
		seen[strings.TrimPrefix(m.Topic, "$SYS/broker/")] = string(m.Payload)
	}
	for _, k := range want {
		if _, ok := seen[k]; !ok {
			t.Errorf("$SYS/broker/%s not published (got %v)", k, seen)
		}
	}
	for _, c := range []*raw{all, plus} {
		if p, err := c.next(200 * time.Millisecond); err == nil {
			t.Fatalf("wildcard-first filter received a $ topic: %+v", p)
		}
	}
	// Clients cannot publish to $ topics: v5 gets 0x87.
	c := rawConnected(t, addr, packet.V5, uid("evil"))
	c.send(&packet.Publish{Topic: "$SYS/broker/version", QoS: 1, PacketID: 1, Payload: []byte("fake")})
	if a := expect[*packet.Ack](c); a.ReasonCode != packet.NotAuthorized {
		t.Fatalf("PUBACK %v, want not authorized", a.ReasonCode)
	}
}

func TestMosquittoClientsInterop(t *testing.T) {
	if _, err := exec.LookPath("mosquitto_sub"); err != nil {
		t.Skip("mosquitto_sub not installed (apt-get install mosquitto-clients)")
	}
	_, addr := startServer(t, core.Options{})
	host, port, _ := strings.Cut(addr, ":")
	versions := []string{"mqttv31", "mqttv311", "mqttv5"}
	for _, v := range versions {
		pub := exec.Command("mosquitto_pub", "-h", host, "-p", port, "-V", v, "-t", "mosq/"+v, "-q", "1", "-r", "-m", "hello "+v)
		if out, err := pub.CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_pub %s: %v: %s", v, err, out)
		}
	}
	for _, v := range versions {
		sub := exec.Command("mosquitto_sub", "-h", host, "-p", port, "-V", v, "-t", "mosq/#", "-q", "2", "-C", "3", "-W", "5", "-v")
		out, err := sub.CombinedOutput()
		if err != nil {
			t.Fatalf("mosquitto_sub %s: %v: %s", v, err, out)
		}
		for _, w := range versions {
			if !strings.Contains(string(out), "mosq/"+w+" hello "+w) {
				t.Fatalf("mosquitto_sub %s output %q lacks %s", v, out, w)
			}
		}
	}
}

// A message retained and routed while a client subscribes reaches it once,
// not live and again as retained. (PUBLISH may come before SUBACK.)
func TestRetainedNotDuplicatedWhileSubscribing(t *testing.T) {
	_, addr := startServer(t, core.Options{})
	pub := rawConnected(t, addr, packet.V311, uid("p"))
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := pub.conn.Write(packet.Encode(&packet.Publish{Topic: "race/x", Retain: true, Payload: []byte(fmt.Sprint(i))}, packet.V311)); err != nil {
				return
			}
		}
	}()
	defer func() { close(stop); <-done }()
	for k := 0; k < 50; k++ {
		sub := dialRaw(t, addr, packet.V311)
		sub.send(&packet.Connect{ProtocolLevel: 4, ClientID: uid("s"), CleanStart: true})
		sub.send(&packet.Subscribe{PacketID: 1, Subs: []packet.SubOption{{Filter: "race/#"}}})
		seen := map[string]bool{}
		for j := 0; j < 20; j++ {
			p, err := sub.next(5 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			m, ok := p.(*packet.Publish)
			if !ok {
				continue // CONNACK, SUBACK
			}
			if seen[string(m.Payload)] {
				t.Fatalf("subscriber %d got %q twice", k, m.Payload)
			}
			seen[string(m.Payload)] = true
		}
		sub.conn.Close()
	}
}
