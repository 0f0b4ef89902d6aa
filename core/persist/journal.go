package persist

import (
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// SyncMode says when writes reach the disk.
type SyncMode string

// The sync modes of [persistence] sync.
const (
	// SyncAlways: every commit is fsynced before the writes it holds are
	// reported durable (QoS 1/2 acknowledgements wait for it).
	SyncAlways SyncMode = "always"
	// SyncPeriodic: commits are written at once (they survive a crash of the
	// broker) and fsynced every interval (a power failure loses at most that).
	SyncPeriodic SyncMode = "periodic"
	// SyncNever leaves fsync to the operating system.
	SyncNever SyncMode = "never"
)

// maxPending bounds the operations waiting for the writer; beyond it
// Submit waits, which slows publishers down to what the disk can take.
const maxPending = 200000

type entryKey struct {
	session string
	seq     uint64
}

// Journal serialises the broker's writes into a Backend with group commit:
// the operations submitted by every connection while a transaction is being
// written go together into the next one, so many publishers share each
// fsync. Groups of operations submitted together are never split between
// transactions.
type Journal struct {
	be       Backend
	mode     SyncMode
	interval time.Duration
	log      *slog.Logger

	mu      sync.Mutex
	pending []Op
	// index finds a pending PutEntry so that its DelEntry (a message
	// acknowledged before it was written) replaces it.
	index     map[entryKey]int
	callbacks []func()
	room      *sync.Cond
	written   *sync.Cond
	// sequence numbers of submitted and written groups, for Flush.
	submitted, done uint64
	closed          bool
	wake            chan struct{}
	stopped         chan struct{}

	commits   atomic.Uint64
	ops       atomic.Uint64
	coalesced atomic.Uint64
	errors    atomic.Uint64
	lastErr   atomic.Pointer[string]
}

// NewJournal starts the writer for be.
func NewJournal(be Backend, mode SyncMode, interval time.Duration, log *slog.Logger) *Journal {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if interval <= 0 {
		interval = time.Second
	}
	j := &Journal{be: be, mode: mode, interval: interval, log: log, index: map[entryKey]int{},
		wake: make(chan struct{}, 1), stopped: make(chan struct{})}
	j.room = sync.NewCond(&j.mu)
	j.written = sync.NewCond(&j.mu)
	go j.loop()
	return j
}

// Mode returns the sync mode.
func (j *Journal) Mode() SyncMode { return j.mode }

// Backend returns the store behind the journal.
func (j *Journal) Backend() Backend { return j.be }

// Submit queues ops as one group, to be written in one transaction.
func (j *Journal) Submit(ops ...Op) {
	if len(ops) == 0 {
		return
	}
	j.mu.Lock()
	for len(j.pending) >= maxPending && !j.closed {
		j.room.Wait()
	}
	if j.closed {
		j.mu.Unlock()
		j.log.Error("persistence: write after close dropped", "ops", len(ops))
		return
	}
	for _, op := range ops {
		switch op.Kind {
		case Notify:
			j.callbacks = append(j.callbacks, op.Then)
			continue
		case DelEntry:
			k := entryKey{op.Session, op.Seq}
			if i, ok := j.index[k]; ok {
				// The pending put becomes the delete: the entry's data is
				// never written, and an older state already on disk (an
				// earlier commit) is still removed.
				j.pending[i] = op
				delete(j.index, k)
				j.coalesced.Add(1)
				continue
			}
		case PutEntry:
			k := entryKey{op.Session, op.Entry.Seq}
			if i, ok := j.index[k]; ok {
				j.pending[i] = op // a newer state of the same entry
				continue
			}
			j.index[k] = len(j.pending)
		case DelSession:
			for k := range j.index {
				if k.session == op.Session {
					j.pending[j.index[k]].Kind = 0
					delete(j.index, k)
				}
			}
		}
		j.pending = append(j.pending, op)
	}
	j.submitted++
	j.mu.Unlock()
	select {
	case j.wake <- struct{}{}:
	default:
	}
}

// AfterCommit runs fn once everything submitted before the call is durable
// in the journal's mode. fn runs on the writer goroutine: it must not block.
func (j *Journal) AfterCommit(fn func()) {
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		fn()
		return
	}
	j.callbacks = append(j.callbacks, fn)
	j.mu.Unlock()
	select {
	case j.wake <- struct{}{}:
	default:
	}
}

