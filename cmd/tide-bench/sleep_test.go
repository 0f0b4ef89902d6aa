package main

import (
	"context"
	"testing"
	"time"
)

// TestSleeper checks both sleepers: a sleep lasts at least its duration,
// and ending the context interrupts a sleep under way and refuses later ones.
func TestSleeper(t *testing.T) {
	for name, mk := range map[string]func(context.Context) sleeper{
		"default":  newSleeper,
		"portable": func(ctx context.Context) sleeper { return newTimerSleeper(ctx) },
	} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			s := mk(ctx)
			defer s.close()
			for _, d := range []time.Duration{0, -time.Millisecond, 50 * time.Microsecond, 700 * time.Microsecond, 3 * time.Millisecond} {
				start := time.Now()
				if !s.sleep(d) {
					t.Fatalf("sleep(%v) = false with a live context", d)
				}
				if got := time.Since(start); got < d {
					t.Fatalf("sleep(%v) returned after %v", d, got)
				}
			}
			done := make(chan bool)
			go func() { done <- s.sleep(time.Hour) }()
			time.Sleep(20 * time.Millisecond)
			cancel()
			select {
			case ok := <-done:
				if ok {
					t.Fatal("an interrupted sleep reported true")
				}
			case <-time.After(10 * time.Second):
				t.Fatal("cancelling the context did not end the sleep")
			}
			if s.sleep(time.Hour) || s.sleep(0) {
				t.Fatal("a sleep after the context ended reported true")
			}
		})
	}
}
