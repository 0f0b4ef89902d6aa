package window_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/tidemq/tide/conf"
	"github.com/tidemq/tide/core"
	"github.com/tidemq/tide/core/packet"
	"github.com/tidemq/tide/scheduler/window"
)

// BenchmarkPublishPath is the cost of an [[aggregate]] over every message:
// a broker routes QoS 0 messages with numeric payloads on 100 topics to a
// subscriber over TCP, without and then with one aggregate on "#" (1m, 5m
// and 10m windows). The timer runs until the aggregate has taken every
// sample, so its work (off the publish path, on the same two cores)
// counts.
//
//	go test -run x -bench PublishPath -benchtime 1000000x ./scheduler/window/
func BenchmarkPublishPath(b *testing.B) {
	for _, with := range []bool{false, true} {
		name := "no-aggregate"
		if with {
			name = "one-aggregate"
		}
		b.Run(name, func(b *testing.B) { benchPublish(b, with) })
	}
}

func benchPublish(b *testing.B, withAggregate bool) {
	srv := core.New(core.Options{SysInterval: -1, MaxQueuedQoS0: 1 << 16}, slog.New(slog.DiscardHandler))
	addr, err := srv.ListenTCP("127.0.0.1:0", core.ListenerOptions{Name: "bench", AllowAnonymous: true})
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}()
	sub, err := net.Dial("tcp", addr.String())
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Close()
	_, _ = sub.Write(packet.Encode(&packet.Connect{ProtocolName: "MQTT", ProtocolLevel: packet.V311, ClientID: "sub", CleanStart: true}, packet.V311))
	_, _ = sub.Write(packet.Encode(&packet.Subscribe{PacketID: 1, Subs: []packet.SubOption{{Filter: "home/#"}}}, packet.V311))
	r := packet.NewReader(sub)
	r.Version = packet.V311
	for range 2 { // CONNACK, SUBACK
		if _, _, err := r.ReadPacket(); err != nil {
			b.Fatal(err)
		}
	}
	go func() { _, _ = io.Copy(io.Discard, sub) }()

	var st *window.Store
	if withAggregate {
		d := func(s string) conf.Duration { v, _ := time.ParseDuration(s); return conf.Duration{Duration: v} }
		st, err = window.New([]conf.Aggregate{{Name: "all", Topics: []string{"#"}, MaxTopics: 10000,
			Windows: []conf.Duration{d("1m"), d("5m"), d("10m")}}}, window.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		st.Start(srv.Bus())
	}
	topics := make([]string, 100)
	for i := range topics {
		topics[i] = "home/room" + strconv.Itoa(i) + "/temperature"
	}
	values := [][]byte{[]byte("21.5"), []byte("22"), []byte("19.25"), []byte("30.1")}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := srv.Publish(core.Message{Topic: topics[i%len(topics)], Payload: values[i%len(values)]}); err != nil {
			b.Fatal(err)
		}
	}
	var lost uint64
	if st != nil {
		for {
			f := st.Figures()[0]
			lost = st.BusDropped()
			if f.Samples+lost >= uint64(b.N) {
				break
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	if st != nil {
		b.ReportMetric(float64(lost)/float64(b.N), "samples-dropped/op")
	}
}
