package datastore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidemq/tide/conf"
	"github.com/tidemq/tide/core/ratelog"
	"github.com/tidemq/tide/datastore/spool"
)

// FullPolicy says what a Runner does with a new record when its memory
// queue and its spool are both full.
type FullPolicy string

// The policies.
const (
	// Backpressure refuses the record: Accept waits for room (up to its
	// context), TryAccept returns false, and Pressure reports true so that
	// the broker can slow publishers down.
	Backpressure FullPolicy = "backpressure"
	// DropOldest gives up the oldest records (counted in Dropped, logged)
	// to take the new one.
	DropOldest FullPolicy = "drop_oldest"
)

// Errors returned by Accept.
var (
	// ErrClosed: the Runner is closed.
	ErrClosed = errors.New("datastore: sink runner closed")
	// ErrFull: memory and spool are full under the backpressure policy.
	ErrFull = errors.New("datastore: sink saturated")
)

// RunnerOptions configure a Runner. Zero values take the defaults of
// tide.toml's [[sink]] keys.
type RunnerOptions struct {
	// Name and Type identify the sink in logs and figures.
	Name, Type string
	// BatchSize is the most records written at once (default 500).
	BatchSize int
	// FlushInterval is the longest a record waits for its batch to fill
	// (default 200ms); each wait is jittered by ±10% so that sinks do not
	// write in lockstep.
	FlushInterval time.Duration
	// QueueSize is the records held in memory (default 10000).
	QueueSize int
	// RetryInitial and RetryMax bound the back-off between attempts to
	// connect or write: it doubles from the first to the second (defaults
	// 100ms and 30s), each wait drawn between half and all of it.
	RetryInitial, RetryMax time.Duration
	// SpoolDir is the spool's directory; empty disables the spool, so that
	// records wait only in memory.
	SpoolDir string
	// SpoolMax bounds the spool (default 1 GiB).
	SpoolMax int64
	// FullPolicy applies when memory and spool are full (default Backpressure).
	FullPolicy FullPolicy
	// DeadLetter is the NDJSON file of records the sink rejected for good;
	// empty: they are logged and counted as dropped.
	DeadLetter string
	// SpoolAfter is how long writes may fail before the records in memory
	// move to the spool (default 2s); a full memory queue moves them at once.
	SpoolAfter time.Duration
	// WriteTimeout bounds one Connect or Write call (default 30s).
	WriteTimeout time.Duration
	Log          *slog.Logger
}

// RunnerOptionsFromConf converts a [[sink]] table's common keys.
func RunnerOptionsFromConf(s conf.Sink) RunnerOptions {
	return RunnerOptions{
		Name: s.Name, Type: s.Type,
		BatchSize: s.BatchSize, FlushInterval: s.FlushInterval.Duration, QueueSize: s.QueueSize,
		RetryInitial: s.RetryInitial.Duration, RetryMax: s.RetryMax.Duration,
		SpoolDir: s.SpoolDir, SpoolMax: int64(s.SpoolMax),
		FullPolicy: FullPolicy(s.FullPolicy), DeadLetter: s.DeadLetter,
	}
}

func (o RunnerOptions) withDefaults() RunnerOptions {
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 500
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 10000
	}
	def(&o.FlushInterval, 200*time.Millisecond)
	def(&o.RetryInitial, 100*time.Millisecond)
	def(&o.RetryMax, 30*time.Second)
	def(&o.SpoolAfter, 2*time.Second)
	def(&o.WriteTimeout, 30*time.Second)
	o.RetryMax = max(o.RetryMax, o.RetryInitial)
	if o.SpoolMax <= 0 {
		o.SpoolMax = 1 << 30
	}
	if o.FullPolicy == "" {
		o.FullPolicy = Backpressure
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return o
}

