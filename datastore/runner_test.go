package datastore

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func TestBatchSizeAndFlushOnClose(t *testing.T) {
	f := newFake()
	r := newRunner(t, f, RunnerOptions{BatchSize: 10, FlushInterval: time.Hour})
	accept(t, r, 0, 25)
	eventually(t, "two full batches", func() bool { return len(f.stored()) == 20 })
	closeRunner(t, r, 5*time.Second)
	if got, want := f.batchSizes(), []int{10, 10, 5}; len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("batch sizes = %v, want %v", got, want)
	}
	sameIDs(t, "stored", f.stored(), ids(0, 25))
	if f.closed != 1 {
		t.Fatalf("sink closed %d times, want 1", f.closed)
	}
	if err := r.Accept(context.Background(), rec(99)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Accept after Close = %v, want ErrClosed", err)
	}
}

func TestFlushInterval(t *testing.T) {
	f := newFake()
	r := newRunner(t, f, RunnerOptions{BatchSize: 1000, FlushInterval: 50 * time.Millisecond})
	start := time.Now()
	accept(t, r, 0, 3)
	eventually(t, "a partial batch", func() bool { return len(f.stored()) == 3 })
	if d := time.Since(start); d < 45*time.Millisecond {
		t.Fatalf("partial batch written after %v, before the flush interval (50ms ±10%%)", d)
	}
	if got := f.batchSizes(); len(got) != 1 || got[0] != 3 {
		t.Fatalf("batch sizes = %v, want [3]", got)
	}
	if s := r.Stats(); s.Written != 3 || s.Batches != 1 || s.BatchLatency <= 0 || s.Queued != 0 {
		t.Fatalf("stats = %+v", s)
	}
}

func TestBackoff(t *testing.T) {
	f := newFake()
	fails := 4
	f.judge = func([]Record) error {
		if fails > 0 {
			fails--
			return errDown
		}
		return nil
	}
	initial := 20 * time.Millisecond
	r := newRunner(t, f, RunnerOptions{BatchSize: 5, RetryInitial: initial, RetryMax: time.Second, SpoolAfter: time.Hour})
	accept(t, r, 0, 5)
	eventually(t, "the batch after four failures", func() bool { return len(f.stored()) == 5 })
	f.mu.Lock()
	att := append([]time.Time(nil), f.attempts[1:]...) // [0] is Connect
	f.mu.Unlock()
	if len(att) != 5 {
		t.Fatalf("got %d write attempts, want 5", len(att))
	}
	for i := 1; i < len(att); i++ {
		// The i-th wait is drawn from [d/2, d] with d = initial·2^(i-1).
		d := initial << (i - 1)
		if gap := att[i].Sub(att[i-1]); gap < d/2 || gap > d+500*time.Millisecond {
			t.Errorf("wait %d = %v, want between %v and %v", i, gap, d/2, d)
		}
	}
	s := r.Stats()
	if s.Retried != 20 || s.Written != 5 || s.LastError == "" || s.LastErrorAt.IsZero() {
		t.Fatalf("stats = %+v, want 20 retried, 5 written, a last error", s)
	}
}

func TestConnectRetried(t *testing.T) {
	f := newFake()
	f.down.Store(true)
	r := newRunner(t, f, RunnerOptions{BatchSize: 2, RetryInitial: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond, SpoolAfter: time.Hour})
	accept(t, r, 0, 2)
	eventually(t, "several connect attempts", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return len(f.attempts) >= 4
	})
	if r.Stats().Connected {
		t.Fatalf("connected while the sink is down")
	}
	f.down.Store(false)
	eventually(t, "records after the sink came up", func() bool { return len(f.stored()) == 2 })
	if !r.Stats().Connected {
		t.Fatalf("not connected after a write")
	}
}

func readDeadLetters(t *testing.T, path string) []DeadLetter {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	var out []DeadLetter
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		var d DeadLetter
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			t.Fatalf("dead-letter line %q: %v", sc.Text(), err)
		}
		out = append(out, d)
	}
	return out
}

