package core_test

import (
	"io"
	"sync"
	"testing"

	"github.com/tidemq/tide/core"
	"github.com/tidemq/tide/core/packet"
)

// BenchmarkFanOutQoS0 publishes one QoS 0 message per op to 100 subscribers
// over real sockets. allocs/op counts the whole process (decoding, routing,
// writing, and the test's own clients); allocs/delivery divides it by the
// 100 deliveries: the message is encoded once and shared, and queueing it
// for a subscriber allocates nothing.
//
//	go test -run x -bench FanOut -benchmem ./core/
func BenchmarkFanOutQoS0(b *testing.B) {
	const subs = 100
	_, addr := startServer(b, core.Options{MaxQueuedQoS0: 1 << 20})
	var wg sync.WaitGroup
	readers := make([]*raw, subs)
	for i := range readers {
		readers[i] = rawConnected(b, addr, packet.V311, uid("fan"))
		subscribeRaw(b, readers[i], "fan/out", 0)
	}
	pub := rawConnected(b, addr, packet.V311, uid("pub"))
	msg := packet.Encode(&packet.Publish{Topic: "fan/out", Payload: make([]byte, 64)}, packet.V311)
	b.ReportAllocs()
	b.ResetTimer()
	for _, r := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Count whole packets without decoding them (the subscriber's cost
			// is not the broker's).
			want := b.N * len(msg)
			_, _ = io.CopyN(io.Discard, r.conn, int64(want))
		}()
	}
	batch := make([]byte, 0, 64*len(msg))
	for i := 0; i < b.N; {
		batch = batch[:0]
		for k := 0; k < 64 && i < b.N; k++ {
			batch = append(batch, msg...)
			i++
		}
		pub.sendBytes(batch)
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N*subs)/b.Elapsed().Seconds(), "deliveries/s")
}

// BenchmarkRouteQoS0 measures the publish path alone: route one message to
// 100 connected subscribers, whose writers drain to a socket. It reports
// allocations per routed message, all deliveries included.
//
//	go test -run x -bench RouteQoS0 -benchmem ./core/
func BenchmarkRouteQoS0(b *testing.B) {
	const subs = 100
	s, addr := startServer(b, core.Options{MaxQueuedQoS0: 1 << 20})
	var wg sync.WaitGroup
	for i := 0; i < subs; i++ {
		r := rawConnected(b, addr, packet.V311, uid("route"))
		subscribeRaw(b, r, "route/x", 0)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = io.Copy(io.Discard, r.conn)
		}()
	}
	payload := make([]byte, 64)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Publish(core.Message{Topic: "route/x", Payload: payload}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
}
