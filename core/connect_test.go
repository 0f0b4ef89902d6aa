package core_test

import (
	"errors"
	"io"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/crypto/bcrypt"

	"github.com/tidemq/tide/core"
	"github.com/tidemq/tide/core/packet"
	"github.com/tidemq/tide/core/passwd"
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
	// Besides alice (bcrypt), the users of a file mosquitto_passwd wrote:
	// bob ($6$, password hunter2) and carol ($7$, "pä:ss w0rd").
	users := map[string]string{"alice": string(hash)}
	entries, err := passwd.ReadFile("passwd/testdata/mosquitto.pw")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Username == "bob" || e.Username == "carol" {
			users[e.Username] = e.Hash
		}
	}
	s := core.New(core.Options{SysInterval: -1}, testLogger(t))
	s.SetUsers(core.NewStaticUsers(users))
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
		{"mosquitto sha512", "bob", "hunter2", true, 0, packet.Success},
		{"mosquitto sha512, bad password", "bob", "hunter3", true, 4, packet.BadUserNameOrPassword},
		{"mosquitto pbkdf2", "carol", "pä:ss w0rd", true, 0, packet.Success},
		{"mosquitto pbkdf2, another's password", "carol", "s3cret", true, 4, packet.BadUserNameOrPassword},
		{"unknown user", "dave", "s3cret", true, 4, packet.BadUserNameOrPassword},
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

// The user table can be replaced while clients connect (a reload): later
// CONNECTs are checked against the new one; nil leaves only the listener's
// anonymous rule.
func TestSetUsersWhileServing(t *testing.T) {
	hash := func(pw string) string {
		h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		return string(h)
	}
	first := core.NewStaticUsers(map[string]string{"alice": hash("one")})
	second := core.NewStaticUsers(map[string]string{"bob": hash("two")})
	s, addr := startServer(t, core.Options{}, core.ListenerOptions{Name: "closed"})
	s.SetUsers(first)
	// try returns the CONNACK's code, or nil when the connection closed
	// first (a reload revoked the credentials between check and CONNACK).
	try := func(user, pw string) *packet.ReasonCode {
		r := dialRaw(t, addr, packet.V5)
		defer r.conn.Close()
		r.send(&packet.Connect{ProtocolLevel: packet.V5, ClientID: uid("u"), CleanStart: true,
			UsernameFlag: true, Username: user, PasswordFlag: true, Password: []byte(pw)})
		p, err := r.next(5 * time.Second)
		switch p := p.(type) {
		case *packet.Connack:
			return &p.ReasonCode
		case *packet.Disconnect:
			return nil
		}
		if !errors.Is(err, io.EOF) {
			t.Fatalf("%s: got %v, %v; want CONNACK or the end of the connection", user, p, err)
		}
		return nil
	}
	connect := func(user, pw string) packet.ReasonCode {
		t.Helper()
		rc := try(user, pw)
		if rc == nil {
			t.Fatalf("%s: connection closed without CONNACK", user)
		}
		return *rc
	}
	if rc := connect("alice", "one"); rc != packet.Success {
		t.Fatalf("alice before the swap: %v", rc)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // swaps under the connects below (go test -race)
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			s.SetUsers([]*core.StaticUsers{first, second}[i%2])
			time.Sleep(100 * time.Microsecond)
		}
	}()
	for range 20 {
		if rc := try("alice", "one"); rc != nil && *rc != packet.Success && *rc != packet.BadUserNameOrPassword {
			t.Fatalf("alice during the swaps: %v", *rc)
		}
	}
	close(stop)
	<-done

	// Connected clients: a reload that drops a user or changes a password
	// disconnects them (DISCONNECT 0x98); one that keeps the hash does not.
	s.SetUsers(first)
	stay := func(user, pw string) *raw {
		r := dialRaw(t, addr, packet.V5)
		r.send(&packet.Connect{ProtocolLevel: packet.V5, ClientID: uid(user), CleanStart: true,
			UsernameFlag: true, Username: user, PasswordFlag: true, Password: []byte(pw)})
		if ack := expect[*packet.Connack](r); ack.ReasonCode != packet.Success {
			t.Fatalf("%s: CONNACK %v", user, ack.ReasonCode)
		}
		return r
	}
	kicked := func(r *raw, who string) {
		t.Helper()
		// Even right after the CONNACK: the DISCONNECT follows it.
		if d := expect[*packet.Disconnect](r); d.ReasonCode != packet.AdministrativeAction {
			t.Errorf("%s: DISCONNECT %v, want administrative action", who, d.ReasonCode)
		}
		r.expectClosed()
	}
	kept := func(r *raw, who string) {
		t.Helper()
		r.send(&packet.Pingreq{})
		if _, ok := expect[packet.Packet](r).(*packet.Pingresp); !ok {
			t.Errorf("%s: no PINGRESP after the reload", who)
		}
	}
	alice := stay("alice", "one")
	s.SetUsers(second)
	kicked(alice, "alice, dropped by the reload")
	if rc := connect("alice", "one"); rc != packet.BadUserNameOrPassword {
		t.Errorf("alice after the swap: %v, want bad user name or password", rc)
	}
	bob := stay("bob", "two")
	s.SetUsers(core.NewStaticUsers(map[string]string{"bob": second.Hash("bob"), "carol": hash("three")}))
	kept(bob, "bob, same hash")
	s.SetUsers(core.NewStaticUsers(map[string]string{"bob": hash("two")})) // same password, new hash
	kicked(bob, "bob, new hash")
	if rc := connect("bob", "two"); rc != packet.Success {
		t.Errorf("bob after the password change: %v", rc)
	}
	bob = stay("bob", "two")
	s.SetUsers(nil)
	kicked(bob, "bob, no table on a listener without anonymous access")
	if rc := connect("bob", "two"); rc != packet.NotAuthorized {
		t.Errorf("bob without a table on a listener without anonymous access: %v, want not authorized", rc)
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