func TestPartialErrorRetriesOnlyTemporary(t *testing.T) {
	f := newFake()
	first := true
	f.judge = func(batch []Record) error {
		if !first {
			return nil
		}
		first = false
		return &PartialError{Items: []ItemError{
			{Index: 1, Permanent: true, Reason: "mapping error"},
			{Index: 3, Reason: "shard busy"},
		}}
	}
	dl := filepath.Join(t.TempDir(), "dl", "test.ndjson")
	r := newRunner(t, f, RunnerOptions{BatchSize: 5, RetryInitial: time.Millisecond, DeadLetter: dl})
	accept(t, r, 0, 5)
	eventually(t, "the retried record", func() bool { return len(f.stored()) == 4 })
	sameIDs(t, "stored", f.stored(), []string{rec(0).ID, rec(2).ID, rec(4).ID, rec(3).ID})
	if got := f.batchSizes(); len(got) != 2 || got[1] != 1 {
		t.Fatalf("batch sizes = %v, want [3 1]: only the temporary failure is retried", got)
	}
	closeRunner(t, r, 5*time.Second)
	dls := readDeadLetters(t, dl)
	if len(dls) != 1 || dls[0].Record.ID != rec(1).ID || dls[0].Reason != "mapping error" || dls[0].Sink != "test" || dls[0].Time.IsZero() {
		t.Fatalf("dead letters = %+v, want record 1 with its reason", dls)
	}
	if string(dls[0].Record.Payload) != "1" {
		t.Fatalf("dead-letter payload = %q, want %q", dls[0].Record.Payload, "1")
	}
	if s := r.Stats(); s.DeadLettered != 1 || s.Retried != 1 || s.Written != 4 {
		t.Fatalf("stats = %+v, want 1 dead-lettered, 1 retried, 4 written", s)
	}
}

func TestPermanentErrorDeadLetters(t *testing.T) {
	f := newFake()
	f.judge = func([]Record) error { return Permanent(errors.New("table is read-only")) }
	dl := filepath.Join(t.TempDir(), "dl.ndjson")
	r := newRunner(t, f, RunnerOptions{BatchSize: 3, DeadLetter: dl})
	accept(t, r, 0, 3)
	eventually(t, "dead letters", func() bool { return r.Stats().DeadLettered == 3 })
	closeRunner(t, r, time.Second)
	if got := readDeadLetters(t, dl); len(got) != 3 || got[2].Reason != "table is read-only" {
		t.Fatalf("dead letters = %+v", got)
	}
	if s := r.Stats(); s.Retried != 0 || s.Dropped != 0 {
		t.Fatalf("stats = %+v, want nothing retried or dropped", s)
	}
}

func TestNoDeadLetterFileCountsDropped(t *testing.T) {
	f := newFake()
	f.judge = func([]Record) error { return Permanent(errors.New("bad")) }
	r := newRunner(t, f, RunnerOptions{BatchSize: 2})
	accept(t, r, 0, 2)
	eventually(t, "dropped records", func() bool { return r.Stats().Dropped == 2 })
}

func TestSpoolWhenDownAndOrderedReplay(t *testing.T) {
	f := newFake()
	f.down.Store(true)
	dir := t.TempDir()
	r := newRunner(t, f, RunnerOptions{
		BatchSize: 7, FlushInterval: 5 * time.Millisecond, QueueSize: 1000,
		RetryInitial: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond,
		SpoolDir: dir, SpoolAfter: 50 * time.Millisecond,
	})
	accept(t, r, 0, 30)
	eventually(t, "spooling", func() bool { s := r.Stats(); return s.Spooling && s.Spooled == 30 })
	accept(t, r, 30, 30) // straight to the spool, after the others
	if s := r.Stats(); s.Spooled != 60 || s.Queued != 0 || s.SpoolBytes == 0 {
		t.Fatalf("stats while down = %+v, want 60 spooled, none in memory", s)
	}
	f.down.Store(false)
	eventually(t, "replay", func() bool { return len(f.stored()) == 60 })
	eventually(t, "back to memory", func() bool { return !r.Stats().Spooling })
	accept(t, r, 60, 10)
	eventually(t, "new records", func() bool { return len(f.stored()) == 70 })
	sameIDs(t, "stored", f.stored(), ids(0, 70))
	s := r.Stats()
	if s.Replayed != 60 || s.SpoolBytes != 0 || s.Dropped != 0 {
		t.Fatalf("stats = %+v, want 60 replayed, an empty spool", s)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "*.seg")); len(m) != 0 {
		t.Fatalf("spool files left after replay: %v", m)
	}
}

