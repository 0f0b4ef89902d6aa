package event

import (
	"hash/maphash"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// QueueOptions size a subscriber's queues.
type QueueOptions struct {
	// Size is the capacity of each shard's queue (default 10000).
	Size int
	// Shards is the number of queues (default 1). Events of one client always
	// go to the same shard, so a consumer that runs one worker per shard sees
	// each client's events in order.
	Shards int
}

// Subscriber is one consumer of the Bus. It receives the kinds it asked for
// on its shard queues.
type Subscriber struct {
	name   string
	kinds  Kind
	queues []chan *Event
	bus    *Bus

	enqueued atomic.Uint64
	dropped  atomic.Uint64
	// lastLog is the unix nano time of the last drop log line.
	lastLog  atomic.Int64
	reported atomic.Uint64
}

// Name returns the name the subscriber registered with.
func (s *Subscriber) Name() string { return s.name }

// Shards returns the number of queues.
func (s *Subscriber) Shards() int { return len(s.queues) }

// Queue returns shard i's queue. It is closed by Close.
func (s *Subscriber) Queue(i int) <-chan *Event { return s.queues[i] }

// Enqueued returns how many events were queued for the subscriber.
func (s *Subscriber) Enqueued() uint64 { return s.enqueued.Load() }

// Dropped returns how many events were dropped because a queue was full.
func (s *Subscriber) Dropped() uint64 { return s.dropped.Load() }

// Len returns the number of events waiting in all shards.
func (s *Subscriber) Len() int {
	n := 0
	for _, q := range s.queues {
		n += len(q)
	}
	return n
}

// Close unsubscribes and closes the queues once nothing can send to them.
func (s *Subscriber) Close() { s.bus.unsubscribe(s) }

// Bus fans events out to subscribers without ever blocking the emitter.
type Bus struct {
	log   *slog.Logger
	wants atomic.Uint32
	subs  atomic.Pointer[[]*Subscriber]
	seed  maphash.Seed

	// mu serialises Subscribe/Close; emitting holds emitMu for reading so
	// that Close never closes a channel that Emit is sending on.
	mu     sync.Mutex
	emitMu sync.RWMutex
}

// NewBus returns an empty bus. A nil logger discards.
func NewBus(log *slog.Logger) *Bus {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &Bus{log: log, seed: maphash.MakeSeed()}
	b.subs.Store(&[]*Subscriber{})
	return b
}

// Wants reports whether any subscriber wants events of kind k. It is one
// atomic load, so the broker can skip building events nobody reads.
func (b *Bus) Wants(k Kind) bool { return Kind(b.wants.Load())&k != 0 }

// Subscribe registers a consumer of the given kinds.
func (b *Bus) Subscribe(name string, kinds Kind, opts QueueOptions) *Subscriber {
	if opts.Size <= 0 {
		opts.Size = 10000
	}
	if opts.Shards <= 0 {
		opts.Shards = 1
	}
	s := &Subscriber{name: name, kinds: kinds, bus: b, queues: make([]chan *Event, opts.Shards)}
	for i := range s.queues {
		s.queues[i] = make(chan *Event, opts.Size)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	old := *b.subs.Load()
	next := append(append(make([]*Subscriber, 0, len(old)+1), old...), s)
	b.subs.Store(&next)
	b.recompute(next)
	return s
}

func (b *Bus) unsubscribe(s *Subscriber) {
	b.mu.Lock()
	old := *b.subs.Load()
	next := make([]*Subscriber, 0, len(old))
	found := false
	for _, o := range old {
		if o == s {
			found = true
			continue
		}
		next = append(next, o)
	}
	b.subs.Store(&next)
	b.recompute(next)
	b.mu.Unlock()
	if !found {
		return
	}
	// Wait for emitters that may still hold the old list, then close.
	b.emitMu.Lock()
	for _, q := range s.queues {
		close(q)
	}
	b.emitMu.Unlock()
}

func (b *Bus) recompute(subs []*Subscriber) {
	var k Kind
	for _, s := range subs {
		k |= s.kinds
	}
	b.wants.Store(uint32(k))
}

// Subscribers returns the current subscribers (for metrics).
func (b *Bus) Subscribers() []*Subscriber { return append([]*Subscriber(nil), *b.subs.Load()...) }

// Emit queues e for every subscriber that wants its kind. It never blocks: a
// full queue drops the event for that subscriber, counts it and logs (at most
// one line per subscriber every ten seconds).
func (b *Bus) Emit(e *Event) {
	if !b.Wants(e.Kind) {
		return
	}
	b.emitMu.RLock()
	subs := *b.subs.Load()
	var shardKey uint64
	hashed := false
	for _, s := range subs {
		if s.kinds&e.Kind == 0 {
			continue
		}
		q := s.queues[0]
		if len(s.queues) > 1 {
			if !hashed {
				id := ""
				if e.Client != nil {
					id = e.Client.ID
				} else if e.Message != nil {
					id = e.Message.ClientID
				}
				shardKey = maphash.String(b.seed, id)
				hashed = true
			}
			q = s.queues[shardKey%uint64(len(s.queues))]
		}
		select {
		case q <- e:
			s.enqueued.Add(1)
		default:
			s.dropped.Add(1)
			b.logDrop(s)
		}
	}
	b.emitMu.RUnlock()
}

func (b *Bus) logDrop(s *Subscriber) {
	now := time.Now().UnixNano()
	last := s.lastLog.Load()
	if now-last < int64(10*time.Second) || !s.lastLog.CompareAndSwap(last, now) {
		return
	}
	total := s.dropped.Load()
	since := total - s.reported.Swap(total)
	b.log.Warn("event queue full, events dropped", "subscriber", s.name, "dropped", since, "dropped_total", total)
}
