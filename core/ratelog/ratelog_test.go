package ratelog

import (
	"bytes"
	"fmt"
	"log/slog"
	"testing"
	"time"
)

// clock is a fake time source for Limiter.now.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func TestAllow(t *testing.T) {
	type call struct {
		after      time.Duration // clock advance before the call
		key        string
		ok         bool
		suppressed uint64
	}
	tests := []struct {
		name  string
		every time.Duration
		calls []call
	}{
		{"first call logs", 0, []call{{0, "a", true, 0}}},
		{"repeats inside Every are suppressed", time.Second, []call{
			{0, "a", true, 0},
			{100 * time.Millisecond, "a", false, 0},
			{100 * time.Millisecond, "a", false, 0},
			{700 * time.Millisecond, "a", false, 0},
		}},
		{"the line after Every carries the count", time.Second, []call{
			{0, "a", true, 0},
			{time.Millisecond, "a", false, 0},
			{time.Millisecond, "a", false, 0},
			{time.Millisecond, "a", false, 0},
			{time.Second, "a", true, 3},
			{time.Second, "a", true, 0},
		}},
		{"keys are independent", time.Second, []call{
			{0, "a", true, 0},
			{0, "b", true, 0},
			{time.Millisecond, "a", false, 0},
			{time.Millisecond, "b", false, 0},
			{time.Millisecond, "b", false, 0},
			{time.Second, "a", true, 1},
			{0, "b", true, 2},
		}},
		{"zero Every means ten seconds", 0, []call{
			{0, "a", true, 0},
			{9 * time.Second, "a", false, 0},
			{time.Second, "a", true, 1},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &clock{t: time.Unix(1e9, 0)}
			l := Limiter{Every: tt.every, now: c.now}
			for i, k := range tt.calls {
				c.advance(k.after)
				ok, n := l.Allow(k.key)
				if ok != k.ok || n != k.suppressed {
					t.Errorf("call %d (%q): Allow = %v, %d; want %v, %d", i, k.key, ok, n, k.ok, k.suppressed)
				}
			}
		})
	}
}

func TestWarn(t *testing.T) {
	var buf bytes.Buffer
	lg := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	c := &clock{t: time.Unix(1e9, 0)}
	l := Limiter{Every: time.Second, now: c.now}
	for range 5 {
		l.Warn(lg, "k", "queue full", "topic", "a/b")
		c.advance(time.Millisecond)
	}
	c.advance(time.Second)
	l.Warn(lg, "k", "queue full", "topic", "a/b")
	want := "level=WARN msg=\"queue full\" topic=a/b\n" +
		"level=WARN msg=\"queue full\" topic=a/b suppressed_since_last_log=4\n"
	if got := buf.String(); got != want {
		t.Errorf("log:\n%s\nwant:\n%s", got, want)
	}
}

func TestKeysBounded(t *testing.T) {
	c := &clock{t: time.Unix(1e9, 0)}
	l := Limiter{Every: time.Hour, now: c.now}
	for i := range 3 * maxKeys {
		if ok, _ := l.Allow(fmt.Sprint("key", i)); !ok {
			t.Fatalf("new key %d refused", i)
		}
		if len(l.last) > maxKeys {
			t.Fatalf("after %d keys the table holds %d, more than %d", i+1, len(l.last), maxKeys)
		}
	}
	// A key already present is not forgotten when the table is full.
	l = Limiter{Every: time.Hour, now: c.now}
	for i := range maxKeys {
		l.Allow(fmt.Sprint("key", i))
	}
	if ok, _ := l.Allow("key0"); ok {
		t.Error("key0 allowed again within Every with a full table")
	}
}

func TestRealClock(t *testing.T) {
	l := Limiter{Every: 5 * time.Millisecond}
	if ok, _ := l.Allow("a"); !ok {
		t.Fatal("first call refused")
	}
	if ok, _ := l.Allow("a"); ok {
		t.Fatal("second call at once allowed")
	}
	time.Sleep(10 * time.Millisecond)
	if ok, n := l.Allow("a"); !ok || n != 1 {
		t.Errorf("after Every: Allow = %v, %d; want true, 1", ok, n)
	}
	if DefaultEvery != 10*time.Second {
		t.Errorf("DefaultEvery = %v, want 10s", DefaultEvery)
	}
}
