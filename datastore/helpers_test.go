package datastore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testLogger logs to stderr when TIDE_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("TIDE_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

var errDown = errors.New("store unavailable")

// fakeSink is a test double for a store: the Runner is under test here, and
// the store's behaviour must be scripted exactly (failures, partial errors).
type fakeSink struct {
	down atomic.Bool // Connect and Write fail temporarily
	// judge, if set, decides each write; nil means store everything.
	judge func(batch []Record) error

	mu       sync.Mutex
	order    []string       // ids in the order first stored
	count    map[string]int // times each id was written
	batches  []int          // size of each successful Write
	attempts []time.Time    // every Connect or Write call
	closed   int
	writes   int
}

func newFake() *fakeSink { return &fakeSink{count: map[string]int{}} }

func (f *fakeSink) Init() error { return nil }

func (f *fakeSink) Connect(ctx context.Context) error {
	f.mu.Lock()
	f.attempts = append(f.attempts, time.Now())
	f.mu.Unlock()
	if f.down.Load() {
		return errDown
	}
	return nil
}

func (f *fakeSink) Write(ctx context.Context, batch []Record) error {
	f.mu.Lock()
	f.attempts = append(f.attempts, time.Now())
	f.writes++
	judge := f.judge
	f.mu.Unlock()
	if f.down.Load() {
		return errDown
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	var err error
	if judge != nil {
		err = judge(batch)
	}
	stored := batch
	var pe *PartialError
	switch {
	case errors.As(err, &pe):
		failed := map[int]bool{}
		for _, it := range pe.Items {
			failed[it.Index] = true
		}
		stored = nil
		for i, r := range batch {
			if !failed[i] {
				stored = append(stored, r)
			}
		}
	case err != nil:
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range stored {
		if f.count[r.ID] == 0 {
			f.order = append(f.order, r.ID)
		}
		f.count[r.ID]++
	}
	f.batches = append(f.batches, len(stored))
	return err
}

func (f *fakeSink) Close(ctx context.Context) error {
	f.mu.Lock()
	f.closed++
	f.mu.Unlock()
	return nil
}

func (f *fakeSink) stored() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.order...)
}

func (f *fakeSink) batchSizes() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int(nil), f.batches...)
}

func rec(i int) Record {
	return Record{ID: fmt.Sprintf("r%05d", i), Time: time.Unix(1700000000, int64(i)), Topic: "t", Payload: []byte(fmt.Sprint(i))}
}

func ids(from, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = rec(from + i).ID
	}
	return out
}

func newRunner(t *testing.T, s Sink, opts RunnerOptions) *Runner {
	t.Helper()
	if opts.Name == "" {
		opts.Name = "test"
	}
	if opts.Log == nil {
		opts.Log = testLogger()
	}
	r, err := NewRunner(s, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r.Close(ctx)
	})
	return r
}

func accept(t *testing.T, r *Runner, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		if err := r.Accept(context.Background(), rec(i)); err != nil {
			t.Fatalf("accept %d: %v", i, err)
		}
	}
}

// eventually polls cond until it holds or 10 seconds pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func sameIDs(t *testing.T, what string, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %d records, want %d\ngot  %v\nwant %v", what, len(got), len(want), got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s: record %d is %s, want %s (order broken)\ngot  %v\nwant %v", what, i, got[i], want[i], got, want)
		}
	}
}

func closeRunner(t *testing.T, r *Runner, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := r.Close(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
}

func (r *Runner) memLen() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mem.len()
}
