package core

import (
	"net"
	"sync"
	"time"
)

// outItem is one packet waiting to be written. buf may be shared with other
// clients and is never modified; when pidOff > 0 the writer patches pid in
// its own copy. Small control packets (acks, PINGRESP) live in ctl instead,
// so acknowledging allocates nothing. pidOff == fragment marks the unwritten
// rest of a packet a direct write began: bytes to write, not a packet.
type outItem struct {
	buf    []byte
	pidOff int32
	pid    uint16
	qos0   bool
	qos    byte
	ctlLen uint8
	ctl    [7]byte
}

// fragment is outItem.pidOff for the rest of a partly written packet.
const fragment = -1

// isPublish reports whether the item is a whole PUBLISH packet.
func (it *outItem) isPublish() bool {
	return it.pidOff != fragment && it.ctlLen == 0 && len(it.buf) > 0 && it.buf[0]>>4 == 3
}

// bytes returns the packet's encoding.
func (it *outItem) bytes() []byte {
	if it.ctlLen > 0 {
		return it.ctl[:it.ctlLen]
	}
	return it.buf
}

// outQueue is a client's outbound queue, drained by the client's writer
// goroutine into one buffered write per batch.
type outQueue struct {
	mu     sync.Mutex
	items  []outItem
	nQoS0  int
	closed bool
	signal chan struct{}
	// drained is closed by the writer when it takes the queue, waking
	// publishers that wait for room (created only when someone waits).
	drained chan struct{}
	// slow is set when a publisher waited in vain: until the writer catches
	// up, later QoS 0 messages are dropped at once instead of stalling
	// publishers behind a stuck client.
	slow bool
	// takes counts the writer's takes: progress, for waitRoom.
	takes uint64
	// connacked: the successful CONNACK is queued, so a DISCONNECT may
	// follow it (see sendConnack).
	connacked bool
}

func newOutQueue() *outQueue {
	return &outQueue{signal: make(chan struct{}, 1)}
}

// push appends an item. A QoS 0 message that finds maxQoS0 messages queued
// waits up to wait for the writer to make room (back-pressure on the
// publisher, so a client that is merely behind loses nothing), then is
// refused.
func (q *outQueue) push(it outItem, maxQoS0 int, wait time.Duration) bool {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return true // the connection is going away; nothing to count here
	}
	if it.qos0 {
		if q.nQoS0 >= maxQoS0 && !q.waitRoom(maxQoS0, wait) {
			closed := q.closed
			q.mu.Unlock()
			return closed
		}
		q.nQoS0++
	}
	wake := len(q.items) == 0
	q.items = append(q.items, it)
	q.mu.Unlock()
	if wake {
		select {
		case q.signal <- struct{}{}:
		default:
		}
	}
	return true
}

// maxStall bounds, in units of the stall timeout, how long one message may
// wait for a client that drains, but slowly.
const maxStall = 10

