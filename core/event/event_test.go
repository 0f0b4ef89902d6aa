package event

import (
	"sort"
	"sync"
	"testing"
)

func TestNewIDUniqueAndOrdered(t *testing.T) {
	const n = 20000
	ids := make([]string, n)
	for i := range ids {
		ids[i] = NewID()
	}
	if !sort.StringsAreSorted(ids) {
		t.Fatal("ids are not time-ordered")
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if len(id) != 26 {
			t.Fatalf("id %q has length %d", id, len(id))
		}
		if seen[id] {
			t.Fatalf("duplicate id %q", id)
		}
		seen[id] = true
	}
}

func TestBusWantsAndDrops(t *testing.T) {
	b := NewBus(nil)
	if b.Wants(Publish) {
		t.Fatal("empty bus wants publish")
	}
	s := b.Subscribe("obs", Publish|Connect, QueueOptions{Size: 2})
	if !b.Wants(Publish) || !b.Wants(Connect) || b.Wants(Disconnect) {
		t.Fatalf("wants = %v", Kind(b.wants.Load()))
	}
	for i := 0; i < 5; i++ {
		b.Emit(&Event{Kind: Publish})
	}
	b.Emit(&Event{Kind: Disconnect}) // not wanted: neither queued nor dropped
	if s.Enqueued() != 2 || s.Dropped() != 3 || s.Len() != 2 {
		t.Fatalf("enqueued %d dropped %d len %d", s.Enqueued(), s.Dropped(), s.Len())
	}
	s.Close()
	if b.Wants(Publish) {
		t.Fatal("closed subscriber still wanted")
	}
	n := 0
	for range s.Queue(0) {
		n++
	}
	if n != 2 {
		t.Fatalf("drained %d events after close", n)
	}
}

func TestBusShardsKeepClientOrder(t *testing.T) {
	b := NewBus(nil)
	s := b.Subscribe("obs", Publish, QueueOptions{Size: 1000, Shards: 4})
	clients := []*Client{{ID: "a"}, {ID: "b"}, {ID: "c"}}
	for i := 0; i < 300; i++ {
		c := clients[i%3]
		b.Emit(&Event{Kind: Publish, Client: c, Message: &Message{QoS: byte(i / 3 % 3)}})
	}
	seq := map[string][]int{}
	for i := 0; i < s.Shards(); i++ {
		q := s.Queue(i)
	drain:
		for {
			select {
			case e := <-q:
				seq[e.Client.ID] = append(seq[e.Client.ID], i)
			default:
				break drain
			}
		}
	}
	for id, shards := range seq {
		if len(shards) != 100 {
			t.Fatalf("client %s: %d events", id, len(shards))
		}
		for _, sh := range shards {
			if sh != shards[0] {
				t.Fatalf("client %s spread over shards %v", id, shards)
			}
		}
	}
}

func TestBusConcurrentEmitAndClose(t *testing.T) {
	b := NewBus(nil)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
					b.Emit(&Event{Kind: Publish})
				}
			}
		}()
	}
	for i := 0; i < 100; i++ {
		s := b.Subscribe("x", Publish, QueueOptions{Size: 4})
		s.Close()
	}
	close(stop)
	wg.Wait()
}
