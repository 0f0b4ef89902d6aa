package core_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/tidemq/tide/core"
	"github.com/tidemq/tide/core/packet"
)

// A subscriber that is merely behind loses nothing: publishers wait for room
// in its queue instead of dropping.
func TestBackPressureLosesNothing(t *testing.T) {
	s, addr := startServer(t, core.Options{MaxQueuedQoS0: 4, MaxQueuedMessages: 4, MaxInflight: 2})
	for _, qos := range []byte{0, 1} {
		sub := rawConnected(t, addr, packet.V311, uid("sub"))
		topic := fmt.Sprintf("bp%d/x", qos)
		subscribeRaw(t, sub, topic, qos)
		const n = 3000
		for p := 0; p < 3; p++ {
			pub := rawConnected(t, addr, packet.V311, uid("pub"))
			go func() {
				for i := 0; i < n; i++ {
					pub.send(&packet.Publish{Topic: topic, QoS: qos, PacketID: uint16(i%1000 + 1), Payload: make([]byte, 512)})
				}
			}()
		}
		for i := 0; i < 3*n; i++ {
			m := expect[*packet.Publish](sub)
			if qos == 1 {
				sub.send(&packet.Ack{Kind: packet.PUBACK, PacketID: m.PacketID})
			}
		}
		st := s.Stats()
		if st.DroppedQoS0Full != 0 || st.DroppedQueueFull != 0 {
			t.Fatalf("QoS %d: dropped %d (QoS 0) and %d (session queue)", qos, st.DroppedQoS0Full, st.DroppedQueueFull)
		}
	}
}

// A subscriber that stops reading costs a publisher at most one stall, after
// which its messages are dropped and counted while everyone else is served.
func TestStuckSubscriberDoesNotStallOthers(t *testing.T) {
	s, addr := startServer(t, core.Options{MaxQueuedQoS0: 8, StallTimeout: 200 * time.Millisecond})
	stuck := rawConnected(t, addr, packet.V311, uid("stuck"))
	subscribeRaw(t, stuck, "stuck/#", 0)
	healthy := rawConnected(t, addr, packet.V311, uid("healthy"))
	subscribeRaw(t, healthy, "stuck/#", 0)
	pub := rawConnected(t, addr, packet.V311, uid("pub"))
	const n = 400 // 400 x 64 KiB: far more than the socket buffers hold
	payload := make([]byte, 64<<10)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < n; i++ {
			pub.send(&packet.Publish{Topic: "stuck/x", Payload: payload})
		}
	}()
	start := time.Now()
	for i := 0; i < n; i++ {
		expect[*packet.Publish](healthy)
	}
	// Without the slow mark every message would stall the publisher for the
	// full timeout (400 x 200ms = 80s); the bound is loose for slow machines.
	if d := time.Since(start); d > 40*time.Second {
		t.Fatalf("healthy subscriber took %v for %d messages", d, n)
	}
	<-done
	eventually(t, "drops for the stuck client counted", func() bool { return s.Stats().DroppedQoS0Full > 0 })
}
