package core_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/tidemq/tide/core"
	"github.com/tidemq/tide/core/packet"
	"github.com/tidemq/tide/core/persist"
)

// BenchmarkDurablePublish measures QoS 1 publish throughput into a
// persistent session (every message stored) with the store off, syncing
// periodically, and syncing always (the PUBACK waits for the fsync), in one
// run. 16 publishers each keep 16 messages in flight, as MQTT clients with a
// window do; group commit lets them share each fsync.
//
//	go test -run x -bench DurablePublish -benchtime 20000x ./core/
func BenchmarkDurablePublish(b *testing.B) {
	for _, mode := range []string{"off", "periodic", "always"} {
		b.Run(mode, func(b *testing.B) {
			var addr string
			if mode == "off" {
				_, addr = startServer(b, core.Options{MaxQueuedMessages: -1})
			} else {
				be, err := persist.OpenBolt(b.TempDir())
				if err != nil {
					b.Fatal(err)
				}
				j := persist.NewJournal(be, persist.SyncMode(mode), 0, nil)
				s := core.New(core.Options{SysInterval: -1, MaxQueuedMessages: -1}, nil)
				if err := s.Restore(j); err != nil {
					b.Fatal(err)
				}
				a, err := s.ListenTCP("127.0.0.1:0", core.ListenerOptions{AllowAnonymous: true})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { _ = s.Shutdown(b.Context()); _ = j.Close() })
				addr = a.String()
			}
			// An offline persistent subscriber: every message is queued for it.
			sub := dialRaw(b, addr, packet.V311)
			sub.connect(&packet.Connect{ClientID: "bench-sub"})
			sub.send(&packet.Subscribe{PacketID: 1, Subs: []packet.SubOption{{Filter: "bench/#", QoS: 1}}})
			expect[*packet.Suback](sub)
			sub.send(&packet.Disconnect{})
			sub.expectClosed()

			const pubs, window = 16, 16
			per := b.N/pubs + 1
			var wg sync.WaitGroup
			b.ResetTimer()
			for p := 0; p < pubs; p++ {
				c := rawConnected(b, addr, packet.V311, fmt.Sprintf("bench-pub-%d", p))
				wg.Add(1)
				go func() {
					defer wg.Done()
					payload := make([]byte, 64)
					sent, acked := 0, 0
					for acked < per {
						for sent < per && sent-acked < window {
							sent++
							c.sendBytes(packet.Encode(&packet.Publish{Topic: "bench/x", QoS: 1, PacketID: uint16(sent%60000 + 1), Payload: payload}, packet.V311))
						}
						if _, err := c.next(10e9); err != nil {
							b.Error(err)
							return
						}
						acked++
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(pubs*per)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
