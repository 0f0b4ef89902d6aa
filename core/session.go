package core

import (
	"github.com/tidemq/tide/core/acl"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidemq/tide/core/packet"
	"github.com/tidemq/tide/core/persist"
	"github.com/tidemq/tide/core/topic"
)

// neverExpire is the session expiry interval that means "never" (0xFFFFFFFF).
const neverExpire = math.MaxUint32

// delivery is one message on its way to one session.
type delivery struct {
	msg    *Message
	qos    byte
	retain bool
	subIDs []uint32
	// seq orders the session's stored queue entries (0: not stored).
	seq uint64
}

// Outbound QoS 1/2 states.
const (
	waitAck  byte = iota // PUBLISH sent, waiting for PUBACK (QoS 1) or PUBREC (QoS 2)
	waitComp             // PUBREL sent, waiting for PUBCOMP
)

type inflightMsg struct {
	delivery
	pid   uint16
	state byte
}

// subEntry is one subscription held by a session.
type subEntry struct {
	topic.Subscription
	raw string // filter as sent, with any $share/ prefix
}

// session is the state MQTT keeps for a client identifier across
// connections: subscriptions, queued and in-flight messages, inbound QoS 2
// identifiers, the will.
type session struct {
	id  string
	srv *Server

	mu     sync.Mutex
	conn   *client // nil while offline
	expiry uint32  // session expiry interval in seconds; neverExpire = never
	subs   map[string]*subEntry

	inflight      map[uint16]inflightMsg // values: no allocation per message
	inflightOrder []uint16               // send order, for resending [MQTT-4.4.0-1]; may hold removed ids
	pending       []delivery
	pendingHead   int
	nextPID       uint16
	inQoS2        map[uint16]struct{} // inbound QoS 2 ids awaiting PUBREL

	// will is the will of the last connection, kept while its delay runs.
	will      *Message
	willTimer *time.Timer
	// takeoverWill is the will of a connection that was taken over; the new
	// connection publishes it unless it resumes the session.
	takeoverWill *Message
	expiryTime   *time.Timer
	// ended is set when the session is removed; late callers must not use it.
	ended bool
	// online mirrors conn != nil for lock-free reads (share-group picks).
	online atomic.Bool
	// username is the last connection's user name (under mu); acl its
	// rules from the ACL file, nil without one (see acl.go).
	username string
	acl      atomic.Pointer[acl.Rules]
	// room is closed when the queue gets room (see waitRoom); slow marks a
	// client that made a publisher wait in vain.
	room chan struct{}
	slow bool
	acks uint64 // acknowledgements received: progress, for waitRoom

	// Persistence (see durable.go). ops collects the writes of the current
	// operation; stored says a session record exists; nextSeq numbers queue
	// entries; diskOnly entries from diskNext on are on disk and not in
	// pending (an offline session's queue stays on disk).
	// window, while a SUBSCRIBE delivers retained messages, holds the
	// messages sent to the session meanwhile, so that a message retained and
	// routed at that moment is not delivered twice (live and as retained).
	window      map[*Message]struct{}
	windowUntil time.Time // zero while the SUBSCRIBE is being handled

	ops          []persist.Op
	deferred     []func() // sends that wait for ops to be durable
	stored       bool
	nextSeq      uint64
	diskOnly     int
	diskNext     uint64
	disconnected time.Time
}

func newSession(srv *Server, id string) *session {
	return &session{
		id:       id,
		srv:      srv,
		subs:     map[string]*subEntry{},
		inflight: map[uint16]inflightMsg{},
		inQoS2:   map[uint16]struct{}{},
		nextSeq:  1, // 0 means "not stored"
	}
}

func (ss *session) pendingLen() int { return len(ss.pending) - ss.pendingHead }

func (ss *session) popPending() (delivery, bool) {
	if ss.pendingHead >= len(ss.pending) {
		return delivery{}, false
	}
	d := ss.pending[ss.pendingHead]
	ss.pending[ss.pendingHead] = delivery{}
	ss.pendingHead++
	if ss.pendingHead == len(ss.pending) {
		ss.pending = ss.pending[:0]
		ss.pendingHead = 0
	} else if ss.pendingHead > 1024 && ss.pendingHead*2 > len(ss.pending) {
		n := copy(ss.pending, ss.pending[ss.pendingHead:])
		clear(ss.pending[n:])
		ss.pending = ss.pending[:n]
		ss.pendingHead = 0
	}
	return d, true
}

