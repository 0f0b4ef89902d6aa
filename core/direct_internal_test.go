package core

import (
	"bytes"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidemq/tide/core/packet"
	"github.com/tidemq/tide/core/rawio/rawiotest"
)

// Direct writes that the socket cannot take whole leave the rest to the
// writer, ahead of what was queued meanwhile: the peer receives every packet
// once, whole, in order, with its own packet identifier, and every message
// is counted once.
func TestDirectWriteRestGoesFirst(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("direct writes are made on Linux only")
	}
	s := New(Options{}, nil)
	sc, cc := rawiotest.SocketPair(t)
	// Small buffers so that the socket fills after a few packets.
	if err := sc.SetWriteBuffer(32 << 10); err != nil {
		t.Fatal(err)
	}
	if err := cc.SetReadBuffer(32 << 10); err != nil {
		t.Fatal(err)
	}
	c := newClient(s, sc, &listenerState{opts: ListenerOptions{Name: "test"}})
	if c.raw == nil {
		t.Fatal("plain TCP connection without a raw socket")
	}
	go c.writeLoop()
	var stopped sync.Once
	stop := func() {
		stopped.Do(func() {
			c.closeWith(errKick{reason: "test over"})
			<-c.writerDone
		})
	}
	defer stop()

	const n, size, group = 200, 16 << 10, 20
	payload := func(i int) []byte { return bytes.Repeat([]byte{byte(i)}, size) }
	send := func(i int) (direct, rest bool) {
		enc := (&packet.Publish{QoS: 1, Topic: "t", Payload: payload(i)}).Append(nil, packet.V311)
		it := outItem{buf: enc, qos: 1, pid: uint16(i + 1), pidOff: int32(packet.PacketIDOffset(enc))}
		if c.sendDirect(&it) {
			c.out.mu.Lock()
			rest = len(c.out.items) > 0 && c.out.items[0].pidOff == fragment
			c.out.mu.Unlock()
			return true, rest
		}
		c.out.push(it, 0, 0)
		return false, false
	}

	var received atomic.Int64
	got := make(chan error, 1)
	go func() {
		r := packet.NewReader(cc)
		r.Version = packet.V311
		for i := range n {
			_ = cc.SetReadDeadline(time.Now().Add(10 * time.Second))
			p, _, err := r.ReadPacket()
			if err != nil {
				got <- err
				return
			}
			pub, ok := p.(*packet.Publish)
			switch {
			case !ok:
				got <- &packet.Error{Msg: "not a PUBLISH"}
				return
			case pub.PacketID != uint16(i+1) || !bytes.Equal(pub.Payload, payload(i)):
				t.Errorf("packet %d: id %d, payload of %d bytes starting %d", i, pub.PacketID, len(pub.Payload), pub.Payload[0])
			}
			received.Add(1)
		}
		got <- nil
	}()

	directs, rests := 0, 0
	for i := range n {
		d, r := send(i)
		if d {
			directs++
		}
		if r {
			rests++
		}
		if i%group == group-1 {
			// Each group fills the socket; then the peer reads everything,
			// so that the next group starts on an empty socket and queue.
			deadline := time.Now().Add(10 * time.Second)
			for received.Load() <= int64(i) && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
		}
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if directs == 0 || rests == 0 {
		t.Fatalf("%d direct writes, %d left a rest: the test did not exercise the direct path", directs, rests)
	}
	// The writer counts a batch once its write returns, which can be after
	// the peer has read it: stop the writer before reading the counter.
	stop()
	if sent := s.stats.MessagesSent.Load(); sent != n {
		t.Errorf("MessagesSent = %d, want %d", sent, n)
	}
	t.Logf("%d of %d written directly, %d of them in part", directs, n, rests)
}

// The writer waits for a full socket (raw writes through the poller) and
// honours its write deadline: a peer that reads nothing is cut off.
func TestRawWriterHonoursWriteTimeout(t *testing.T) {
	s := New(Options{WriteTimeout: 200 * time.Millisecond}, nil)
	sc, cc := rawiotest.SocketPair(t)
	_ = sc.SetWriteBuffer(8 << 10)
	_ = cc.SetReadBuffer(8 << 10)
	c := newClient(s, sc, &listenerState{opts: ListenerOptions{Name: "test"}})
	go c.writeLoop()
	big := (&packet.Publish{Topic: "t", Payload: make([]byte, 4<<20)}).Append(nil, packet.V311)
	c.out.push(outItem{buf: big, qos0: true}, 10, 0)
	select {
	case <-c.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("writer still blocked on a peer that reads nothing")
	}
	<-c.writerDone
	if _, ok := c.closeErr.(errWrite); !ok {
		t.Errorf("closed with %v, want a write error", c.closeErr)
	}
}

// The load meter calls a rate above maxDirectRate heavy, and light again
// once the rate falls, including after a quiet spell.
func TestLoadMeter(t *testing.T) {
	var m loadMeter
	now := time.Unix(1000, 0)
	var received uint64
	step := func(d time.Duration, msgs uint64) bool {
		now = now.Add(d)
		received += msgs
		return m.light(now, received)
	}
	if !step(time.Second, 1) {
		t.Fatal("heavy at start")
	}
	perWindow := uint64(maxDirectRate * loadWindow / time.Second)
	step(loadWindow, 2*perWindow)
	if step(time.Millisecond, 1) {
		t.Fatal("light at twice maxDirectRate")
	}
	if !step(loadWindow, perWindow/2) { // the window just closed ran at half the rate
		t.Fatal("still heavy at half maxDirectRate")
	}
	step(loadWindow, 3*perWindow)
	if !step(time.Minute, 1) {
		t.Fatal("heavy after a quiet minute")
	}
}