// Runner feeds one sink. Records wait in a bounded memory queue and are
// written in batches; while the sink fails they wait in a disk spool, which
// is replayed in order before newer records once the sink is back. The
// broker-facing side (Accept, TryAccept, Pressure) never waits for the sink.
//
// Records are delivered at least once: after a crash, or when a write's
// outcome is unknown, some are written again, and sinks make that harmless
// with Record.ID. Records in memory (at most QueueSize plus a batch) are
// lost if the process dies; a graceful Close spools them.
type Runner struct {
	opts  RunnerOptions
	sink  Sink
	log   *slog.Logger
	stats Stats
	spool *spool.Spool // nil without SpoolDir
	dl    *deadLetter
	limit ratelog.Limiter

	connected atomic.Bool
	pressure  atomic.Bool

	mu       sync.Mutex
	mem      deque
	memDue   time.Time // when the oldest record in mem must be written
	inflight []Record  // records the writer took from mem and has not stored yet
	gen      uint64    // bumped when the spool takes inflight: the writer's attempt is void
	spooling bool      // records go to the spool, and come out of it, until it is empty
	full     bool      // saturated, with hysteresis
	spoolErr time.Time // after a spool write error, no spill before this time
	closing  bool
	space    chan struct{} // closed (and cleared) when room may have appeared

	wake    chan struct{} // a batch may be ready
	spilled chan struct{} // the writer's batch moved to the spool
	closeCh chan struct{}
	ctx     context.Context // cancelled when Close's deadline passes
	cancel  context.CancelFunc
	done    chan struct{}

	closeOnce sync.Once
	closeErr  error
}