// queue appends d to the queue under the queue limit and policy. Stored
// sessions write the entry; while offline (or still draining a backlog) it
// stays on disk only. The caller holds ss.mu.
func (ss *session) queue(d delivery) {
	srv := ss.srv
	max := srv.opts.MaxQueuedMessages
	if max > 0 && ss.queuedLen() >= max {
		srv.stats.DroppedQueueFull.Add(1)
		if srv.opts.QueueFullPolicy == DropOldest {
			ss.dropOldest()
		} else {
			srv.logDrop("session queue full (drop_new)", ss.id, d.msg.Topic)
			return
		}
	}
	if ss.persistent() {
		d.seq = ss.nextSeq
		ss.nextSeq++
		ss.emit(persist.Op{Kind: persist.PutEntry, Entry: entryOf(d, 0, persist.Queued)})
		if ss.conn == nil || ss.diskOnly > 0 {
			if ss.diskOnly == 0 {
				ss.diskNext = d.seq
			}
			ss.diskOnly++
			return
		}
	}
	ss.pending = append(ss.pending, d)
}

// queuedLen counts the queued messages, in memory and on disk.
func (ss *session) queuedLen() int { return ss.pendingLen() + ss.diskOnly }

// dropOldest makes room under the drop_oldest policy. Caller holds ss.mu.
func (ss *session) dropOldest() {
	if d, ok := ss.popPending(); ok {
		if d.seq != 0 {
			ss.emit(persist.Op{Kind: persist.DelEntry, Seq: d.seq})
		}
		ss.srv.logDrop("session queue full (drop_oldest)", ss.id, d.msg.Topic)
		return
	}
	if ss.diskOnly > 0 {
		ss.emit(persist.Op{Kind: persist.DelEntry, Seq: ss.diskNext})
		ss.diskNext++
		ss.diskOnly--
		ss.srv.logDrop("session queue full (drop_oldest)", ss.id, "")
	}
}

// allocPID returns a packet identifier not in use by an outbound message.
func (ss *session) allocPID() uint16 {
	for {
		ss.nextPID++
		if ss.nextPID == 0 {
			ss.nextPID = 1
		}
		if _, used := ss.inflight[ss.nextPID]; !used {
			return ss.nextPID
		}
	}
}

// deliverRouted hands a message to the session: straight to the connection
// when the in-flight window allows, else to the queue. r, when non-nil,
// provides the message encoded once for every subscriber with the same
// protocol level, QoS and retain flag (the packet identifier is patched at
// write time), and the publishing client.
func (ss *session) deliverRouted(d delivery, r *router) { ss.deliver(d, r, true) }

