package core_test

import (
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/crypto/bcrypt"

	"github.com/tidemq/tide/core"
	"github.com/tidemq/tide/core/packet"
)

func TestConnectClientIdentifierRules(t *testing.T) {
	_, addr := startServer(t, core.Options{})
	cases := []struct {
		name  string
		v     byte
		clean bool
		want  packet.ReasonCode
	}{
		{"3.1 empty id", packet.V31, true, packet.ClientIdentifierNotValid},
		{"3.1.1 empty id without clean session", packet.V311, false, packet.ClientIdentifierNotValid},
		{"3.1.1 empty id with clean session", packet.V311, true, packet.Success},
		{"5.0 empty id without clean start", packet.V5, false, packet.Success},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := dialRaw(t, addr, c.v)
			r.send(&packet.Connect{ProtocolLevel: c.v, CleanStart: c.clean})
			ack := expect[*packet.Connack](r)
			if ack.ReasonCode != c.want {
				t.Fatalf("CONNACK %v, want %v", ack.ReasonCode, c.want)
			}
			if c.v == packet.V5 && ack.Props.AssignedClientID == "" {
				t.Fatal("no assigned client identifier in CONNACK")
			}
			if c.want != packet.Success {
				r.expectClosed()
			}
		})
	}
}

func TestConnectV5AssignedClientIDWithPaho(t *testing.T) {
	_, addr := startServer(t, core.Options{})
	_, ack := dialV5(t, addr, &paho.Connect{CleanStart: true})
	if ack.Properties == nil || ack.Properties.AssignedClientID == "" {
		t.Fatalf("assigned client id missing: %+v", ack.Properties)
	}
}

func TestConnectUnsupportedProtocolVersion(t *testing.T) {
	_, addr := startServer(t, core.Options{})
	r := dialRaw(t, addr, packet.V311)
	r.sendBytes([]byte{0x10, 12, 0, 4, 'M', 'Q', 'T', 'T', 6, 2, 0, 0, 0, 0})
	got := r.expectClosed()
	if len(got) != 1 {
		t.Fatalf("got %v, want one CONNACK", got)
	}
	if ack, ok := got[0].(*packet.Connack); !ok || ack.ReasonCode != packet.UnsupportedProtocolVersion {
		t.Fatalf("got %+v, want CONNACK unsupported protocol version", got[0])
	}
}

func TestConnectFirstPacketMustBeConnect(t *testing.T) {
	_, addr := startServer(t, core.Options{})
	r := dialRaw(t, addr, packet.V311)
	r.send(&packet.Pingreq{})
	if got := r.expectClosed(); len(got) != 0 {
		t.Fatalf("server answered %v before CONNECT", got)
	}
}

func TestConnectSecondConnectIsProtocolError(t *testing.T) {
	_, addr := startServer(t, core.Options{})
	for _, v := range []byte{packet.V311, packet.V5} {
		r := rawConnected(t, addr, v, uid("twice"))
		r.send(&packet.Connect{ProtocolLevel: v, ClientID: "again", CleanStart: true})
		got := r.expectClosed()
		if v == packet.V5 {
			if len(got) != 1 || got[0].(*packet.Disconnect).ReasonCode != packet.ProtocolError {
				t.Fatalf("v5 got %+v, want DISCONNECT protocol error", got)
			}
		} else if len(got) != 0 {
			t.Fatalf("v3 got %+v, want a plain close", got)
		}
	}
}

func TestConnectAuthMethodRefused(t *testing.T) {
	_, addr := startServer(t, core.Options{})
	r := dialRaw(t, addr, packet.V5)
	r.send(&packet.Connect{ProtocolLevel: 5, ClientID: "a", CleanStart: true, Props: packet.Properties{AuthMethod: "SCRAM-SHA-1"}})
	ack := expect[*packet.Connack](r)
	if ack.ReasonCode != packet.BadAuthenticationMethod {
		t.Fatalf("CONNACK %v, want bad authentication method", ack.ReasonCode)
	}
	r.expectClosed()
}

