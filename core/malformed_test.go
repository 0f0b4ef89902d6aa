package core_test

import (
	"testing"
	"time"

	"github.com/tidemq/tide/core"
	"github.com/tidemq/tide/core/packet"
)

// Malformed and forbidden input after CONNECT: an MQTT 5 client gets a
// DISCONNECT with the reason code, every client gets a closed connection,
// and the broker keeps serving the others.
func TestMalformedInputClosesWithReasonCode(t *testing.T) {
	_, addr := startServer(t, core.Options{MaxPacketSize: 4096, TopicAliasMaximum: 5})
	bystander := rawConnected(t, addr, packet.V311, uid("bystander"))
	subscribeRaw(t, bystander, "still/#", 0)
	talker := rawConnected(t, addr, packet.V311, uid("talker"))

	cases := []struct {
		name   string
		wire   []byte
		code   packet.ReasonCode
		v5only bool // valid (or meaningless) bytes for MQTT 3
	}{
		{"reserved flags on PINGREQ", []byte{0xC2, 0}, packet.MalformedPacket, false},
		{"remaining length of 5 bytes", []byte{0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01}, packet.MalformedPacket, false},
		{"QoS 3", []byte{0x36, 5, 0, 1, 't', 0, 1}, packet.MalformedPacket, false},
		{"invalid UTF-8 topic", []byte{0x30, 5, 0, 2, 0xC3, 0x28, 0}, packet.MalformedPacket, false},
		{"U+0000 in topic", []byte{0x30, 5, 0, 2, 'a', 0, 0}, packet.MalformedPacket, false},
		{"wildcard in PUBLISH topic", []byte{0x30, 6, 0, 3, 'a', '/', '#', 0}, packet.TopicNameInvalid, false},
		{"packet id 0 with QoS 1", []byte{0x32, 6, 0, 1, 't', 0, 0, 0}, packet.ProtocolError, false},
		{"duplicate property", []byte{0x30, 8, 0, 1, 't', 4, 0x01, 0, 0x01, 0}, packet.ProtocolError, true},
		{"subscription identifier from a client", []byte{0x30, 6, 0, 1, 't', 2, 0x0B, 1}, packet.ProtocolError, true},
		{"topic alias over the maximum", []byte{0x30, 7, 0, 1, 't', 3, 0x23, 0, 9}, packet.TopicAliasInvalid, true},
		{"SUBSCRIBE without filters", []byte{0x82, 3, 0, 1, 0}, packet.ProtocolError, false},
		{"SUBSCRIBE with reserved flags", []byte{0x80, 7, 0, 1, 0, 0, 1, 'a', 0}, packet.MalformedPacket, false},
		{"packet over the maximum size", append([]byte{0x30, 0x9A, 0x20, 0, 1, 't', 0}, make([]byte, 4090)...), packet.PacketTooLarge, false},
		{"CONNACK from a client", []byte{0x20, 3, 0, 0, 0}, packet.ProtocolError, false},
		{"second CONNECT", packet.Encode(&packet.Connect{ClientID: "x", CleanStart: true}, packet.V5), packet.ProtocolError, false},
		{"AUTH without a method", []byte{0xF0, 0}, packet.ProtocolError, true},
		{"truncated properties", []byte{0x30, 5, 0, 1, 't', 9, 1}, packet.MalformedPacket, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, v := range []byte{packet.V311, packet.V5} {
				if v != packet.V5 && c.v5only {
					continue
				}
				r := rawConnected(t, addr, v, uid("bad"))
				r.sendBytes(c.wire)
				got := r.expectClosed()
				if v == packet.V5 {
					if len(got) != 1 {
						t.Fatalf("v5: got %+v, want one DISCONNECT", got)
					}
					d, ok := got[0].(*packet.Disconnect)
					if !ok || d.ReasonCode != c.code {
						t.Fatalf("v5: got %+v, want DISCONNECT %v", got[0], c.code)
					}
				} else if len(got) != 0 {
					t.Fatalf("v3: got %+v, want the connection closed without a reply", got)
				}
			}
			// Everyone else is still served.
			talker.send(&packet.Publish{Topic: "still/here", Payload: []byte(c.name)})
			if m := expect[*packet.Publish](bystander); string(m.Payload) != c.name {
				t.Fatalf("bystander got %q", m.Payload)
			}
		})
	}
}

// Malformed CONNECT packets: a 5.0 client gets CONNACK with the reason code,
// a 3.1.1 client a closed connection.
func TestMalformedConnect(t *testing.T) {
	_, addr := startServer(t, core.Options{})
	cases := []struct {
		name string
		wire []byte
		ack  bool
		code packet.ReasonCode
	}{
		{"3.1.1 reserved flag", []byte{0x10, 12, 0, 4, 'M', 'Q', 'T', 'T', 4, 3, 0, 0, 0, 0}, false, 0},
		{"5.0 reserved flag", []byte{0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 5, 3, 0, 0, 0, 0, 0}, true, packet.MalformedPacket},
		{"5.0 will QoS 3", []byte{0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x1E, 0, 0, 0, 0, 0}, true, packet.MalformedPacket},
		{"5.0 receive maximum 0", []byte{0x10, 16, 0, 4, 'M', 'Q', 'T', 'T', 5, 2, 0, 0, 3, 0x21, 0, 0, 0, 0}, true, packet.ProtocolError},
		{"not MQTT at all", []byte("GET / HTTP/1.1\r\n\r\n"), false, 0},
		{"unknown protocol name", []byte{0x10, 12, 0, 4, 'H', 'T', 'T', 'P', 4, 2, 0, 0, 0, 0}, false, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := dialRaw(t, addr, packet.V5)
			r.sendBytes(c.wire)
			got := r.expectClosed()
			if !c.ack {
				if len(got) != 0 {
					t.Fatalf("got %+v, want a plain close", got)
				}
				return
			}
			if len(got) != 1 || got[0].(*packet.Connack).ReasonCode != c.code {
				t.Fatalf("got %+v, want CONNACK %v", got, c.code)
			}
		})
	}
}

// A connection that never sends CONNECT is closed after the connect timeout.
func TestConnectTimeout(t *testing.T) {
	_, addr := startServer(t, core.Options{ConnectTimeout: 300 * time.Millisecond})
	r := dialRaw(t, addr, packet.V311)
	start := time.Now()
	r.expectClosed()
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("closed after %v", d)
	}
}