// NewRunner validates the sink (Init), opens the spool and starts writing
// in the background: records left in the spool by the last run come first.
func NewRunner(sink Sink, opts RunnerOptions) (*Runner, error) {
	opts = opts.withDefaults()
	if opts.FullPolicy != Backpressure && opts.FullPolicy != DropOldest {
		return nil, fmt.Errorf("sink %q: unknown full policy %q (want %q or %q)", opts.Name, opts.FullPolicy, Backpressure, DropOldest)
	}
	if err := sink.Init(); err != nil {
		return nil, fmt.Errorf("sink %q: %w", opts.Name, err)
	}
	r := &Runner{
		opts: opts, sink: sink,
		log:     opts.Log.With("sink", opts.Name),
		wake:    make(chan struct{}, 1),
		spilled: make(chan struct{}, 1),
		closeCh: make(chan struct{}),
		done:    make(chan struct{}),
	}
	if opts.DeadLetter != "" {
		if err := os.MkdirAll(filepath.Dir(opts.DeadLetter), 0o755); err != nil {
			return nil, fmt.Errorf("sink %q: dead-letter file: %w", opts.Name, err)
		}
		r.dl = &deadLetter{path: opts.DeadLetter, sink: opts.Name}
	}
	if opts.SpoolDir != "" {
		sp, err := spool.Open(spool.Options{Dir: opts.SpoolDir, MaxBytes: opts.SpoolMax, Log: r.log})
		if err != nil {
			return nil, fmt.Errorf("sink %q: %w", opts.Name, err)
		}
		r.spool = sp
		if sp.Unread() {
			r.spooling = true
			r.log.Info("replaying the spool left by the last run", "spool", opts.SpoolDir, "bytes", sp.Size())
		}
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.mu.Lock()
	r.updateLocked()
	r.mu.Unlock()
	go r.run()
	return r, nil
}

// Name returns the sink's name.
func (r *Runner) Name() string { return r.opts.Name }

// Sink returns the sink, for its optional interfaces (Querier, Searcher).
func (r *Runner) Sink() Sink { return r.sink }

// Stats returns the figures.
func (r *Runner) Stats() Snapshot {
	s := r.stats.Snapshot()
	s.Sink, s.Type = r.opts.Name, r.opts.Type
	s.Connected = r.connected.Load()
	r.mu.Lock()
	s.Spooling, s.Saturated = r.spooling, r.full
	r.mu.Unlock()
	return s
}

// Pressure reports that the sink is saturated under the backpressure
// policy: the spool (or, without one, the memory queue) is at least 90%
// full, until it falls below 75%. It is one atomic load, for the broker's
// publish path: the broker may delay the acknowledgement of QoS 1 and 2
// publishes routed to this sink (see Wait). Under drop_oldest it is always
// false: waiting would protect nothing.
func (r *Runner) Pressure() bool { return r.pressure.Load() }

// Wait returns nil as soon as Pressure is false, or ctx's error.
func (r *Runner) Wait(ctx context.Context) error {
	for {
		if !r.pressure.Load() {
			return nil
		}
		r.mu.Lock()
		if !r.pressure.Load() || r.closing {
			r.mu.Unlock()
			return nil
		}
		ch := r.spaceLocked()
		r.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Accept queues rec. When memory and spool are full under the backpressure
// policy it waits for room until ctx is done, then returns an error wrapping
// ErrFull (the record is counted as refused). It returns ErrClosed after
// Close. It does not wait for the sink: room is made by the spool.
func (r *Runner) Accept(ctx context.Context, rec Record) error {
	for {
		ok, wait, err := r.offer(rec)
		if err != nil {
			r.stats.Refused.Add(1)
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-wait:
		case <-ctx.Done():
			r.stats.Refused.Add(1)
			return fmt.Errorf("%w: %w", ErrFull, ctx.Err())
		}
	}
}

// TryAccept queues rec if that needs no waiting, and reports whether it did.
// A false return is counted as refused.
func (r *Runner) TryAccept(rec Record) bool {
	ok, _, _ := r.offer(rec)
	if !ok {
		r.stats.Refused.Add(1)
	}
	return ok
}

// offer takes rec, or returns a channel to wait on for room.
func (r *Runner) offer(rec Record) (bool, <-chan struct{}, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closing {
		return false, nil, ErrClosed
	}
	if r.spooling {
		err := r.appendSpoolLocked([]Record{rec})
		if err == nil {
			r.updateLocked()
			return true, nil, nil
		}
		// The spool is full or failing; the queue in memory must not take
		// the record either, as it would overtake the spooled ones.
		if r.opts.FullPolicy == DropOldest {
			r.drop(1, "spool unusable: record dropped", err)
			return true, nil, nil
		}
		return false, r.spaceLocked(), nil
	}
	if r.mem.len() < r.opts.QueueSize {
		r.pushLocked(rec)
		return true, nil, nil
	}
	// The sink does not keep up: move the queue to disk.
	if r.spool != nil && !time.Now().Before(r.spoolErr) {
		if err := r.spillLocked(&rec); err == nil {
			return true, nil, nil
		}
	}
	if r.opts.FullPolicy == DropOldest {
		r.mem.dropFront()
		r.drop(1, "queue full: oldest record dropped", nil)
		r.pushLocked(rec)
		return true, nil, nil
	}
	r.updateLocked()
	return false, r.spaceLocked(), nil
}

func (r *Runner) pushLocked(rec Record) {
	r.mem.push(rec)
	switch n := r.mem.len(); {
	case n == 1:
		r.memDue = time.Now().Add(jitter(r.opts.FlushInterval))
		notify(r.wake)
	case n == r.opts.BatchSize:
		notify(r.wake)
	}
	r.stats.Queued.Store(int64(r.mem.len() + len(r.inflight)))
	if r.full || r.mem.len()*10 >= r.opts.QueueSize*9 {
		r.updateLocked()
	}
}

// drop counts and logs lost records (rate-limited).
func (r *Runner) drop(n int, msg string, err error) {
	r.stats.Dropped.Add(uint64(n))
	if ok, suppressed := r.limit.Allow(msg); ok {
		args := []any{"records", n, "dropped_total", r.stats.Dropped.Load(), "similar_suppressed", suppressed}
		if err != nil {
			args = append(args, "err", err)
		}
		r.log.Warn(msg, args...)
	}
}

// appendSpoolLocked writes recs to the spool, making room under drop_oldest.
func (r *Runner) appendSpoolLocked(recs []Record) error {
	if r.spool == nil {
		return errors.New("no spool configured")
	}
	enc := make([][]byte, 0, len(recs))
	for i := range recs {
		b, err := json.Marshal(&recs[i])
		if err != nil {
			// Only Extra can fail to encode; the sink would reject it too.
			r.deadLetter([]deadItem{{recs[i], "cannot be encoded: " + err.Error()}})
			continue
		}
		enc = append(enc, b)
	}
	for {
		err := r.spool.Append(enc...)
		switch {
		case err == nil:
			r.stats.Spooled.Add(uint64(len(enc)))
			return nil
		case errors.Is(err, spool.ErrFull) && r.opts.FullPolicy == DropOldest:
			n, freed, derr := r.spool.DropOldest()
			if derr != nil {
				return derr
			}
			if freed == 0 {
				return err // larger than the whole spool
			}
			r.drop(n, "spool full: oldest records dropped", nil)
		case errors.Is(err, spool.ErrFull):
			return err
		default:
			// A disk error: do not try again for a while, it is slow.
			r.spoolErr = time.Now().Add(5 * time.Second)
			r.stats.setError(err)
			if ok, _ := r.limit.Allow("spool write"); ok {
				r.log.Error("spool write failed", "err", err)
			}
			return err
		}
	}
}

// spillLocked moves the records in memory (the writer's batch first) and
// extra to the spool, in order, and switches to spooling.
func (r *Runner) spillLocked(extra *Record) error {
	recs := make([]Record, 0, len(r.inflight)+r.mem.len()+1)
	recs = append(recs, r.inflight...)
	recs = append(recs, r.mem.view()...)
	if extra != nil {
		recs = append(recs, *extra)
	}
	if err := r.appendSpoolLocked(recs); err != nil {
		return err
	}
	r.inflight = nil
	r.mem.reset()
	r.gen++
	r.spooling = true
	r.updateLocked()
	notify(r.wake)
	notify(r.spilled)
	if ok, _ := r.limit.Allow("spill"); ok {
		r.log.Warn("sink not keeping up: records go to the disk spool until it catches up", "records", len(recs), "spool", r.opts.SpoolDir)
	}
	return nil
}

// updateLocked refreshes the gauges and the saturation, and wakes waiters.
func (r *Runner) updateLocked() {
	r.stats.Queued.Store(int64(r.mem.len() + len(r.inflight)))
	frac := 0.0
	if r.spool != nil {
		size := r.spool.Size()
		r.stats.SpoolBytes.Store(size)
		if r.spooling {
			frac = float64(size) / float64(r.opts.SpoolMax)
		}
	}
	switch failing := time.Now().Before(r.spoolErr); {
	case r.spooling && failing:
		frac = 1 // the spool refuses records: as good as full
	case !r.spooling && (r.spool == nil || failing):
		frac = float64(r.mem.len()) / float64(r.opts.QueueSize)
	}
	switch {
	case frac >= 0.9:
		r.full = true
	case frac < 0.75:
		r.full = false
	}
	r.pressure.Store(r.full && r.opts.FullPolicy == Backpressure)
	if r.space != nil {
		close(r.space)
		r.space = nil
	}
}

func (r *Runner) spaceLocked() chan struct{} {
	if r.space == nil {
		r.space = make(chan struct{})
	}
	return r.space
}

func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// jitter returns d ±10%.
func jitter(d time.Duration) time.Duration {
	return d - d/10 + rand.N(d/5+1)
}

// backoffWait returns a wait drawn between half and all of d.
func backoffWait(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2+1)
}

// run is the writer: it takes batches from memory or from the spool.
func (r *Runner) run() {
	defer close(r.done)
	if err := r.connect(); err != nil {
		r.writeFailed(err, 0)
	}
	for {
		r.mu.Lock()
		spooling := r.spooling
		r.mu.Unlock()
		if spooling {
			if !r.replay() {
				return
			}
			continue
		}
		batch, gen, ok := r.nextBatch()
		if !ok {
			return
		}
		if batch != nil && !r.deliver(batch, gen, false) && r.ctx.Err() != nil {
			return // Close counts or spools the batch
		}
	}
}

// nextBatch waits for a full batch or the flush interval. It returns a nil
// batch when the runner switched to spooling, and false when it must stop.
func (r *Runner) nextBatch() ([]Record, uint64, bool) {
	for {
		r.mu.Lock()
		if r.spooling {
			r.mu.Unlock()
			return nil, 0, true
		}
		n, now := r.mem.len(), time.Now()
		if n >= r.opts.BatchSize || n > 0 && (r.closing || !now.Before(r.memDue)) {
			batch := r.mem.pop(min(n, r.opts.BatchSize))
			r.inflight = batch
			if r.mem.len() > 0 {
				r.memDue = now.Add(jitter(r.opts.FlushInterval))
			}
			r.updateLocked()
			gen := r.gen
			r.mu.Unlock()
			return batch, gen, true
		}
		if n == 0 && r.closing {
			r.mu.Unlock()
			return nil, 0, false
		}
		var timer *time.Timer
		var due <-chan time.Time
		if n > 0 {
			timer = time.NewTimer(r.memDue.Sub(now))
			due = timer.C
		}
		closing := r.closeCh
		r.mu.Unlock()
		select {
		case <-r.wake:
		case <-due:
		case <-closing:
		case <-r.ctx.Done():
			return nil, 0, false
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

// replay writes one batch from the spool. It returns false when the writer
// must stop; the batch stays in the spool.
func (r *Runner) replay() bool {
	if r.isClosing() {
		return false // the spool keeps everything for the next run
	}
	raw, pos, err := r.spool.Read(r.opts.BatchSize)
	if err != nil {
		var ce *spool.CorruptError
		if !errors.As(err, &ce) {
			r.stats.setError(err)
			if ok, _ := r.limit.Allow("spool read"); ok {
				r.log.Error("spool read failed", "err", err)
			}
			return r.sleep(r.opts.RetryMax, true)
		}
		// The number of records lost with the segment's tail is unknown:
		// count one, and the log line says how many bytes.
		r.drop(1, "spool damaged: rest of a segment skipped", err)
		r.stats.setError(err)
	}
	recs := make([]Record, 0, len(raw))
	for _, b := range raw {
		var rec Record
		d := json.NewDecoder(bytes.NewReader(b))
		d.UseNumber() // keeps Extra's integers exact
		if err := d.Decode(&rec); err != nil {
			r.drop(1, "spool record undecodable: dropped", err)
			continue
		}
		recs = append(recs, rec)
	}
	if len(recs) > 0 && !r.deliver(recs, 0, true) {
		return false
	}
	if len(raw) > 0 || err != nil {
		if cerr := r.spool.Commit(pos); cerr != nil && !errors.Is(cerr, spool.ErrClosed) {
			// The records will be written again after a restart.
			r.stats.setError(cerr)
			r.log.Error("spool commit failed", "err", cerr)
		}
	}
	r.mu.Lock()
	if len(raw) == 0 && err == nil && !r.spool.Unread() {
		r.spooling = false
		r.log.Info("spool replayed, back to the memory queue")
	}
	r.updateLocked()
	r.mu.Unlock()
	return true
}

// deliver writes items until they are all stored or dead-lettered. For a
// batch from memory (fromSpool false) it gives up, returning false, when the
// batch moved to the spool (gen changed) or the failure lasted SpoolAfter;
// for a batch from the spool, when the runner is closing.
func (r *Runner) deliver(items []Record, gen uint64, fromSpool bool) bool {
	backoff := r.opts.RetryInitial
	var failingSince time.Time
	for {
		if !fromSpool && !r.current(gen) {
			return false
		}
		err := r.connect()
		if err == nil {
			start := time.Now()
			ctx, cancel := context.WithTimeout(r.ctx, r.opts.WriteTimeout)
			werr := r.sink.Write(ctx, items)
			cancel()
			r.stats.Batches.Add(1)
			ok, perm, temp, cerr := classify(items, werr)
			if !fromSpool {
				r.mu.Lock()
				if r.gen != gen {
					r.mu.Unlock()
					return false // the spool has these records; replay writes them
				}
				r.inflight = temp
				r.updateLocked()
				r.mu.Unlock()
			}
			if ok > 0 {
				r.stats.Written.Add(uint64(ok))
				if fromSpool {
					r.stats.Replayed.Add(uint64(ok))
				}
				r.stats.addLatency(time.Since(start))
			}
			if len(perm) > 0 {
				r.deadLetter(perm)
			}
			if len(temp) == 0 {
				if !failingSince.IsZero() {
					r.log.Info("sink writes again", "after", time.Since(failingSince).Round(time.Millisecond))
				}
				return true
			}
			items, err = temp, cerr
		}
		r.writeFailed(err, len(items))
		now := time.Now()
		if failingSince.IsZero() {
			failingSince = now
		}
		if !fromSpool && r.spool != nil && (r.isClosing() || now.Sub(failingSince) >= r.opts.SpoolAfter) {
			r.mu.Lock()
			if r.gen != gen {
				r.mu.Unlock()
				return false
			}
			serr := r.spillLocked(nil)
			r.mu.Unlock()
			if serr == nil {
				return false
			}
		}
		if !r.sleep(backoff, fromSpool) {
			return false
		}
		backoff = min(backoff*2, r.opts.RetryMax)
	}
}

func (r *Runner) current(gen uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.gen == gen
}

func (r *Runner) isClosing() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closing
}

// sleep waits out a back-off. It returns false when the writer must give up
// its batch: hard stop, or (for a spool batch) Close. A batch from memory is
// retried at once on Close, to be spooled if it fails again, and after a
// spill, which the caller sees by its generation.
func (r *Runner) sleep(d time.Duration, fromSpool bool) bool {
	t := time.NewTimer(backoffWait(d))
	defer t.Stop()
	var closing, spilled <-chan struct{}
	switch {
	case fromSpool:
		closing = r.closeCh
	case r.spool != nil:
		closing, spilled = r.closeCh, r.spilled
	}
	select {
	case <-t.C:
		return true
	case <-r.ctx.Done():
		return false
	case <-closing:
		return !fromSpool
	case <-spilled:
		return true
	}
}

// connect connects the sink if it is not connected.
func (r *Runner) connect() error {
	if r.connected.Load() {
		return nil
	}
	ctx, cancel := context.WithTimeout(r.ctx, r.opts.WriteTimeout)
	defer cancel()
	if err := r.sink.Connect(ctx); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	r.connected.Store(true)
	r.log.Info("sink connected")
	return nil
}

func (r *Runner) writeFailed(err error, n int) {
	r.stats.Retried.Add(uint64(n))
	if r.ctx.Err() != nil {
		return // Close gave up on the write: not the sink's failure
	}
	r.stats.setError(err)
	level := slog.LevelWarn
	if IsPermanent(err) {
		level = slog.LevelError // e.g. a file that is not a database: a human must act
	}
	if ok, suppressed := r.limit.Allow("write failed"); ok {
		r.log.Log(context.Background(), level, "sink unavailable, retrying", "err", err, "records", n, "similar_suppressed", suppressed)
	}
}

// classify splits a batch by the outcome of its Write.
func classify(items []Record, err error) (ok int, perm []deadItem, temp []Record, summary error) {
	if err == nil {
		return len(items), nil, nil, nil
	}
	var pe *PartialError
	if errors.As(err, &pe) {
		state := make([]*ItemError, len(items))
		for i := range pe.Items {
			if it := &pe.Items[i]; it.Index >= 0 && it.Index < len(items) {
				state[it.Index] = it
			}
		}
		for i, st := range state {
			switch {
			case st == nil:
				ok++
			case st.Permanent:
				perm = append(perm, deadItem{items[i], st.Reason})
			default:
				temp = append(temp, items[i])
			}
		}
		return ok, perm, temp, err
	}
	if IsPermanent(err) {
		perm = make([]deadItem, len(items))
		for i := range items {
			perm[i] = deadItem{items[i], err.Error()}
		}
		return 0, perm, nil, err
	}
	return 0, nil, items, err
}

func (r *Runner) deadLetter(items []deadItem) {
	if r.dl == nil {
		r.drop(len(items), "sink rejected records and no dead-letter file is configured: dropped", errors.New(items[0].reason))
		return
	}
	if err := r.dl.write(items); err != nil {
		r.stats.setError(err)
		r.drop(len(items), "dead-letter file unwritable: rejected records dropped", err)
		return
	}
	r.stats.DeadLettered.Add(uint64(len(items)))
	if ok, suppressed := r.limit.Allow("dead letter"); ok {
		r.log.Warn("sink rejected records: written to the dead-letter file", "records", len(items), "reason", items[0].reason,
			"file", r.opts.DeadLetter, "similar_suppressed", suppressed)
	}
}

// Close stops the Runner: new records are refused, the memory queue is
// written until ctx is done, then whatever is left goes to the spool (or,
// without one, is counted as dropped), and the sink is closed. Records in
// the spool stay there for the next run.
func (r *Runner) Close(ctx context.Context) error {
	r.closeOnce.Do(func() { r.closeErr = r.close(ctx) })
	return r.closeErr
}

// closeGrace is how long Close waits for a Write that ignores its
// cancelled context.
const closeGrace = 2 * time.Second

func (r *Runner) close(ctx context.Context) error {
	r.mu.Lock()
	r.closing = true
	r.updateLocked()
	r.mu.Unlock()
	close(r.closeCh)
	select {
	case <-r.done:
	case <-ctx.Done():
		r.cancel()
		select {
		case <-r.done:
		case <-time.After(closeGrace):
			r.log.Error("sink did not return from Write after its context was cancelled")
		}
	}
	r.cancel()

	r.mu.Lock()
	if left := len(r.inflight) + r.mem.len(); left > 0 {
		err := errors.New("no spool configured")
		if r.spool != nil {
			err = r.spillLocked(nil)
		}
		if err != nil {
			r.stats.Dropped.Add(uint64(left))
			r.log.Error("records lost at shutdown: the sink did not take them in time", "records", left, "err", err)
			r.inflight = nil
			r.mem.reset()
		}
	}
	r.gen++ // a Write still running is void
	r.updateLocked()
	r.mu.Unlock()

	var errs []error
	if r.spool != nil {
		if err := r.spool.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if r.dl != nil {
		if err := r.dl.close(); err != nil {
			errs = append(errs, err)
		}
	}
	sctx := ctx
	if ctx.Err() != nil {
		var cancel context.CancelFunc
		sctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
	}
	if err := r.sink.Close(sctx); err != nil {
		errs = append(errs, fmt.Errorf("closing: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sink %q: %w", r.opts.Name, err)
	}
	return nil
}

// deque is a FIFO of records that can also give up its oldest.
type deque struct {
	buf  []Record
	head int
}

func (d *deque) len() int      { return len(d.buf) - d.head }
func (d *deque) push(r Record) { d.buf = append(d.buf, r) }

// view returns the records without removing them; valid until the next change.
func (d *deque) view() []Record { return d.buf[d.head:] }

// pop removes and returns the n oldest records (a copy).
func (d *deque) pop(n int) []Record {
	out := append([]Record(nil), d.buf[d.head:d.head+n]...)
	clear(d.buf[d.head : d.head+n])
	d.head += n
	d.compact()
	return out
}

func (d *deque) dropFront() {
	d.buf[d.head] = Record{}
	d.head++
	d.compact()
}

func (d *deque) compact() {
	switch {
	case d.head == len(d.buf):
		d.buf, d.head = d.buf[:0], 0
	case d.head >= 1024 && d.head >= len(d.buf)/2:
		n := copy(d.buf, d.buf[d.head:])
		clear(d.buf[n:])
		d.buf, d.head = d.buf[:n], 0
	}
}

func (d *deque) reset() {
	clear(d.buf)
	d.buf, d.head = d.buf[:0], 0
}
