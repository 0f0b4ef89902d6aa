package main

import (
	"context"
	"time"
)

// sleeper waits for a paced publisher's next send time. Go's timers wake a
// process idle in the poller with millisecond granularity on Linux (the
// poller's timeout is in milliseconds), which turned a 2,000 msg/s pace into
// pairs of messages every millisecond; the Linux sleeper waits on a timerfd
// instead, which the kernel fires to the microsecond.
type sleeper interface {
	// sleep waits for d; it returns false when the sleeper's context has
	// ended.
	sleep(d time.Duration) bool
	close()
}

// timerSleeper is the portable sleeper, with the runtime's timer precision.
type timerSleeper struct {
	ctx context.Context
	t   *time.Timer
}

func newTimerSleeper(ctx context.Context) *timerSleeper {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &timerSleeper{ctx: ctx, t: t}
}

func (s *timerSleeper) sleep(d time.Duration) bool {
	if s.ctx.Err() != nil {
		return false
	}
	s.t.Reset(d)
	select {
	case <-s.t.C:
		return true
	case <-s.ctx.Done():
		s.t.Stop()
		return false
	}
}

func (s *timerSleeper) close() { s.t.Stop() }