// waitRoom waits for room in a full queue while the writer makes progress:
// a client that drains, even in bursts, makes publishers wait instead of
// losing messages; one whose writer takes nothing for wait (stuck), or that
// keeps one message waiting maxStall times that long (too slow), is marked
// slow and refused. Caller holds q.mu, held again on return.
func (q *outQueue) waitRoom(max int, wait time.Duration) bool {
	if q.slow || wait <= 0 {
		return false
	}
	start := time.Now()
	progress, takes := start, q.takes
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for q.nQoS0 >= max {
		if q.closed || q.slow {
			return false
		}
		if q.drained == nil {
			q.drained = make(chan struct{})
		}
		ch := q.drained
		q.mu.Unlock()
		select {
		case <-ch:
		case <-timer.C:
		}
		q.mu.Lock()
		now := time.Now()
		if q.takes != takes {
			takes, progress = q.takes, now
		}
		if q.nQoS0 < max {
			break
		}
		if now.Sub(progress) >= wait || now.Sub(start) >= maxStall*wait {
			q.slow = true
			return false
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(wait - now.Sub(progress))
	}
	return true
}

// take swaps the queued items into spare and returns them.
func (q *outQueue) take(spare []outItem) []outItem {
	q.mu.Lock()
	items := q.items
	q.items = spare[:0]
	q.nQoS0 = 0
	q.slow = false
	q.takes++
	if q.drained != nil {
		close(q.drained)
		q.drained = nil
	}
	q.mu.Unlock()
	return items
}

// close refuses further items; what is queued stays for flushOnClose.
func (q *outQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

func (q *outQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

var writeBufPool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

const maxWriteBatch = 64 << 10

// writeLoop drains the queue until the client closes. Buffers are taken from
// a pool per batch so an idle connection holds none.
func (c *client) writeLoop() {
	defer func() {
		// Half-close so the final packets are not lost to a reset if the
		// client is still sending, and bound the reader's wait for the
		// client to close its side. Without half-close, close outright.
		if hc, ok := c.conn.(interface{ CloseWrite() error }); ok {
			_ = hc.CloseWrite()
			c.setCloseDeadline(time.Second)
		} else {
			c.conn.Close()
		}
		close(c.writerDone)
	}()
	var spare []outItem
	for {
		select {
		case <-c.out.signal:
		case <-c.closed:
			c.flushOnClose()
			return
		}
		// The write lock is taken before the queue: a direct write can
		// start only on an empty queue, so nothing overtakes a batch.
		c.wmu.Lock()
		items := c.out.take(spare)
		if len(items) == 0 {
			c.wmu.Unlock()
			spare = items
			continue
		}
		bp := writeBufPool.Get().(*[]byte)
		buf := (*bp)[:0]
		var sent [3]uint64
		var nmsg uint64
		ok := true
		for i := range items {
			it := &items[i]
			start := len(buf)
			b := it.bytes()
			buf = append(buf, b...)
			if it.pidOff > 0 {
				buf[start+int(it.pidOff)] = byte(it.pid >> 8)
				buf[start+int(it.pidOff)+1] = byte(it.pid)
			}
			if it.isPublish() {
				nmsg++
				sent[it.qos]++
			}
			it.buf = nil
			if len(buf) >= maxWriteBatch {
				if !c.write(buf) {
					ok = false
					break
				}
				buf = buf[:0]
			}
		}
		if ok && len(buf) > 0 {
			ok = c.write(buf)
		}
		c.wmu.Unlock()
		if cap(buf) <= 256<<10 {
			*bp = buf[:0]
			writeBufPool.Put(bp)
		}
		clear(items)
		spare = items
		if nmsg > 0 {
			c.srv.stats.MessagesSent.Add(nmsg)
			for q, n := range sent {
				if n > 0 {
					c.srv.stats.PublishSent[q].Add(n)
				}
			}
		}
		if !ok {
			return
		}
	}
}

func (c *client) write(b []byte) bool {
	_ = c.conn.SetWriteDeadline(time.Now().Add(c.srv.opts.WriteTimeout))
	var n int
	var err error
	if c.rw != nil {
		n, err = c.rw.Write(b) // see direct.go
	} else {
		n, err = c.conn.Write(b)
	}
	c.srv.stats.BytesSent.Add(uint64(n))
	if err != nil {
		c.closeWith(errWrite{err})
		return false
	}
	return true
}

// flushOnClose writes what is queued (a final DISCONNECT, a CONNACK that
// refuses) with a short deadline before the connection is closed.
func (c *client) flushOnClose() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	items := c.out.take(nil)
	var buf []byte
	for _, it := range items {
		if it.isPublish() {
			continue // messages are not flushed on close; QoS 1/2 stay in the session
		}
		// Control packets, and the rest of a packet a direct write began
		// (without it the stream would be cut mid-packet).
		buf = append(buf, it.bytes()...)
	}
	if len(buf) > 0 {
		_ = c.conn.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = c.conn.Write(buf)
	}
}

type errWrite struct{ err error }

func (e errWrite) Error() string { return "write: " + e.err.Error() }

// isTimeout reports a network timeout.
func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
