//go:build !linux

package main

import "context"

// newSleeper returns the portable sleeper: timerfd is Linux's.
func newSleeper(ctx context.Context) sleeper { return newTimerSleeper(ctx) }

// setQuickAck does nothing: TCP_QUICKACK is Linux's.
func setQuickAck(uintptr) {}