func TestQueueFullMovesToSpool(t *testing.T) {
	f := newFake()
	f.down.Store(true)
	r := newRunner(t, f, RunnerOptions{
		BatchSize: 4, FlushInterval: time.Millisecond, QueueSize: 10,
		RetryInitial: 5 * time.Millisecond, RetryMax: 10 * time.Millisecond,
		SpoolDir: t.TempDir(), SpoolAfter: time.Hour, // only a full queue spools
	})
	for i := 0; i < 100; i++ {
		if !r.TryAccept(rec(i)) {
			t.Fatalf("TryAccept %d refused: the spool has room", i)
		}
	}
	if s := r.Stats(); !s.Spooling || s.Queued != 0 {
		t.Fatalf("stats = %+v, want spooling with nothing in memory", s)
	}
	f.down.Store(false)
	eventually(t, "replay", func() bool { return len(f.stored()) == 100 })
	sameIDs(t, "stored", f.stored(), ids(0, 100))
}

func TestRestartReplaysSpoolFirst(t *testing.T) {
	dir := t.TempDir()
	f := newFake()
	f.down.Store(true)
	opts := RunnerOptions{BatchSize: 5, FlushInterval: time.Millisecond, RetryInitial: time.Millisecond, RetryMax: 5 * time.Millisecond,
		SpoolDir: dir, SpoolAfter: time.Hour}
	r := newRunner(t, f, opts)
	accept(t, r, 0, 12)
	// Close while the sink is down: what is in memory goes to the spool.
	closeRunner(t, r, 200*time.Millisecond)
	if s := r.Stats(); s.Spooled != 12 || s.Dropped != 0 {
		t.Fatalf("stats after close = %+v, want 12 spooled", s)
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	if len(segs) != 1 {
		t.Fatalf("segments = %v", segs)
	}
	// A crash in the middle of an append: a torn record at the end.
	fh, _ := os.OpenFile(segs[0], os.O_WRONLY|os.O_APPEND, 0)
	fh.Write([]byte{200, 0, 0, 0, 9, 9, 9, 9, '{', '"'})
	fh.Close()

	f2 := newFake()
	r2 := newRunner(t, f2, opts)
	accept(t, r2, 12, 3) // newer records wait behind the spool
	eventually(t, "replay after restart", func() bool { return len(f2.stored()) == 15 })
	sameIDs(t, "stored", f2.stored(), ids(0, 15))
	// The 12 from the last run are replayed, and so is whatever of the 3 new
	// ones arrived while the spool still held records (the rest, arriving
	// after it emptied, went straight to the sink, as order allows).
	if s := r2.Stats(); s.Written != 15 || s.Replayed != 12+s.Spooled || s.Dropped != 0 {
		t.Fatalf("stats = %+v, want 15 written, 12 + spooled replayed", s)
	}
}

func TestShutdownDeadlineWithoutSpool(t *testing.T) {
	f := newFake()
	f.down.Store(true)
	r := newRunner(t, f, RunnerOptions{BatchSize: 5, FlushInterval: time.Millisecond, RetryInitial: time.Millisecond, RetryMax: 5 * time.Millisecond})
	accept(t, r, 0, 8)
	start := time.Now()
	closeRunner(t, r, 100*time.Millisecond)
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Close took %v with a 100ms deadline", d)
	}
	if s := r.Stats(); s.Dropped != 8 || s.Queued != 0 {
		t.Fatalf("stats = %+v, want the 8 records counted as dropped", s)
	}
}

// hangingSink blocks in Write until its context is done, then some more.
type hangingSink struct {
	fakeSink
	release chan struct{}
}

func (h *hangingSink) Write(ctx context.Context, batch []Record) error {
	<-ctx.Done()
	<-h.release
	return ctx.Err()
}

func TestShutdownSpoolsHungWrite(t *testing.T) {
	h := &hangingSink{release: make(chan struct{})}
	defer close(h.release)
	dir := t.TempDir()
	r := newRunner(t, h, RunnerOptions{BatchSize: 3, FlushInterval: time.Millisecond, SpoolDir: dir, SpoolAfter: time.Hour})
	accept(t, r, 0, 3)
	eventually(t, "a write in flight", func() bool { return r.Stats().Queued == 3 && r.memLen() == 0 })
	start := time.Now()
	closeRunner(t, r, 50*time.Millisecond)
	if d := time.Since(start); d > closeGrace+time.Second {
		t.Fatalf("Close took %v", d)
	}
	f := newFake()
	r2 := newRunner(t, f, RunnerOptions{SpoolDir: dir})
	eventually(t, "the hung batch, replayed", func() bool { return len(f.stored()) == 3 })
	_ = r2
}

