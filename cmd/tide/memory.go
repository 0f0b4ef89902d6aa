package main

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// idleCollectEvery is how often the broker checks whether a burst of load
// has ended.
const idleCollectEvery = 5 * time.Second

// What counts as activity since the collector's own last collection,
// besides a collection of the runtime's: this much allocated, or this many
// goroutines started or ended (two per connection).
const (
	idleAllocs     = 4 << 20
	idleGoroutines = 1000
)

// idleCollector hands back the memory of a burst of load once it is over.
//
// Go collects garbage as the heap grows, with a goal of twice the heap that
// survived the last collection. After a burst (500 publisher/subscriber
// pairs at 190k msg/s, or 10,000 connections that came and went) that goal
// is sized for the burst: with the broker quiet again, nothing triggers a
// collection until the runtime's own forced one two minutes later, and
// until then the process holds the burst's memory (130-140 MB against 25
// MB), the stacks of goroutines that have ended included. So on a tick
// with no collection, when something happened since the collector's own
// last one (a collection of the runtime's, megabytes allocated, a thousand
// goroutines come or gone), the collector runs one and returns what is
// free to the system (debug.FreeOSMemory). A collection alone is not
// enough: the runtime's scavenger, paced by the heap goal, kept 110 of
// 136 MB after 10,000 connections had closed. It collects once per quiet
// spell, not on every quiet tick: an idle broker holding 10,000
// connections is not marked every five seconds.
type idleCollector struct {
	read    func() heapState
	collect func()

	last   heapState // at the previous tick
	forced heapState // right after the collector's own last collection
}

// heapState is what the collector watches.
type heapState struct {
	cycles     uint64 // collections so far
	allocs     uint64 // bytes allocated so far
	goroutines uint64 // alive
}

// changedSince reports whether anything happened between then and s.
func (s heapState) changedSince(then heapState) bool {
	d := s.goroutines - then.goroutines
	if s.goroutines < then.goroutines {
		d = then.goroutines - s.goroutines
	}
	return s.cycles != then.cycles || s.allocs-then.allocs >= idleAllocs || d >= idleGoroutines
}

// newIdleCollector returns a collector of this process's garbage.
func newIdleCollector() *idleCollector {
	samples := []metrics.Sample{
		{Name: "/gc/cycles/total:gc-cycles"},
		{Name: "/gc/heap/allocs:bytes"},
		{Name: "/sched/goroutines:goroutines"},
	}
	read := func() heapState {
		metrics.Read(samples) // unlike runtime.ReadMemStats, does not stop the world
		return heapState{samples[0].Value.Uint64(), samples[1].Value.Uint64(), samples[2].Value.Uint64()}
	}
	return newIdleCollectorWith(read, debug.FreeOSMemory)
}

func newIdleCollectorWith(read func() heapState, collect func()) *idleCollector {
	s := read()
	// Nothing collected yet: the first quiet tick collects what starting
	// up left behind.
	return &idleCollector{read: read, collect: collect, last: s, forced: heapState{cycles: ^uint64(0)}}
}

// tick collects when no collection ran since the previous tick and
// something happened since the collector's own last one.
func (ic *idleCollector) tick() {
	s := ic.read()
	if s.cycles == ic.last.cycles && s.changedSince(ic.forced) {
		ic.collect()
		s = ic.read()
		ic.forced = s
	}
	ic.last = s
}

// run ticks every interval until ctx ends.
func (ic *idleCollector) run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			ic.tick()
		}
	}
}
