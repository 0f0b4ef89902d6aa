package core_test

import (
	"testing"
	"time"

	"github.com/tidemq/tide/core"
	"github.com/tidemq/tide/core/acl"
	"github.com/tidemq/tide/core/packet"
	"github.com/tidemq/tide/core/persist"
)

const testACL = `topic readwrite open/#
user alice
topic readwrite alice/#
topic read shared/#
pattern readwrite devices/%c/#
`

func mustACL(t *testing.T, text string) *acl.File {
	t.Helper()
	f, err := acl.Parse("test.acl", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// With an ACL file, what a client may publish is checked at PUBLISH (MQTT 5:
// PUBACK 0x87), and what it receives message by message: a subscription to
// "#" is granted and brings only what the file lets the client read,
// retained messages and shared subscriptions included. A reload applies to
// the next message.
func TestACLFile(t *testing.T) {
	s, addr := startServer(t, core.Options{})
	s.SetACL(mustACL(t, testACL))
	user := func(id, name string) *raw {
		r := dialRaw(t, addr, packet.V5)
		r.connect(&packet.Connect{ClientID: id, CleanStart: true, KeepAlive: 60, UsernameFlag: name != "", Username: name})
		return r
	}
	pub := func(r *raw, topic string, pid uint16, retain bool) packet.ReasonCode {
		t.Helper()
		r.send(&packet.Publish{Topic: topic, QoS: 1, PacketID: pid, Retain: retain, Payload: []byte(topic)})
		return expect[*packet.Ack](r).ReasonCode
	}
	// nextTopic returns the topic of the next message, "" if none comes.
	nextTopic := func(r *raw) string {
		p, err := r.next(300 * time.Millisecond)
		if err != nil {
			return ""
		}
		m, ok := p.(*packet.Publish)
		if !ok {
			t.Fatalf("got %T", p)
		}
		if m.QoS > 0 {
			r.send(&packet.Ack{Kind: packet.PUBACK, PacketID: m.PacketID})
		}
		return m.Topic
	}

	alice := user("alice-1", "alice")
	anon := user("anon-1", "")
	for _, c := range []struct {
		who   *raw
		topic string
		want  packet.ReasonCode
	}{
		{alice, "alice/x", packet.NoMatchingSubscribers},
		{alice, "devices/alice-1/t", packet.NoMatchingSubscribers},
		{alice, "shared/x", packet.NotAuthorized}, // read only
		{alice, "open/x", packet.NotAuthorized},   // the anonymous lines are not alice's
		{anon, "open/x", packet.NoMatchingSubscribers},
		{anon, "alice/x", packet.NotAuthorized},
		{anon, "devices/anon-1/t", packet.NoMatchingSubscribers},
	} {
		if got := pub(c.who, c.topic, 1, false); got != c.want {
			t.Errorf("publish %s: %v, want %v", c.topic, got, c.want)
		}
	}

	// Retained: set by the broker (not subject to the file), read through it.
	for _, topic := range []string{"alice/r", "open/r", "shared/r"} {
		if _, err := s.Publish(core.Message{Topic: topic, Payload: []byte("r"), QoS: 1, Retain: true}); err != nil {
			t.Fatal(err)
		}
	}
	subscribeRaw(t, alice, "#", 1)
	got := map[string]bool{}
	for topic := nextTopic(alice); topic != ""; topic = nextTopic(alice) {
		got[topic] = true
	}
	if !got["alice/r"] || !got["shared/r"] || got["open/r"] || len(got) != 2 {
		t.Errorf("alice's retained messages on #: %v, want alice/r and shared/r", got)
	}

	// Live messages: the broker publishes to every topic; alice gets hers.
	for _, topic := range []string{"open/1", "alice/1", "shared/1", "devices/alice-1/1", "devices/anon-1/1", "bob/1"} {
		if _, err := s.Publish(core.Message{Topic: topic, Payload: []byte("x"), QoS: 1}); err != nil {
			t.Fatal(err)
		}
	}
	got = map[string]bool{}
	for topic := nextTopic(alice); topic != ""; topic = nextTopic(alice) {
		got[topic] = true
	}
	if len(got) != 3 || !got["alice/1"] || !got["shared/1"] || !got["devices/alice-1/1"] {
		t.Errorf("alice on #: %v, want alice/1, shared/1 and devices/alice-1/1", got)
	}

	// A share group: the member that may read gets every message.
	subscribeRaw(t, anon, "$share/g/shared/#", 1)
	subscribeRaw(t, alice, "$share/g/shared/#", 1)
	for i := range 4 {
		if _, err := s.Publish(core.Message{Topic: "shared/g", Payload: []byte{byte(i)}, QoS: 1}); err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	for topic := nextTopic(alice); topic != ""; topic = nextTopic(alice) {
		n++ // on # and through the group
	}
	if n != 8 {
		t.Errorf("alice received %d messages on shared/g, want 8 (4 on #, 4 through the group)", n)
	}
	if topic := nextTopic(anon); topic != "" {
		t.Errorf("anonymous group member received %s", topic)
	}

	// A reload takes shared/ away from alice.
	s.SetACL(mustACL(t, "user alice\ntopic readwrite alice/#\n"))
	s.Publish(core.Message{Topic: "shared/2", Payload: []byte("x"), QoS: 1})
	s.Publish(core.Message{Topic: "alice/2", Payload: []byte("x"), QoS: 1})
	if topic := nextTopic(alice); topic != "alice/2" {
		t.Errorf("after the reload alice got %q first, want alice/2", topic)
	}
	s.SetACL(nil)
	if got := pub(anon, "alice/x", 2, false); got.IsError() {
		t.Errorf("without an ACL file, publish: %v", got)
	}
}

// A persistent session keeps its user name across a restart, so that the
// messages queued for it while it is offline are read through its user's
// lines.
func TestACLFileRestoredSession(t *testing.T) {
	dir := t.TempDir()
	addr, srv, stop := durableServer(t, dir, persist.SyncAlways)
	srv.SetACL(mustACL(t, testACL))
	cp := &packet.Connect{ClientID: "alice-d", UsernameFlag: true, Username: "alice", KeepAlive: 60,
		Props: packet.Properties{SessionExpiry: packet.Ptr[uint32](3600)}}
	a := dialRaw(t, addr, packet.V5)
	a.connect(cp)
	subscribeRaw(t, a, "#", 1)
	a.send(&packet.Disconnect{})
	a.expectClosed()
	stop()

	addr, srv, _ = durableServer(t, dir, persist.SyncAlways)
	srv.SetACL(mustACL(t, testACL))
	for _, topic := range []string{"open/q", "alice/q"} {
		if _, err := srv.Publish(core.Message{Topic: topic, Payload: []byte("q"), QoS: 1}); err != nil {
			t.Fatal(err)
		}
	}
	a = dialRaw(t, addr, packet.V5)
	if ack := a.connect(cp); !ack.SessionPresent {
		t.Fatal("session not restored")
	}
	if m := expect[*packet.Publish](a); m.Topic != "alice/q" {
		t.Errorf("queued for alice: %s, want alice/q", m.Topic)
	}
	if p, err := a.next(300 * time.Millisecond); err == nil {
		t.Errorf("then %+v, want nothing (open/q is not alice's)", p)
	}
}
