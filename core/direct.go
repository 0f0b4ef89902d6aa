package core

import (
	"slices"
	"sync/atomic"
	"time"
)

// Direct writes.
//
// A message normally reaches a subscriber's socket through two goroutine
// wake-ups: the publisher's reader queues it, the subscriber's writer writes
// it. When the subscriber's queue is empty and its writer idle, the reader
// can instead write the packet itself with one non-blocking write and skip
// the second wake-up, which is most of a lightly loaded broker's latency.
// It never waits: whatever the socket does not take at once (EAGAIN, a
// short write) goes to the queue, ahead of anything queued meanwhile, and
// the writer finishes it. Only plain TCP connections are written this way
// (TLS and WebSocket framing belong to their writer), only from a reader
// whose input is not backing up while the broker as a whole is lightly
// loaded (under load, queueing batches writes: see loadMeter), and
// only for messages with few subscribers (fan-out is left to the
// subscribers' writers, in parallel and batched). The acknowledgement of a
// publish goes the same way to the publisher.
//
// Plain TCP connections are read and written with raw system calls through
// the poller (package rawio): the scheduler's bookkeeping for an ordinary
// system call woke Go's monitor thread for every packet of a broker idle
// between messages (a fifth of its CPU time at 2,000 msg/s).

// maxDirectBuffered is the most input a reader may have read but not yet
// handled and still write directly: a few packets that arrived together,
// not a flood (reads take up to 64 KiB).
const maxDirectBuffered = 2 << 10

// maxDirectRate is the broker-wide rate of messages received (per second)
// above which readers stop writing directly: past it the CPU, not the
// wake-ups, is what limits, and the writers' batches save system calls.
// (Writing every message directly cost 500 publisher/subscriber pairs
// about a quarter of their 250k msg/s.)
const maxDirectRate = 20000

// loadWindow is how often the message rate is measured.
const loadWindow = 10 * time.Millisecond

// loadMeter tells light load from heavy by the rate of messages received
// over the last window. Readers consult it for every message, so it costs
// one atomic load but once a window.
type loadMeter struct {
	start atomic.Int64  // the window's start, unix nanoseconds
	count atomic.Uint64 // messages received before it
	heavy atomic.Bool
}

// light reports whether the load is light, given the time and the count of
// messages received so far.
func (m *loadMeter) light(now time.Time, received uint64) bool {
	t := now.UnixNano()
	if st := m.start.Load(); t-st >= int64(loadWindow) && m.start.CompareAndSwap(st, t) {
		n := received - m.count.Swap(received)
		m.heavy.Store(float64(n)*1e9/float64(t-st) > maxDirectRate)
	}
	return !m.heavy.Load()
}

// maxDirectFanOut is the most subscribers a message may have for the
// publisher's reader to write it to them directly.
const maxDirectFanOut = 4

// sendDirect writes it at once from the calling goroutine when nothing is
// queued and nobody is writing. It reports false when it must be queued
// instead (the connection is not plain TCP, is closing, has a backlog, or
// its writer is busy).
func (c *client) sendDirect(it *outItem) bool {
	if c.raw == nil {
		return false
	}
	q := c.out
	q.mu.Lock()
	if q.closed || len(q.items) > 0 || !c.wmu.TryLock() {
		q.mu.Unlock()
		return false
	}
	q.mu.Unlock()
	defer c.wmu.Unlock()
	// Copied, not sliced, from a control packet's inline bytes: slicing
	// them would move every caller's item to the heap.
	b := it.buf
	var bp *[]byte
	if it.ctlLen > 0 || it.pidOff > 0 {
		bp = writeBufPool.Get().(*[]byte)
		b = append((*bp)[:0], it.bytes()...)
		if it.pidOff > 0 {
			b[it.pidOff] = byte(it.pid >> 8)
			b[it.pidOff+1] = byte(it.pid)
		}
	}
	n, err := c.rw.TryWrite(b)
	if n == 0 && !c.rw.Reached() && isTimeout(err) {
		// The write deadline of the writer's last batch has passed: renew it.
		_ = c.conn.SetWriteDeadline(time.Now().Add(c.srv.opts.WriteTimeout))
		n, err = c.rw.TryWrite(b)
	}
	s := c.srv
	s.stats.BytesSent.Add(uint64(n))
	if err == nil && it.isPublish() {
		s.stats.MessagesSent.Add(1)
		s.stats.PublishSent[it.qos].Add(1)
	}
	if err != nil {
		c.closeWith(errWrite{err})
	} else if n < len(b) {
		rest := outItem{buf: slices.Clone(b[n:]), pidOff: fragment}
		q.mu.Lock()
		q.items = slices.Insert(q.items, 0, rest)
		q.mu.Unlock()
		select {
		case q.signal <- struct{}{}:
		default:
		}
	}
	if bp != nil && cap(b) <= 256<<10 {
		*bp = b[:0]
		writeBufPool.Put(bp)
	}
	return true
}
