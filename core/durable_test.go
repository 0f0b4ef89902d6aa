package core_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tidemq/tide/core"
	"github.com/tidemq/tide/core/packet"
	"github.com/tidemq/tide/core/persist"
)

// durableServer runs a broker whose state lives in dir; stop shuts it
// down and closes the store, as cmd/tide does.
func durableServer(t *testing.T, dir string, mode persist.SyncMode) (addr string, srv *core.Server, stop func()) {
	t.Helper()
	be, err := persist.OpenBolt(dir)
	if err != nil {
		t.Fatal(err)
	}
	j := persist.NewJournal(be, mode, 50*time.Millisecond, nil)
	srv = core.New(core.Options{SysInterval: -1}, testLogger(t))
	if err := srv.Restore(j); err != nil {
		t.Fatal(err)
	}
	a, err := srv.ListenTCP("127.0.0.1:0", core.ListenerOptions{AllowAnonymous: true})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		if err := j.Close(); err != nil {
			t.Error(err)
		}
	}
	t.Cleanup(stop)
	return a.String(), srv, stop
}

func TestStateSurvivesRestart(t *testing.T) {
	for _, mode := range []persist.SyncMode{persist.SyncAlways, persist.SyncPeriodic} {
		t.Run(string(mode), func(t *testing.T) {
			dir := t.TempDir()
			addr, _, stop := durableServer(t, dir, mode)

			// A v5 subscriber with a long expiry and a v3 persistent one, both offline.
			s5 := dialRaw(t, addr, packet.V5)
			s5.connect(&packet.Connect{ClientID: "sub5", Props: packet.Properties{SessionExpiry: packet.Ptr[uint32](3600)}})
			s5.send(&packet.Subscribe{PacketID: 1, Props: packet.Properties{SubscriptionIDs: []uint32{7}},
				Subs: []packet.SubOption{{Filter: "d/#", QoS: 2, NoLocal: true}}})
			expect[*packet.Suback](s5)
			s5.send(&packet.Disconnect{})
			s5.expectClosed()
			s3 := dialRaw(t, addr, packet.V311)
			s3.connect(&packet.Connect{ClientID: "sub3"})
			subscribeRaw(t, s3, "d/+", 1)
			// sub3 receives one message and does not acknowledge it before the restart.
			pub := rawConnected(t, addr, packet.V311, "pub")
			publishRaw(t, pub, "d/0", 1, 1, "inflight")
			if m := expect[*packet.Publish](s3); string(m.Payload) != "inflight" {
				t.Fatalf("got %q", m.Payload)
			}
			s3.conn.Close()
			for i := 1; i <= 600; i++ { // more than a page, to read the queue from disk in parts
				publishRaw(t, pub, fmt.Sprintf("d/%d", i%7), 1, uint16(i%1000+1), fmt.Sprint(i))
			}
			pub.send(&packet.Publish{Topic: "d/retained", Retain: true, QoS: 1, PacketID: 2000, Payload: []byte("kept")})
			expect[*packet.Ack](pub)
			// An inbound QoS 2 exchange left half way.
			q2 := dialRaw(t, addr, packet.V311)
			q2.connect(&packet.Connect{ClientID: "q2pub"})
			q2.send(&packet.Publish{Topic: "d/q2", QoS: 2, PacketID: 33, Payload: []byte("once")})
			expect[*packet.Ack](q2)
			q2.conn.Close()
			stop()

			addr, srv, _ := durableServer(t, dir, mode)
			if st := srv.Stats(); st.Retained != 1 || st.Subscriptions != 2 || st.ClientsTotal != 3 {
				t.Fatalf("after restart: %d retained, %d subscriptions, %d sessions", st.Retained, st.Subscriptions, st.ClientsTotal)
			}
			// The QoS 2 publisher resends: the message is not routed twice.
			q2 = dialRaw(t, addr, packet.V311)
			if ack := q2.connect(&packet.Connect{ClientID: "q2pub"}); !ack.SessionPresent {
				t.Fatal("q2pub: session lost")
			}
			q2.send(&packet.Publish{Dup: true, Topic: "d/q2", QoS: 2, PacketID: 33, Payload: []byte("once")})
			expect[*packet.Ack](q2)
			q2.send(&packet.Ack{Kind: packet.PUBREL, PacketID: 33})
			if a := expect[*packet.Ack](q2); a.Kind != packet.PUBCOMP {
				t.Fatalf("got %+v", a)
			}

			s3 = dialRaw(t, addr, packet.V311)
			if ack := s3.connect(&packet.Connect{ClientID: "sub3"}); !ack.SessionPresent {
				t.Fatal("sub3: session lost")
			}
			first := expect[*packet.Publish](s3)
			if !first.Dup || string(first.Payload) != "inflight" {
				t.Fatalf("first after restart: %+v, want the unacknowledged message with DUP", first)
			}
			s3.send(&packet.Ack{Kind: packet.PUBACK, PacketID: first.PacketID})
			for i := 1; i <= 600; i++ {
				m := expect[*packet.Publish](s3)
				if string(m.Payload) != fmt.Sprint(i) {
					t.Fatalf("sub3 message %d: %q", i, m.Payload)
				}
				s3.send(&packet.Ack{Kind: packet.PUBACK, PacketID: m.PacketID})
			}
			for _, want := range []string{"kept", "once"} {
				m := expect[*packet.Publish](s3)
				if string(m.Payload) != want {
					t.Fatalf("sub3: got %q, want %q", m.Payload, want)
				}
				s3.send(&packet.Ack{Kind: packet.PUBACK, PacketID: m.PacketID})
			}
			if p, err := s3.next(300 * time.Millisecond); err == nil {
				t.Fatalf("sub3: unexpected %+v (delivered twice?)", p)
			}
			s3.send(&packet.Disconnect{})

			s5 = dialRaw(t, addr, packet.V5)
			if ack := s5.connect(&packet.Connect{ClientID: "sub5", Props: packet.Properties{SessionExpiry: packet.Ptr[uint32](3600)}}); !ack.SessionPresent {
				t.Fatal("sub5: session lost")
			}
			for i := 0; i < 603; i++ { // inflight, 600, kept, once
				m := expect[*packet.Publish](s5)
				if len(m.Props.SubscriptionIDs) != 1 || m.Props.SubscriptionIDs[0] != 7 || m.QoS == 0 {
					t.Fatalf("sub5 message %d: %+v", i, m)
				}
				switch m.QoS {
				case 1:
					s5.send(&packet.Ack{Kind: packet.PUBACK, PacketID: m.PacketID})
				case 2:
					s5.send(&packet.Ack{Kind: packet.PUBREC, PacketID: m.PacketID})
					expect[*packet.Ack](s5)
					s5.send(&packet.Ack{Kind: packet.PUBCOMP, PacketID: m.PacketID})
				}
			}
			late := rawConnected(t, addr, packet.V311, "late")
			subscribeRaw(t, late, "d/retained", 0)
			if m := expect[*packet.Publish](late); !m.Retain || string(m.Payload) != "kept" {
				t.Fatalf("retained after restart: %+v", m)
			}
			var buf bytes.Buffer
			if n, err := srv.Backup(&buf); err != nil || n == 0 {
				t.Fatalf("backup: %d %v", n, err)
			}
		})
	}
}

func TestExpiredSessionDroppedOnLoadAndWillPublished(t *testing.T) {
	dir := t.TempDir()
	addr, _, stop := durableServer(t, dir, persist.SyncPeriodic)
	c := dialRaw(t, addr, packet.V5)
	c.connect(&packet.Connect{ClientID: "short", Props: packet.Properties{SessionExpiry: packet.Ptr[uint32](1)},
		Will: &packet.Will{Topic: "wills/short", Payload: []byte("bye"), Retain: true, Props: packet.Properties{WillDelay: packet.Ptr[uint32](5)}}})
	subscribeRaw(t, c, "x", 1)
	stop() // the client is still connected: its will waits for the delay, capped by the 1s expiry
	time.Sleep(1200 * time.Millisecond)
	addr, srv, _ := durableServer(t, dir, persist.SyncPeriodic)
	if st := srv.Stats(); st.ClientsTotal != 0 || st.Subscriptions != 0 {
		t.Fatalf("expired session restored: %d sessions, %d subscriptions", st.ClientsTotal, st.Subscriptions)
	}
	eventually(t, "will published at load", func() bool { _, ok := srv.Retained("wills/short"); return ok })
	_ = addr
}
