package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// progress shows a run's counts while it goes: one line rewritten in place
// on a terminal, a plain line every few seconds otherwise (logs, CI).
type progress struct {
	w        io.Writer
	tty      bool
	every    time.Duration
	disabled bool

	mu     sync.Mutex
	stopCh chan struct{}
	done   chan struct{}
}

func newProgress(w io.Writer, tty bool, every time.Duration, disabled bool) *progress {
	if every == 0 {
		every = 5 * time.Second
		if tty {
			every = 250 * time.Millisecond
		}
	}
	return &progress{w: w, tty: tty, every: every, disabled: disabled}
}

// start begins showing label and the counts read by get.
func (p *progress) start(label string, get func() counters) {
	if p == nil || p.disabled {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopCh, p.done = make(chan struct{}), make(chan struct{})
	go p.loop(label, get, p.stopCh, p.done)
}

func (p *progress) loop(label string, get func() counters, stop, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(p.every)
	defer t.Stop()
	began := time.Now()
	last, lastAt := get(), began
	for {
		select {
		case <-stop:
			if p.tty {
				fmt.Fprint(p.w, "\r\033[K")
			}
			return
		case now := <-t.C:
			k := get()
			dt := now.Sub(lastAt).Seconds()
			var b strings.Builder
			fmt.Fprintf(&b, "%s: %s", label, fmtDur(now.Sub(began)))
			if k.planned > 0 {
				verb := "sent"
				if k.expected == 0 {
					verb = "connected"
				}
				fmt.Fprintf(&b, "  %s %s/%s", verb, fmtCount(float64(k.sent)), fmtCount(float64(k.planned)))
			}
			if k.expected > 0 {
				fmt.Fprintf(&b, "  recv %s/%s", fmtCount(float64(k.recv)), fmtCount(float64(k.expected)))
				fmt.Fprintf(&b, "  %s msg/s", fmtCount(float64(k.recv-last.recv)/dt))
			} else if k.planned > 0 {
				fmt.Fprintf(&b, "  %s/s", fmtCount(float64(k.sent-last.sent)/dt))
			}
			last, lastAt = k, now
			if p.tty {
				fmt.Fprintf(p.w, "\r\033[K%s", b.String())
			} else {
				fmt.Fprintln(p.w, b.String())
			}
		}
	}
}

// stop ends the current line.
func (p *progress) stop() {
	if p == nil || p.disabled {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopCh == nil {
		return
	}
	close(p.stopCh)
	<-p.done
	p.stopCh = nil
}

// fmtCount prints 1234567 as 1.23M.
func fmtCount(v float64) string {
	switch {
	case v >= 1e9:
		return fmt.Sprintf("%.2fG", v/1e9)
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.1fk", v/1e3)
	case v == float64(int64(v)):
		return fmt.Sprintf("%d", int64(v))
	}
	return fmt.Sprintf("%.1f", v)
}

func fmtDur(d time.Duration) string {
	return d.Round(100 * time.Millisecond).String()
}
