package main

import (
	"context"
	"runtime"
	"runtime/metrics"
	"time"
)

// idleCollectEvery is how often the broker checks whether a burst of load
// has ended.
const idleCollectEvery = 5 * time.Second

// idleCollector hands back the memory of a burst of load once it is over.
//
// Go collects garbage as the heap grows, with a goal of twice the heap that
// survived the last collection. After a burst (500 publisher/subscriber
// pairs at 190k msg/s, say) that goal is sized for the burst: with the
// broker quiet again, nothing triggers a collection until the runtime's own
// forced one two minutes later, and until then the process holds the
// burst's memory (130-140 MB against 25 MB) and allocates through it. So
// when a whole tick went by without a collection, after one that had some,
// the collector runs one: the heap goal shrinks to the live heap, and the
// runtime's scavenger returns the rest to the system within seconds. It
// collects once per quiet spell, not on every quiet tick: an idle broker
// holding 10,000 connections is not marked every five seconds.
type idleCollector struct {
	cycles  func() uint64 // collections so far
	collect func()

	last   uint64 // cycles at the previous tick
	forced uint64 // cycles right after the collector's own last collection
}

// newIdleCollector returns a collector of this process's garbage.
func newIdleCollector() *idleCollector {
	sample := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
	cycles := func() uint64 {
		metrics.Read(sample) // unlike runtime.ReadMemStats, does not stop the world
		return sample[0].Value.Uint64()
	}
	return newIdleCollectorWith(cycles, runtime.GC)
}

func newIdleCollectorWith(cycles func() uint64, collect func()) *idleCollector {
	c := cycles()
	return &idleCollector{cycles: cycles, collect: collect, last: c, forced: ^uint64(0)}
}

// tick collects when no collection ran since the previous tick and at least
// one ran since the collector's own last one.
func (ic *idleCollector) tick() {
	c := ic.cycles()
	if c == ic.last && c != ic.forced {
		ic.collect()
		c = ic.cycles()
		ic.forced = c
	}
	ic.last = c
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
