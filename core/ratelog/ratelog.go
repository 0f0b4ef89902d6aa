// Package ratelog keeps repeated log lines from flooding the log: one line
// per key every interval, saying how many were suppressed meanwhile. The
// broker, its listeners and admin API, the plugins, the datastore sinks and
// the scheduler share it; it imports only the standard library, so that any
// package may use it.
package ratelog

import (
	"log/slog"
	"sync"
	"time"
)

// DefaultEvery is the interval between two lines of one key when
// Limiter.Every is zero.
const DefaultEvery = 10 * time.Second

// maxKeys bounds the keys remembered; beyond it the table starts over, so
// that keys made of topic or client names cannot grow it without end.
const maxKeys = 10000

// Limiter rate-limits log lines by key. The zero value is ready to use and
// lets through at most one line every ten seconds per key. A Limiter must
// not be copied after first use.
type Limiter struct {
	// Every is the interval between two lines of one key (DefaultEvery
	// when zero or negative).
	Every time.Duration

	now func() time.Time // time.Now when nil; set by tests

	mu   sync.Mutex
	last map[string]*entry
}

type entry struct {
	at         time.Time
	suppressed uint64
}

// Allow reports whether a line for key may be logged now: true for the first
// call of a key and for the first call at least Every after the key's last
// allowed one. When it returns true, suppressed is the number of calls for
// key refused since that last allowed call (0 the first time); when it
// returns false, the call is counted and suppressed is 0. Use it where the
// line is logged at another level than Warn or carries the count under its
// own attribute name.
func (l *Limiter) Allow(key string) (ok bool, suppressed uint64) {
	every := l.Every
	if every <= 0 {
		every = DefaultEvery
	}
	now := time.Now
	if l.now != nil {
		now = l.now
	}
	t := now()
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.last[key]
	if e == nil {
		if l.last == nil || len(l.last) >= maxKeys {
			l.last = map[string]*entry{}
		}
		e = &entry{}
		l.last[key] = e
	}
	if !e.at.IsZero() && t.Sub(e.at) < every {
		e.suppressed++
		return false, 0
	}
	n := e.suppressed
	e.at, e.suppressed = t, 0
	return true, n
}

// Warn logs msg with args at the warning level on lg unless a line with the
// same key was logged less than Every ago; the next line that is logged
// carries the number of lines suppressed in between as the
// "suppressed_since_last_log" attribute (absent when none were).
func (l *Limiter) Warn(lg *slog.Logger, key, msg string, args ...any) {
	ok, n := l.Allow(key)
	if !ok {
		return
	}
	if n > 0 {
		args = append(args, "suppressed_since_last_log", n)
	}
	lg.Warn(msg, args...)
}