// Flush waits until everything submitted before the call is written to the
// store (so that a read sees it).
func (j *Journal) Flush() {
	j.mu.Lock()
	target := j.submitted
	select {
	case j.wake <- struct{}{}:
	default:
	}
	for j.done < target && !j.closed {
		j.written.Wait()
	}
	j.mu.Unlock()
}

func (j *Journal) loop() {
	defer close(j.stopped)
	tick := time.NewTicker(j.interval)
	defer tick.Stop()
	var spare []Op
	dirty := false
	for {
		select {
		case <-j.wake:
		case <-tick.C:
			if j.mode == SyncPeriodic && dirty {
				if err := j.be.Sync(); err != nil {
					j.fail(err)
				}
				dirty = false
			}
			continue
		}
		for {
			j.mu.Lock()
			if len(j.pending) == 0 && len(j.callbacks) == 0 {
				closed := j.closed
				j.done = j.submitted
				j.written.Broadcast()
				j.mu.Unlock()
				if closed {
					return
				}
				break
			}
			batch := j.pending
			j.pending = spare[:0] // spare is never the array being filled
			clear(j.index)
			cbs := j.callbacks
			j.callbacks = nil
			target := j.submitted
			j.room.Broadcast()
			j.mu.Unlock()
			ops := compact(batch)
			if len(ops) > 0 {
				if err := j.be.Apply(ops, j.mode == SyncAlways); err != nil {
					j.fail(err)
				} else {
					j.commits.Add(1)
					j.ops.Add(uint64(len(ops)))
					dirty = true
				}
			}
			clear(batch)
			spare = batch
			j.mu.Lock()
			j.done = target
			j.written.Broadcast()
			j.mu.Unlock()
			for _, fn := range cbs {
				fn()
			}
		}
	}
}

// compact removes cancelled operations in place.
func compact(batch []Op) []Op {
	out := batch[:0]
	for _, op := range batch {
		if op.Kind != 0 {
			out = append(out, op)
		}
	}
	return out
}

func (j *Journal) fail(err error) {
	j.errors.Add(1)
	s := err.Error()
	j.lastErr.Store(&s)
	j.log.Error("persistence: write failed; state written since may be lost on restart", "err", err)
}

// Close writes what is pending, syncs and closes the store.
func (j *Journal) Close() error {
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return nil
	}
	j.closed = true
	j.room.Broadcast()
	j.written.Broadcast()
	j.mu.Unlock()
	select {
	case j.wake <- struct{}{}:
	default:
	}
	<-j.stopped
	var err error
	if e := j.be.Sync(); e != nil {
		err = fmt.Errorf("persistence: sync %s: %w", j.be.Path(), e)
	}
	if e := j.be.Close(); e != nil && err == nil {
		err = fmt.Errorf("persistence: close %s: %w", j.be.Path(), e)
	}
	return err
}

// Stats are the journal's figures.
type Stats struct {
	Commits, Ops, Coalesced, Errors uint64
	LastError                       string
	Pending                         int
}

// Stats returns the journal's figures.
func (j *Journal) Stats() Stats {
	st := Stats{Commits: j.commits.Load(), Ops: j.ops.Load(), Coalesced: j.coalesced.Load(), Errors: j.errors.Load()}
	if p := j.lastErr.Load(); p != nil {
		st.LastError = *p
	}
	j.mu.Lock()
	st.Pending = len(j.pending)
	j.mu.Unlock()
	return st
}
