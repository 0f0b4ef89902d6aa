package core_test

import (
	"fmt"
	"io"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tidemq/tide/core"
	"github.com/tidemq/tide/core/packet"
)

// At light load publishers' readers write to the subscriber themselves
// (direct writes) while the subscriber's writer takes over whenever a
// backlog forms: the subscriber gets every message once, in each
// publisher's order, and every publisher its acknowledgements.
func TestLightLoadDeliversInOrder(t *testing.T) {
	s, addr := startServer(t, core.Options{})
	sub := rawConnected(t, addr, packet.V311, uid("sub"))
	subscribeRaw(t, sub, "ll/#", 1)

	const pubs, n = 4, 300
	errs := make(chan error, pubs)
	for k := range pubs {
		pub := rawConnected(t, addr, packet.V311, uid("pub"))
		qos := byte(k % 2)
		go func() {
			for i := range n {
				p := &packet.Publish{Topic: fmt.Sprintf("ll/%d", k), QoS: qos, Payload: []byte(fmt.Sprintf("%d:%d", k, i))}
				if qos == 1 {
					p.PacketID = uint16(i + 1)
				}
				if _, err := pub.conn.Write(packet.Encode(p, packet.V311)); err != nil {
					errs <- err
					return
				}
				if qos == 0 {
					time.Sleep(100 * time.Microsecond)
					continue
				}
				got, err := pub.next(5 * time.Second)
				if err != nil {
					errs <- fmt.Errorf("publisher %d, message %d: %v", k, i, err)
					return
				}
				if a, ok := got.(*packet.Ack); !ok || a.Kind != packet.PUBACK || a.PacketID != p.PacketID {
					errs <- fmt.Errorf("publisher %d, message %d: got %+v, want PUBACK %d", k, i, got, p.PacketID)
					return
				}
			}
			errs <- nil
		}()
	}

	next := make([]int, pubs)
	for range pubs * n {
		m := expect[*packet.Publish](sub)
		if m.QoS == 1 {
			sub.send(&packet.Ack{Kind: packet.PUBACK, PacketID: m.PacketID})
		}
		k, i, ok := strings.Cut(string(m.Payload), ":")
		pk, _ := strconv.Atoi(k)
		pi, _ := strconv.Atoi(i)
		if !ok || pk < 0 || pk >= pubs {
			t.Fatalf("unexpected payload %q", m.Payload)
		}
		if pi != next[pk] {
			t.Fatalf("publisher %d: got message %d, want %d", pk, pi, next[pk])
		}
		next[pk]++
	}
	for range pubs {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if p, err := sub.next(100 * time.Millisecond); err == nil {
		t.Fatalf("extra packet %+v", p)
	}
	// A writer counts its batch once the write returns, which can be after
	// the subscriber has read it.
	eventually(t, fmt.Sprintf("%d messages counted as sent", pubs*n), func() bool {
		return s.Stats().MessagesSent >= pubs*n
	})
}

// Routing a message to many subscribers allocates per message, not per
// subscriber: the encoding is shared and queueing it allocates nothing (an
// item that escaped to the heap once cost a quarter of fan-out throughput).
func TestRoutingAllocatesPerMessage(t *testing.T) {
	const subs = 100
	s, addr := startServer(t, core.Options{MaxQueuedQoS0: 1 << 20})
	for range subs {
		r := rawConnected(t, addr, packet.V311, uid("alloc"))
		subscribeRaw(t, r, "alloc/x", 0)
		go func() { _, _ = io.Copy(io.Discard, r.conn) }()
	}
	payload := make([]byte, 64)
	allocs := testing.AllocsPerRun(2000, func() {
		if _, err := s.Publish(core.Message{Topic: "alloc/x", Payload: payload}); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > subs/5 {
		t.Errorf("%.1f allocations per message to %d subscribers, want a few per message", allocs, subs)
	}
}

// A QoS 1 message and its acknowledgements, publisher to subscriber,
// allocate a handful of values in the broker, none of them per packet
// decoded or acknowledgement sent (each allocation brings the next garbage
// collection closer, and collections show in latency's tail).
func TestQoS1RoundTripAllocations(t *testing.T) {
	const n = 2000
	_, addr := startServer(t, core.Options{})
	sub := rawConnected(t, addr, packet.V311, uid("sub"))
	subscribeRaw(t, sub, "rt/x", 1)
	pub := rawConnected(t, addr, packet.V311, uid("pub"))
	msgs := make([][]byte, n)
	for i := range msgs {
		msgs[i] = packet.Encode(&packet.Publish{Topic: "rt/x", QoS: 1, PacketID: uint16(i + 1), Payload: make([]byte, 64)}, packet.V311)
	}

	// The subscriber acknowledges each message; reading a PUBLISH's body is
	// its one allocation per message.
	subDone := make(chan error, 1)
	go func() {
		var ack [4]byte
		for range n {
			h, body, _, err := sub.r.ReadRaw()
			if err != nil {
				subDone <- err
				return
			}
			if h>>4 != byte(packet.PUBLISH) {
				subDone <- fmt.Errorf("subscriber got packet type %d", h>>4)
				return
			}
			tl := int(body[0])<<8 | int(body[1])
			ack = [4]byte{byte(packet.PUBACK) << 4, 2, body[2+tl], body[3+tl]}
			if _, err := sub.conn.Write(ack[:]); err != nil {
				subDone <- err
				return
			}
		}
		subDone <- nil
	}()

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := range n {
		if _, err := pub.conn.Write(msgs[i]); err != nil {
			t.Fatal(err)
		}
		h, _, _, err := pub.r.ReadRaw()
		if err != nil {
			t.Fatal(err)
		}
		if h>>4 != byte(packet.PUBACK) {
			t.Fatalf("publisher got packet type %d, want PUBACK", h>>4)
		}
	}
	if err := <-subDone; err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	perMsg := float64(after.Mallocs-before.Mallocs) / n
	bytes := float64(after.TotalAlloc-before.TotalAlloc) / n
	t.Logf("%.1f allocations, %.0f bytes per message (broker and test clients)", perMsg, bytes)
	// Broker: message, body, topic, encoding; the test's subscriber: one
	// body. Decoding and acknowledging once added four more and ~1,100
	// bytes, and the in-flight entry one more.
	maxAllocs, maxBytes := 5.6, 700.0
	if raceEnabled {
		// The race detector adds about two allocations and its own bytes.
		maxAllocs, maxBytes = 7.6, 1<<20
	}
	if perMsg > maxAllocs || bytes > maxBytes {
		t.Errorf("%.1f allocations and %.0f bytes per QoS 1 message, want at most %.1f and %.0f", perMsg, bytes, maxAllocs, maxBytes)
	}
}

// An idle connection's two goroutines keep small stacks: a stack grows by
// doubling, so a few hundred bytes more in one frame on the connect path
// once cost every connection 4 KB (an acknowledgement built on the stack).
func TestIdleConnectionStacks(t *testing.T) {
	const n = 1000 // enough to drown the stacks other goroutines come and go with
	_, addr := startServer(t, core.Options{})
	rawConnected(t, addr, packet.V311, uid("warm"))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range n {
		rawConnected(t, addr, packet.V5, uid("idle"))
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perConn := float64(after.StackInuse-before.StackInuse) / n
	t.Logf("%.0f bytes of goroutine stack per idle connection", perConn)
	limit := 8192.0 // reader and writer at 4 KB each at most
	if raceEnabled {
		limit *= 2 // instrumented frames are larger
	}
	if perConn > limit {
		t.Errorf("%.0f bytes of goroutine stack per idle connection, want at most %.0f", perConn, limit)
	}
}