func TestConnectStaticUsersAndAnonymous(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	s := core.New(core.Options{SysInterval: -1}, testLogger(t))
	s.SetUsers(core.NewStaticUsers(map[string]string{"alice": string(hash)}))
	addr, err := s.ListenTCP("127.0.0.1:0", core.ListenerOptions{Name: "closed", AllowAnonymous: false})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Shutdown(t.Context()) })
	cases := []struct {
		name     string
		user     string
		pass     string
		withUser bool
		v3       byte
		v5       packet.ReasonCode
	}{
		{"good password", "alice", "s3cret", true, 0, packet.Success},
		{"bad password", "alice", "nope", true, 4, packet.BadUserNameOrPassword},
		{"unknown user", "bob", "s3cret", true, 4, packet.BadUserNameOrPassword},
		{"anonymous", "", "", false, 5, packet.NotAuthorized},
	}
	for _, c := range cases {
		for _, v := range []byte{packet.V311, packet.V5} {
			r := dialRaw(t, addr.String(), v)
			cp := &packet.Connect{ProtocolLevel: v, ClientID: uid("auth"), CleanStart: true, UsernameFlag: c.withUser, Username: c.user}
			if c.withUser {
				cp.PasswordFlag, cp.Password = true, []byte(c.pass)
			}
			r.send(cp)
			ack := expect[*packet.Connack](r)
			want := c.v5
			if v != packet.V5 {
				// The codec maps v3 return codes back to reason codes.
				want = map[byte]packet.ReasonCode{0: packet.Success, 4: packet.BadUserNameOrPassword, 5: packet.NotAuthorized}[c.v3]
			}
			if ack.ReasonCode != want {
				t.Fatalf("%s v%d: CONNACK %v, want %v", c.name, v, ack.ReasonCode, want)
			}
		}
	}
}

func TestConnectServerKeepAlive(t *testing.T) {
	_, addr := startServer(t, core.Options{MaxKeepAlive: 20 * time.Second})
	for _, ka := range []uint16{0, 60} {
		r := dialRaw(t, addr, packet.V5)
		ack := r.connect(&packet.Connect{ClientID: uid("ka"), CleanStart: true, KeepAlive: ka})
		if ack.Props.ServerKeepAlive == nil || *ack.Props.ServerKeepAlive != 20 {
			t.Fatalf("keep alive %d: server keep alive %v, want 20", ka, ack.Props.ServerKeepAlive)
		}
	}
	r := dialRaw(t, addr, packet.V5)
	if ack := r.connect(&packet.Connect{ClientID: uid("ka"), CleanStart: true, KeepAlive: 10}); ack.Props.ServerKeepAlive != nil {
		t.Fatalf("a smaller keep alive was overridden: %d", *ack.Props.ServerKeepAlive)
	}
}

func TestKeepAliveTimeoutClosesAndSendsWill(t *testing.T) {
	_, addr := startServer(t, core.Options{})
	for _, v := range []byte{packet.V311, packet.V5} {
		watcher := rawConnected(t, addr, v, uid("watch"))
		watcher.send(&packet.Subscribe{PacketID: 1, Subs: []packet.SubOption{{Filter: "will/ka", QoS: 1}}})
		expect[*packet.Suback](watcher)
		silent := dialRaw(t, addr, v)
		start := time.Now()
		silent.connect(&packet.Connect{ClientID: uid("silent"), CleanStart: true, KeepAlive: 1,
			Will: &packet.Will{Topic: "will/ka", Payload: []byte("gone"), QoS: 1}})
		got := silent.expectClosed()
		elapsed := time.Since(start)
		if elapsed < 1400*time.Millisecond || elapsed > 3*time.Second {
			t.Fatalf("v%d: closed after %v, want about 1.5s", v, elapsed)
		}
		if v == packet.V5 && (len(got) != 1 || got[0].(*packet.Disconnect).ReasonCode != packet.KeepAliveTimeout) {
			t.Fatalf("v5: got %+v, want DISCONNECT keep alive timeout", got)
		}
		m := expect[*packet.Publish](watcher)
		if m.Topic != "will/ka" || string(m.Payload) != "gone" || m.QoS != 1 {
			t.Fatalf("v%d will: %+v", v, m)
		}
		watcher.send(&packet.Ack{Kind: packet.PUBACK, PacketID: m.PacketID})
	}
}

func TestKeepAliveZeroDisables(t *testing.T) {
	_, addr := startServer(t, core.Options{})
	r := dialRaw(t, addr, packet.V311)
	r.connect(&packet.Connect{ClientID: uid("ka0"), CleanStart: true, KeepAlive: 0})
	if _, err := r.next(2 * time.Second); !isTimeoutErr(err) {
		t.Fatalf("connection with keep alive 0 ended: %v", err)
	}
	r.send(&packet.Pingreq{})
	expect[*packet.Pingresp](r)
}

