package main

import (
	"context"
	"runtime"
	"testing"
	"time"
)

// The collector runs a collection on the first quiet tick after activity,
// and only then: not while the runtime collects by itself, and not again
// while the broker stays quiet.
func TestIdleCollector(t *testing.T) {
	var cycles, forced uint64
	ic := newIdleCollectorWith(func() uint64 { return cycles }, func() { cycles++; forced++ })
	step := func(natural uint64, wantForced uint64, what string) {
		t.Helper()
		cycles += natural
		ic.tick()
		if forced != wantForced {
			t.Fatalf("%s: %d forced collections, want %d", what, forced, wantForced)
		}
	}
	step(0, 1, "quiet from the start: what starting up left is collected once")
	step(0, 1, "still quiet")
	step(0, 1, "still quiet")
	step(3, 1, "a burst: the runtime collects")
	step(5, 1, "the burst goes on")
	step(0, 2, "the first quiet tick after the burst")
	step(0, 2, "quiet since")
	step(1, 2, "light load: one collection of its own")
	step(0, 3, "quiet again")
}

// With the runtime's own counter and collector, a quiet tick collects.
func TestIdleCollectorRuns(t *testing.T) {
	ic := newIdleCollector()
	before := ic.cycles()
	ic.forced = before // as if it had just collected: a quiet tick must wait for activity
	runtime.GC()       // activity: a collection the collector did not run
	ic.last = ic.cycles()
	ic.tick()
	if got := ic.cycles(); got <= before+1 {
		t.Fatalf("cycles %d -> %d: the quiet tick after a collection of the runtime's did not collect", before, got)
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
