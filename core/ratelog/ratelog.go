// Package ratelog keeps repeated warnings from flooding the log: one line
// per key every interval, saying how many were suppressed meanwhile.
package ratelog

import (
	"log/slog"
	"sync"
	"time"
)

// maxKeys bounds the keys remembered; beyond it the table starts over, so
// that keys made of topic names cannot grow it without end.
const maxKeys = 10000

// Limiter rate-limits warnings by key. The zero value logs at most once
// every ten seconds per key.
type Limiter struct {
	// Every is the interval between two lines of one key (default 10s).
	Every time.Duration

	mu   sync.Mutex
	last map[string]*entry
}

type entry struct {
	at         time.Time
	suppressed uint64
}

// Warn logs msg with args on lg unless a line with the same key was logged
// less than Every ago; the next line that is logged carries the number of
// lines suppressed in between.
func (l *Limiter) Warn(lg *slog.Logger, key, msg string, args ...any) {
	every := l.Every
	if every <= 0 {
		every = 10 * time.Second
	}
	now := time.Now()
	l.mu.Lock()
	if l.last == nil || len(l.last) >= maxKeys {
		l.last = map[string]*entry{}
	}
	e := l.last[key]
	if e == nil {
		e = &entry{}
		l.last[key] = e
	}
	if !e.at.IsZero() && now.Sub(e.at) < every {
		e.suppressed++
		l.mu.Unlock()
		return
	}
	n := e.suppressed
	e.at, e.suppressed = now, 0
	l.mu.Unlock()
	if n > 0 {
		args = append(args, "suppressed_since_last_log", n)
	}
	lg.Warn(msg, args...)
}
