package main

import (
	"context"
	"runtime"
	"testing"
	"time"
)

// The collector runs a collection on the first quiet tick after activity,
// and only then: not while the runtime collects by itself, and not again
// while the broker stays quiet. Activity is a collection of the runtime's,
// megabytes allocated, or many goroutines come or gone (connections).
func TestIdleCollector(t *testing.T) {
	var s heapState
	forced := 0
	ic := newIdleCollectorWith(func() heapState { return s }, func() { s.cycles++; forced++ })
	step := func(change func(), wantForced int, what string) {
		t.Helper()
		change()
		ic.tick()
		if forced != wantForced {
			t.Fatalf("%s: %d forced collections, want %d", what, forced, wantForced)
		}
	}
	quiet := func() {}
	step(quiet, 1, "quiet from the start: what starting up left is collected once")
	step(quiet, 1, "still quiet")
	step(func() { s.cycles += 3; s.allocs += 100 << 20 }, 1, "a burst: the runtime collects")
	step(func() { s.cycles += 5 }, 1, "the burst goes on")
	step(quiet, 2, "the first quiet tick after the burst")
	step(quiet, 2, "quiet since")
	step(func() { s.cycles++ }, 2, "light load: one collection of its own")
	step(quiet, 3, "quiet again")
	step(func() { s.goroutines += 20000 }, 4, "10,000 connections opened, no collection of the runtime's")
	step(func() { s.allocs += 1 << 20; s.goroutines += 10 }, 4, "idle connections: a little allocated, a few goroutines")
	step(func() { s.goroutines -= 20010 }, 5, "the connections closed: their stacks are collected")
	step(func() { s.allocs += idleAllocs }, 6, "megabytes allocated between ticks, no collection of the runtime's")
}

// With the runtime's own figures and collector, a quiet tick after activity
// collects, and run stops with its context.
func TestIdleCollectorRuns(t *testing.T) {
	ic := newIdleCollector()
	before := ic.read()
	ic.forced = before // as if it had just collected: a quiet tick must wait for activity
	runtime.GC()       // activity: a collection the collector did not run
	ic.last = ic.read()
	ic.tick()
	if got := ic.read(); got.cycles <= before.cycles+1 {
		t.Fatalf("cycles %d -> %d: the quiet tick after a collection of the runtime's did not collect", before.cycles, got.cycles)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { ic.run(ctx, time.Millisecond); close(done) }()
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("run did not return when its context ended")
	}
}