func isTimeoutErr(err error) bool {
	type timeout interface{ Timeout() bool }
	te, ok := err.(timeout)
	return ok && te.Timeout()
}

func TestTakeOverV5(t *testing.T) {
	_, addr := startServer(t, core.Options{})
	id := uid("take")
	first := dialRaw(t, addr, packet.V5)
	first.connect(&packet.Connect{ClientID: id, CleanStart: true, Props: packet.Properties{SessionExpiry: packet.Ptr[uint32](300)}})
	first.send(&packet.Subscribe{PacketID: 1, Subs: []packet.SubOption{{Filter: "take/over", QoS: 1}}})
	expect[*packet.Suback](first)

	second := dialRaw(t, addr, packet.V5)
	ack := second.connect(&packet.Connect{ClientID: id, CleanStart: false, Props: packet.Properties{SessionExpiry: packet.Ptr[uint32](300)}})
	if !ack.SessionPresent {
		t.Fatal("take-over with clean start 0: session not present")
	}
	got := first.expectClosed()
	if len(got) != 1 || got[0].(*packet.Disconnect).ReasonCode != packet.SessionTakenOver {
		t.Fatalf("first connection got %+v, want DISCONNECT session taken over", got)
	}
	// The subscription carried over.
	pub := rawConnected(t, addr, packet.V5, uid("pub"))
	pub.send(&packet.Publish{Topic: "take/over", QoS: 1, PacketID: 5, Payload: []byte("x")})
	expect[*packet.Ack](pub)
	if m := expect[*packet.Publish](second); m.Topic != "take/over" {
		t.Fatalf("got %+v", m)
	}
}

func TestTakeOverV3WithPaho(t *testing.T) {
	_, addr := startServer(t, core.Options{})
	id := uid("take3")
	lost := make(chan error, 1)
	dialV3(t, addr, id, 4, func(o *mqtt3.ClientOptions) {
		o.SetConnectionLostHandler(func(_ mqtt3.Client, err error) { lost <- err })
	})
	dialV3(t, addr, id, 4)
	select {
	case <-lost:
	case <-time.After(5 * time.Second):
		t.Fatal("first client was not disconnected by the take-over")
	}
}

func TestTakeOverPublishesWillWhenSessionNotResumed(t *testing.T) {
	_, addr := startServer(t, core.Options{})
	watcher := rawConnected(t, addr, packet.V311, uid("w"))
	watcher.send(&packet.Subscribe{PacketID: 1, Subs: []packet.SubOption{{Filter: "wills/#"}}})
	expect[*packet.Suback](watcher)

	id := uid("tw")
	first := dialRaw(t, addr, packet.V311)
	first.connect(&packet.Connect{ClientID: id, CleanStart: false, Will: &packet.Will{Topic: "wills/" + id, Payload: []byte("a")}})
	// Resumed session: the old connection's will is not published.
	second := dialRaw(t, addr, packet.V311)
	second.connect(&packet.Connect{ClientID: id, CleanStart: false, Will: &packet.Will{Topic: "wills/" + id, Payload: []byte("b")}})
	first.expectClosed()
	if p, err := watcher.next(300 * time.Millisecond); err == nil {
		t.Fatalf("will published on a resumed take-over: %+v", p)
	}
	// Not resumed (clean start): the old will is published.
	third := dialRaw(t, addr, packet.V311)
	third.connect(&packet.Connect{ClientID: id, CleanStart: true})
	second.expectClosed()
	if m := expect[*packet.Publish](watcher); string(m.Payload) != "b" {
		t.Fatalf("will payload %q, want b", m.Payload)
	}
}

func TestSessionPresentFlag(t *testing.T) {
	_, addr := startServer(t, core.Options{})
	id := uid("present")
	for i, c := range []struct {
		clean bool
		want  bool
	}{{false, false}, {false, true}, {true, false}, {false, false}} {
		r := dialRaw(t, addr, packet.V311)
		ack := r.connect(&packet.Connect{ClientID: id, CleanStart: c.clean})
		if ack.SessionPresent != c.want {
			t.Fatalf("connect %d (clean %v): session present %v, want %v", i, c.clean, ack.SessionPresent, c.want)
		}
		r.send(&packet.Disconnect{})
		r.expectClosed()
	}
}
