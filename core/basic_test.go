package core_test

import (
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/tidemq/tide/core"
	"github.com/tidemq/tide/core/packet"
)

func TestRawPublishSubscribeAllQoS(t *testing.T) {
	_, addr := startServer(t, core.Options{})
	for _, v := range []byte{packet.V31, packet.V311, packet.V5} {
		sub := rawConnected(t, addr, v, uid("sub"))
		pub := rawConnected(t, addr, v, uid("pub"))
		sub.send(&packet.Subscribe{PacketID: 1, Subs: []packet.SubOption{{Filter: "raw/+", QoS: 2}}})
		sa := expect[*packet.Suback](sub)
		if len(sa.Codes) != 1 || sa.Codes[0] != 2 {
			t.Fatalf("v%d suback %v", v, sa.Codes)
		}
		for qos := byte(0); qos <= 2; qos++ {
			pub.send(&packet.Publish{QoS: qos, PacketID: uint16(qos) + 10, Topic: "raw/x", Payload: []byte{qos}})
			switch qos {
			case 1:
				if a := expect[*packet.Ack](pub); a.Kind != packet.PUBACK || a.PacketID != 11 {
					t.Fatalf("v%d ack %+v", v, a)
				}
			case 2:
				if a := expect[*packet.Ack](pub); a.Kind != packet.PUBREC || a.PacketID != 12 {
					t.Fatalf("v%d ack %+v", v, a)
				}
				pub.send(&packet.Ack{Kind: packet.PUBREL, PacketID: 12})
				if a := expect[*packet.Ack](pub); a.Kind != packet.PUBCOMP || a.PacketID != 12 {
					t.Fatalf("v%d ack %+v", v, a)
				}
			}
			m := expect[*packet.Publish](sub)
			if m.Topic != "raw/x" || m.QoS != qos || len(m.Payload) != 1 || m.Payload[0] != qos {
				t.Fatalf("v%d got %+v", v, m)
			}
			switch qos {
			case 1:
				sub.send(&packet.Ack{Kind: packet.PUBACK, PacketID: m.PacketID})
			case 2:
				sub.send(&packet.Ack{Kind: packet.PUBREC, PacketID: m.PacketID})
				if a := expect[*packet.Ack](sub); a.Kind != packet.PUBREL || a.PacketID != m.PacketID {
					t.Fatalf("v%d ack %+v", v, a)
				}
				sub.send(&packet.Ack{Kind: packet.PUBCOMP, PacketID: m.PacketID})
			}
		}
		sub.send(&packet.Pingreq{})
		expect[*packet.Pingresp](sub)
	}
}

func TestPahoV5PublishSubscribe(t *testing.T) {
	_, addr := startServer(t, core.Options{})
	sub, ack := dialV5(t, addr, &paho.Connect{ClientID: uid("s"), CleanStart: true, KeepAlive: 30})
	if ack.ReasonCode != 0 {
		t.Fatalf("connack %d", ack.ReasonCode)
	}
	pub, _ := dialV5(t, addr, &paho.Connect{ClientID: uid("p"), CleanStart: true, KeepAlive: 30})
	sa := sub.subscribe(t, paho.SubscribeOptions{Topic: "a/#", QoS: 2})
	if sa.Reasons[0] != 2 {
		t.Fatalf("suback %v", sa.Reasons)
	}
	for qos := byte(0); qos <= 2; qos++ {
		pub.publish(t, &paho.Publish{Topic: "a/b", QoS: qos, Payload: []byte("hello"), Properties: &paho.PublishProperties{
			ContentType: "text/plain", ResponseTopic: "reply/here", CorrelationData: []byte("c1"),
			User: paho.UserProperties{{Key: "k", Value: "v1"}, {Key: "k", Value: "v2"}}}})
		m := sub.recv(t)
		if m.Topic != "a/b" || string(m.Payload) != "hello" || m.QoS != qos {
			t.Fatalf("got %s %q qos %d", m.Topic, m.Payload, m.QoS)
		}
		p := m.Properties
		if p.ContentType != "text/plain" || p.ResponseTopic != "reply/here" || string(p.CorrelationData) != "c1" ||
			len(p.User) != 2 || p.User[0].Value != "v1" || p.User[1].Value != "v2" {
			t.Fatalf("properties not passed through: %+v", p)
		}
	}
}

func TestPahoV3PublishSubscribe(t *testing.T) {
	_, addr := startServer(t, core.Options{})
	for _, version := range []uint{3, 4} {
		sub := dialV3(t, addr, uid("s3"), version)
		pub := dialV3(t, addr, uid("p3"), version)
		wait(t, sub.Subscribe("v3/+/x", 2, nil))
		for qos := byte(0); qos <= 2; qos++ {
			wait(t, pub.Publish("v3/a/x", qos, false, []byte("m")))
			m := sub.recv(t)
			if m.Topic() != "v3/a/x" || m.Qos() != qos || string(m.Payload()) != "m" || m.Retained() {
				t.Fatalf("version %d: got %s qos %d retained %v", version, m.Topic(), m.Qos(), m.Retained())
			}
		}
	}
	_ = mqtt3.ErrNotConnected
	_ = time.Second
}