func TestDropOldestInMemory(t *testing.T) {
	f := newFake()
	f.down.Store(true)
	r := newRunner(t, f, RunnerOptions{BatchSize: 100, FlushInterval: time.Hour, QueueSize: 5, FullPolicy: DropOldest,
		RetryInitial: time.Millisecond, RetryMax: 5 * time.Millisecond})
	for i := 0; i < 20; i++ {
		if !r.TryAccept(rec(i)) {
			t.Fatalf("TryAccept %d refused under drop_oldest", i)
		}
	}
	if s := r.Stats(); s.Dropped != 15 || s.Queued != 5 || s.Saturated != true || r.Pressure() {
		t.Fatalf("stats = %+v, pressure %v; want 15 dropped, saturated, no pressure under drop_oldest", s, r.Pressure())
	}
	f.down.Store(false)
	closeRunner(t, r, 5*time.Second)
	sameIDs(t, "stored", f.stored(), ids(15, 5))
}

func TestDropOldestInSpool(t *testing.T) {
	f := newFake()
	f.down.Store(true)
	r := newRunner(t, f, RunnerOptions{BatchSize: 10, FlushInterval: time.Millisecond, QueueSize: 10, FullPolicy: DropOldest,
		RetryInitial: time.Millisecond, RetryMax: 5 * time.Millisecond, SpoolDir: t.TempDir(), SpoolMax: 64 << 10, SpoolAfter: time.Millisecond})
	const n = 3000 // about 150 bytes each: several times the spool
	for i := 0; i < n; i++ {
		if !r.TryAccept(rec(i)) {
			t.Fatalf("TryAccept %d refused under drop_oldest", i)
		}
	}
	s := r.Stats()
	if s.Dropped == 0 || s.SpoolBytes > 64<<10 {
		t.Fatalf("stats = %+v, want drops and a bounded spool", s)
	}
	f.down.Store(false)
	eventually(t, "replay", func() bool {
		s := r.Stats()
		return !s.Spooling && uint64(len(f.stored()))+s.Dropped == n
	})
	// What is left is the batch the writer held when the drops began and
	// the newest records, in order.
	got := f.stored()
	for i := 1; i < len(got); i++ {
		if got[i] <= got[i-1] {
			t.Fatalf("stored out of order: %s after %s", got[i], got[i-1])
		}
	}
	if last := got[len(got)-1]; last != rec(n-1).ID {
		t.Fatalf("last stored = %s, want the newest, %s", last, rec(n-1).ID)
	}
}

func TestBackpressure(t *testing.T) {
	f := newFake()
	f.down.Store(true)
	r := newRunner(t, f, RunnerOptions{BatchSize: 100, FlushInterval: 10 * time.Millisecond, QueueSize: 10,
		RetryInitial: time.Millisecond, RetryMax: 5 * time.Millisecond, SpoolAfter: time.Hour})
	// Without a spool the writer holds one batch and the queue ten more.
	accept(t, r, 0, 10)
	eventually(t, "a batch in flight", func() bool { return r.Stats().Queued == 10 && r.memLen() == 0 })
	accept(t, r, 10, 10)
	if !r.Pressure() {
		t.Fatalf("no pressure with a full queue: %+v", r.Stats())
	}
	if r.TryAccept(rec(20)) {
		t.Fatalf("TryAccept took a record beyond the queue")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	err := r.Accept(ctx, rec(20))
	cancel()
	if !errors.Is(err, ErrFull) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Accept on a full queue = %v, want ErrFull and the deadline", err)
	}
	if s := r.Stats(); s.Refused != 2 || s.Dropped != 0 {
		t.Fatalf("stats = %+v, want 2 refused", s)
	}
	// A waiting Accept and Wait both go through once the sink drains.
	var wg sync.WaitGroup
	var acceptErr, waitErr error
	wg.Go(func() { acceptErr = r.Accept(context.Background(), rec(20)) })
	wg.Go(func() { waitErr = r.Wait(context.Background()) })
	f.down.Store(false)
	wg.Wait()
	if acceptErr != nil || waitErr != nil {
		t.Fatalf("Accept = %v, Wait = %v after the sink drained", acceptErr, waitErr)
	}
	eventually(t, "everything", func() bool { return len(f.stored()) == 21 })
	sameIDs(t, "stored", f.stored(), ids(0, 21))
	if r.Pressure() {
		t.Fatalf("pressure after draining")
	}
}