// deliver is deliverRouted; window says whether the subscribe window applies.
func (ss *session) deliver(d delivery, r *router, window bool) {
	srv := ss.srv
	var from *client
	direct := false
	if r != nil {
		from, direct = r.from, r.direct
	}
	if d.qos == 0 {
		ss.mu.Lock()
		if window && ss.seen(d.msg) {
			ss.mu.Unlock()
			return
		}
		c := ss.conn
		if c == nil {
			if srv.opts.QueueQoS0 && ss.expiry > 0 && !ss.ended {
				ss.queue(d)
				ss.flushOps(r)
			} else {
				srv.stats.DroppedOfflineQoS0.Add(1)
			}
			ss.mu.Unlock()
			return
		}
		ss.mu.Unlock()
		var enc []byte
		if r != nil {
			enc = r.encoding(d, c.version)
		}
		c.sendMessageFrom(d, enc, 0, from, direct)
		return
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	defer ss.flushOps(r)
	ss.waitRoom(from)
	if ss.ended || window && ss.seen(d.msg) {
		return
	}
	c := ss.conn
	if c == nil || ss.queuedLen() > 0 || len(ss.inflight) >= c.window {
		ss.queue(d)
		return
	}
	var enc []byte
	if r != nil {
		enc = r.encoding(d, c.version)
	}
	ss.sendInflight(c, d, enc, direct)
}

// waitRoom makes the publisher wait while the queue of an online session
// is full, as outQueue.waitRoom does: as long as the client acknowledges
// (progress), up to maxStall stall timeouts per message. Offline sessions
// cannot drain, and a publisher never waits for its own session. Caller
// holds ss.mu; it is released while waiting.
func (ss *session) waitRoom(from *client) {
	max := ss.srv.opts.MaxQueuedMessages
	wait := ss.srv.opts.StallTimeout
	if max <= 0 || wait <= 0 || ss.queuedLen() < max {
		return
	}
	start := time.Now()
	progress, acks := start, ss.acks
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for !ss.ended && ss.conn != nil && ss.conn != from && !ss.slow && ss.queuedLen() >= max {
		if ss.room == nil {
			ss.room = make(chan struct{})
		}
		ch := ss.room
		ss.mu.Unlock()
		select {
		case <-ch:
		case <-timer.C:
		}
		ss.mu.Lock()
		now := time.Now()
		if ss.acks != acks {
			acks, progress = ss.acks, now
		}
		if ss.queuedLen() < max {
			return
		}
		if now.Sub(progress) >= wait || now.Sub(start) >= maxStall*wait {
			ss.slow = true
			return
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(wait - now.Sub(progress))
	}
}

// roomMade wakes publishers waiting for queue room. Caller holds ss.mu.
func (ss *session) roomMade() {
	max := ss.srv.opts.MaxQueuedMessages
	if ss.queuedLen() < max || max <= 0 {
		if ss.room != nil {
			close(ss.room)
			ss.room = nil
		}
		if ss.queuedLen() <= max/2 {
			ss.slow = false
		}
	}
}

// sendInflight assigns a packet identifier and sends. With sync = always a
// QoS 2 message is written with its packet identifier before it leaves:
// after a crash the broker must resend it with the same identifier, or a
// client that already has it would take it for a new message. Caller holds ss.mu.
func (ss *session) sendInflight(c *client, d delivery, enc []byte, direct bool) {
	if enc == nil {
		enc = encodeDelivery(d, c.version, false, time.Now())
	}
	if !c.fits(enc, d.msg.Topic) {
		// Too large for the client: treated as delivered [MQTT-3.1.2-25].
		if d.seq != 0 {
			ss.emit(persist.Op{Kind: persist.DelEntry, Seq: d.seq})
		}
		return
	}
	pid := ss.allocPID()
	gate := false
	if ss.persistent() {
		if d.seq == 0 {
			d.seq = ss.nextSeq
			ss.nextSeq++
		}
		ss.emit(persist.Op{Kind: persist.PutEntry, Entry: entryOf(d, pid, persist.WaitAck)})
		gate = d.qos == 2 && ss.srv.syncAlways
	}
	ss.inflight[pid] = inflightMsg{delivery: d, pid: pid}
	ss.inflightOrder = append(ss.inflightOrder, pid)
	if gate {
		ss.deferred = append(ss.deferred, func() { c.sendMessage(d, enc, pid) })
		return
	}
	c.sendMessageFrom(d, enc, pid, nil, direct)
}

// fill moves queued messages into the in-flight window, reading the next
// page from disk when the memory part of the queue is empty. Caller holds ss.mu.
func (ss *session) fill() {
	c := ss.conn
	if c == nil {
		return
	}
	now := time.Now()
	for len(ss.inflight) < c.window {
		d, ok := ss.popPending()
		if !ok {
			if ss.diskOnly > 0 && ss.loadPage() {
				continue
			}
			break
		}
		if d.msg.expired(now) {
			ss.srv.stats.DroppedExpired.Add(1)
			if d.seq != 0 {
				ss.emit(persist.Op{Kind: persist.DelEntry, Seq: d.seq})
			}
			continue
		}
		if d.qos == 0 {
			c.sendMessage(d, nil, 0)
			if d.seq != 0 {
				ss.emit(persist.Op{Kind: persist.DelEntry, Seq: d.seq})
			}
			continue
		}
		ss.sendInflight(c, d, nil, false)
	}
	ss.roomMade()
	ss.compactOrder()
}

func (ss *session) compactOrder() {
	if len(ss.inflightOrder) <= 2*len(ss.inflight)+16 {
		return
	}
	j := 0
	for _, pid := range ss.inflightOrder {
		if _, ok := ss.inflight[pid]; ok {
			ss.inflightOrder[j] = pid
			j++
		}
	}
	ss.inflightOrder = ss.inflightOrder[:j]
}

// acked handles PUBACK, PUBREC and PUBCOMP for outbound messages. It returns
// false when the identifier is unknown.
func (ss *session) acked(kind packet.Type, pid uint16, code packet.ReasonCode) (found bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	defer ss.flushOps(nil)
	m, ok := ss.inflight[pid]
	if !ok {
		return false
	}
	ss.acks++
	done := func() {
		delete(ss.inflight, pid)
		if m.seq != 0 {
			ss.emit(persist.Op{Kind: persist.DelEntry, Seq: m.seq})
		}
	}
	switch {
	case kind == packet.PUBACK && m.qos == 1:
		done()
	case kind == packet.PUBREC && m.qos == 2 && m.state == waitAck:
		if code.IsError() {
			done() // an error PUBREC ends the exchange [MQTT-4.3.3-?]
		} else {
			m.state = waitComp
			m.msg = nil // the payload is no longer needed
			ss.inflight[pid] = m
			c := ss.conn
			if m.seq != 0 {
				ss.emit(persist.Op{Kind: persist.PutEntry, Entry: entryOf(m.delivery, pid, persist.WaitComp)})
				if ss.srv.syncAlways && c != nil {
					// PUBREL only once the new state is on disk: after a crash
					// the broker must not send the PUBLISH again to a client
					// that already completed the exchange.
					ss.flushOps(nil)
					conn := c
					ss.srv.journal.AfterCommit(func() { conn.sendAck(packet.PUBREL, pid, packet.Success, "", false) })
					c = nil
				}
			}
			if c != nil {
				c.sendAck(packet.PUBREL, pid, packet.Success, "", false)
			}
		}
	case kind == packet.PUBREC && m.qos == 2 && m.state == waitComp:
		// A duplicate PUBREC: answer again.
		if ss.conn != nil {
			ss.conn.sendAck(packet.PUBREL, pid, packet.Success, "", false)
		}
		return true
	case kind == packet.PUBCOMP && m.state == waitComp:
		done()
	default:
		return false
	}
	ss.fill()
	return true
}

// resume re-sends the in-flight messages (PUBLISH with DUP, or PUBREL) in
// their original order and then drains the queue. Caller holds ss.mu.
func (ss *session) resume(c *client) {
	if ss.pendingLen() == 0 && ss.diskOnly > 0 {
		ss.loadPage() // the first page holds any in-flight state restored from disk
	}
	order := ss.inflightOrder
	ss.inflightOrder = make([]uint16, 0, len(order))
	for _, pid := range order {
		m, ok := ss.inflight[pid]
		if !ok {
			continue
		}
		if m.state == waitComp {
			c.sendAck(packet.PUBREL, pid, packet.Success, "", false)
			ss.inflightOrder = append(ss.inflightOrder, pid)
			continue
		}
		// A message already sent is resent even if it expired meanwhile: the
		// exchange must complete.
		if !c.resendMessage(&m) {
			delete(ss.inflight, pid)
			if m.seq != 0 {
				ss.emit(persist.Op{Kind: persist.DelEntry, Seq: m.seq})
			}
			continue
		}
		ss.inflightOrder = append(ss.inflightOrder, pid)
	}
	ss.fill()
}

// clearState drops everything (clean start or expiry). Caller holds ss.mu.
func (ss *session) clearState() {
	for _, e := range ss.subs {
		ss.srv.subs.Unsubscribe(ss.id, e.Group, e.Filter)
	}
	ss.subs = map[string]*subEntry{}
	ss.inflight = map[uint16]inflightMsg{}
	ss.inflightOrder = nil
	ss.pending = nil
	ss.pendingHead = 0
	ss.diskOnly = 0
	ss.inQoS2 = map[uint16]struct{}{}
}

// releaseInbound forgets an inbound QoS 2 identifier on PUBREL.
func (ss *session) releaseInbound(pid uint16) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if _, ok := ss.inQoS2[pid]; !ok {
		return false
	}
	delete(ss.inQoS2, pid)
	if ss.persistent() {
		ss.emit(persist.Op{Kind: persist.DelInbound, PID: pid})
		ss.flushOps(nil)
	}
	return true
}

// seen records m in the subscribe window and reports whether it was
// already sent during it. Only retained messages can arrive both ways. The
// window outlives the SUBSCRIBE by a grace period, for a publisher that
// stored a retained message before the scan but routes it after. Caller
// holds ss.mu.
func (ss *session) seen(m *Message) bool {
	if ss.window == nil || !m.Retain {
		return false
	}
	if !ss.windowUntil.IsZero() && time.Now().After(ss.windowUntil) {
		ss.window = nil
		return false
	}
	if _, ok := ss.window[m]; ok {
		return true
	}
	ss.window[m] = struct{}{}
	return false
}

// deliverRetained sends a retained message for a new subscription, unless
// the same message already went to the session while subscribing.
func (ss *session) deliverRetained(d delivery) {
	ss.mu.Lock()
	dup := ss.seen(d.msg)
	ss.mu.Unlock()
	if !dup {
		ss.deliver(d, nil, false)
	}
}