func TestBackpressureSpoolFull(t *testing.T) {
	f := newFake()
	f.down.Store(true)
	r := newRunner(t, f, RunnerOptions{BatchSize: 10, FlushInterval: time.Millisecond, QueueSize: 10,
		RetryInitial: time.Millisecond, RetryMax: 5 * time.Millisecond, SpoolDir: t.TempDir(), SpoolMax: 16 << 10, SpoolAfter: time.Millisecond})
	n := 0
	for ; r.TryAccept(rec(n)); n++ {
		if n > 10000 {
			t.Fatalf("a 16 KiB spool took %d records", n)
		}
	}
	if !r.Pressure() || r.Stats().Dropped != 0 {
		t.Fatalf("pressure %v, stats %+v: want pressure and nothing dropped", r.Pressure(), r.Stats())
	}
	f.down.Store(false)
	eventually(t, "replay", func() bool { return len(f.stored()) == n })
	sameIDs(t, "stored", f.stored(), ids(0, n))
	eventually(t, "pressure relieved", func() bool { return !r.Pressure() })
}

// TestFlappingSinkLosesNothing drives concurrent producers while the sink
// goes up and down, and checks that every record is stored, each producer's
// in order.
func TestFlappingSinkLosesNothing(t *testing.T) {
	f := newFake()
	r := newRunner(t, f, RunnerOptions{BatchSize: 50, FlushInterval: 2 * time.Millisecond, QueueSize: 200,
		RetryInitial: time.Millisecond, RetryMax: 10 * time.Millisecond, SpoolDir: t.TempDir(), SpoolAfter: 20 * time.Millisecond})
	stop := make(chan struct{})
	var flap sync.WaitGroup
	flap.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				f.down.Store(false)
				return
			case <-time.After(15 * time.Millisecond):
				f.down.Store(i%2 == 0)
			}
		}
	})
	const producers, per = 4, 1500
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			for i := range per {
				if err := r.Accept(context.Background(), rec(p*per+i)); err != nil {
					t.Errorf("accept: %v", err)
					return
				}
				if i%100 == 0 {
					time.Sleep(time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	flap.Wait()
	eventually(t, "every record", func() bool { return len(f.stored()) == producers*per })
	got := f.stored()
	last := map[int]string{}
	for _, id := range got {
		p := 0
		for q := range producers {
			if id >= rec(q*per).ID {
				p = q
			}
		}
		if id <= last[p] {
			t.Fatalf("producer %d: %s stored after %s", p, id, last[p])
		}
		last[p] = id
	}
	s := r.Stats()
	if s.Dropped != 0 || s.Refused != 0 {
		t.Fatalf("stats = %+v, want nothing lost", s)
	}
	t.Logf("flapping: %d written (dups included), %d spooled, %d replayed, %d retried, %d batches", s.Written, s.Spooled, s.Replayed, s.Retried, s.Batches)
}

func TestNewRunnerErrors(t *testing.T) {
	if _, err := NewRunner(newFake(), RunnerOptions{Name: "x", FullPolicy: "drop_newest"}); err == nil {
		t.Fatalf("unknown policy accepted")
	}
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o644)
	if _, err := NewRunner(newFake(), RunnerOptions{Name: "x", SpoolDir: filepath.Join(file, "spool")}); err == nil {
		t.Fatalf("spool under a regular file accepted")
	}
	bad := &initFails{}
	if _, err := NewRunner(bad, RunnerOptions{Name: "x"}); err == nil || !errors.Is(err, errBadOption) {
		t.Fatalf("Init error = %v, want it passed on", err)
	}
}

var errBadOption = errors.New("bad option")

type initFails struct{ fakeSink }

func (*initFails) Init() error { return errBadOption }
