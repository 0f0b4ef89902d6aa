package core

import (
	"fmt"
	"io"
	"time"

	"github.com/tidemq/tide/core/persist"
	"github.com/tidemq/tide/core/topic"
)

// Durable state: sessions that outlive their connection (expiry > 0) are
// written through the journal as they change, with their subscriptions,
// queue entries and inbound QoS 2 ids; retained messages too. Each session
// operation collects its writes in ss.ops and hands them over as one group
// (flushOps), so that the writes of one publish are atomic.

// persistent reports whether the session's state is stored. Caller holds ss.mu.
func (ss *session) persistent() bool {
	return ss.srv.journal != nil && ss.expiry > 0 && !ss.ended
}

// emit records a write of the current operation. Caller holds ss.mu.
func (ss *session) emit(op persist.Op) {
	op.Session = ss.id
	ss.ops = append(ss.ops, op)
}

// flushOps hands the collected writes to the publish being routed (r), or
// submits them as one group. Caller holds ss.mu.
func (ss *session) flushOps(r *router) {
	if len(ss.ops) == 0 && len(ss.deferred) == 0 {
		return
	}
	if r != nil {
		r.ops = append(r.ops, ss.ops...)
		r.deferred = append(r.deferred, ss.deferred...)
	} else if j := ss.srv.journal; j != nil {
		j.Submit(ss.ops...)
		runAfter(j, ss.deferred)
	}
	clear(ss.ops)
	ss.ops = ss.ops[:0]
	clear(ss.deferred)
	ss.deferred = ss.deferred[:0]
}

// runAfter runs fns, in order, once everything submitted so far is durable.
func runAfter(j *persist.Journal, fns []func()) {
	if len(fns) == 0 {
		return
	}
	fns = append([]func(){}, fns...)
	j.AfterCommit(func() {
		for _, f := range fns {
			f()
		}
	})
}

// saveSession writes the session record (will: a will waiting for its
// delay, or the will of the live connection). Caller holds ss.mu.
func (ss *session) saveSession(will *Message, delay uint32) {
	if !ss.persistent() {
		ss.deleteRecord()
		return
	}
	rec := &persist.Session{ID: ss.id, Expiry: ss.expiry, Disconnected: ss.disconnected, WillDelay: delay, Username: ss.username}
	if will != nil {
		rec.Will = toPersist(will)
	}
	ss.emit(persist.Op{Kind: persist.PutSession, Sess: rec})
	ss.stored = true
}

// deleteRecord removes the stored session with everything it holds.
// Caller holds ss.mu.
func (ss *session) deleteRecord() {
	if ss.stored && ss.srv.journal != nil {
		ss.emit(persist.Op{Kind: persist.DelSession})
		ss.stored = false
	}
}

func entryOf(d delivery, pid uint16, state byte) *persist.Entry {
	e := &persist.Entry{Seq: d.seq, QoS: d.qos, Retain: d.retain, SubIDs: d.subIDs, PID: pid, State: state}
	if state != persist.WaitComp && d.msg != nil {
		e.Msg = toPersist(d.msg)
	}
	return e
}

func toPersist(m *Message) *persist.Message {
	return &persist.Message{ID: m.ID, Topic: m.Topic, Payload: m.Payload, QoS: m.QoS, Retain: m.Retain, ClientID: m.ClientID,
		Username: m.Username, Received: m.Received, Expiry: m.Expiry, TTL: m.ttl, Props: m.Props}
}

func fromPersist(m *persist.Message) *Message {
	if m == nil {
		return nil
	}
	return &Message{ID: m.ID, Topic: m.Topic, Payload: m.Payload, QoS: m.QoS, Retain: m.Retain, ClientID: m.ClientID,
		Username: m.Username, Received: m.Received, Expiry: m.Expiry, ttl: m.TTL, Props: m.Props}
}

// pageSize is how many queue entries are read from disk at a time.
const pageSize = 256

// loadPage reads the next page of the queue from disk. Entries that were
// in flight when the broker stopped return to the in-flight table. It
// reports whether anything was loaded. Caller holds ss.mu.
func (ss *session) loadPage() bool {
	j := ss.srv.journal
	if j == nil || ss.diskOnly == 0 {
		return false
	}
	j.Flush() // read our own writes
	entries, err := j.Backend().Queue(ss.id, ss.diskNext, pageSize)
	if err != nil {
		ss.srv.log.Error("persistence: cannot read a session queue; its stored messages stay on disk", "client", ss.id, "err", err)
		ss.diskOnly = 0
		return false
	}
	if len(entries) == 0 {
		ss.srv.log.Warn("persistence: queue shorter than counted", "client", ss.id, "missing", ss.diskOnly)
		ss.diskOnly = 0
		return false
	}
	for _, e := range entries {
		d := delivery{msg: fromPersist(e.Msg), qos: e.QoS, retain: e.Retain, subIDs: e.SubIDs, seq: e.Seq}
		switch {
		case e.State == persist.WaitAck && d.msg != nil, e.State == persist.WaitComp:
			if _, used := ss.inflight[e.PID]; !used && e.PID != 0 {
				st := waitAck
				if e.State == persist.WaitComp {
					st = waitComp
				}
				ss.inflight[e.PID] = inflightMsg{delivery: d, pid: e.PID, state: st}
				ss.inflightOrder = append(ss.inflightOrder, e.PID)
				break
			}
			fallthrough
		default:
			if d.msg != nil {
				ss.pending = append(ss.pending, d)
			}
		}
		ss.diskOnly--
		ss.diskNext = e.Seq + 1
	}
	if ss.diskOnly < 0 {
		ss.diskOnly = 0
	}
	return true
}

// Restore loads the stored state before any listener opens: retained
// messages, sessions (offline) with their subscriptions, inbound QoS 2 ids
// and queue positions. Expired sessions and messages are dropped; wills
// whose delay passed while the broker was down are published, and the
// others are scheduled, counting the downtime as time disconnected.
func (s *Server) Restore(j *persist.Journal) error {
	st, err := j.Backend().Load()
	if err != nil {
		return err
	}
	s.journal = j
	s.syncAlways = j.Mode() == persist.SyncAlways
	now := time.Now()
	var drop []persist.Op
	for _, m := range st.Retained {
		cm := fromPersist(m)
		if cm.expired(now) {
			drop = append(drop, persist.Op{Kind: persist.DelRetained, Topic: m.Topic})
			continue
		}
		s.retained.Set(cm.Topic, cm)
	}
	var wills []*Message
	restored := 0
	for _, rec := range st.Sessions {
		disc := rec.Disconnected
		if disc.IsZero() {
			disc = now // connected when the broker stopped: disconnected since now
		}
		var will *Message
		if rec.Will != nil {
			will = fromPersist(rec.Will)
		}
		if rec.Expiry != neverExpire && !now.Before(disc.Add(time.Duration(rec.Expiry)*time.Second)) {
			drop = append(drop, persist.Op{Kind: persist.DelSession, Session: rec.ID})
			if will != nil {
				wills = append(wills, will) // the session ended: its will goes out
			}
			continue
		}
		ss := newSession(s, rec.ID)
		ss.expiry = rec.Expiry
		ss.stored = true
		ss.username = rec.Username
		ss.acl.Store(s.rulesFor(rec.ID, rec.Username))
		ss.disconnected = disc
		for _, sub := range st.Subs[rec.ID] {
			ts := topic.Subscription{ClientID: rec.ID, Filter: sub.Filter, Group: sub.Group, QoS: sub.QoS, NoLocal: sub.NoLocal,
				RetainAsPublished: sub.RetainAsPublished, RetainHandling: sub.RetainHandling, ID: sub.ID}
			ss.subs[sub.Raw] = &subEntry{Subscription: ts, raw: sub.Raw}
			s.subs.Subscribe(ts)
		}
		for _, pid := range st.Inbound[rec.ID] {
			ss.inQoS2[pid] = struct{}{}
		}
		if qi, ok := st.Queues[rec.ID]; ok {
			ss.diskOnly = qi.Len
			ss.diskNext = qi.FirstSeq
			ss.nextSeq = qi.NextSeq
		}
		if ss.nextSeq == 0 {
			ss.nextSeq = 1
		}
		ss.mu.Lock()
		if will != nil {
			delay := min(rec.WillDelay, rec.Expiry)
			at := disc.Add(time.Duration(delay) * time.Second)
			if !now.Before(at) {
				wills = append(wills, will)
				will = nil
			} else {
				ss.will = will
				ss.willTimer = time.AfterFunc(at.Sub(now), func() { s.fireWill(ss) })
			}
		}
		if rec.Expiry != neverExpire {
			left := disc.Add(time.Duration(rec.Expiry) * time.Second).Sub(now)
			ss.expiryTime = time.AfterFunc(left, func() { s.expireSession(ss) })
		}
		ss.saveSession(will, rec.WillDelay) // keeps the disconnection time across restarts
		ss.flushOps(nil)
		ss.mu.Unlock()
		s.sessions.Store(rec.ID, ss)
		s.nSess.Add(1)
		restored++
	}
	if len(drop) > 0 {
		j.Submit(drop...)
	}
	s.log.Info("state restored", "store", j.Backend().Path(), "sessions", restored, "expired_sessions", len(st.Sessions)-restored,
		"retained", s.retained.Len(), "subscriptions", s.subs.Count())
	for _, w := range wills {
		s.publishWill(w)
	}
	return nil
}

// Backup writes a consistent copy of the persistent store to w while the
// broker runs.
func (s *Server) Backup(w io.Writer) (int64, error) {
	if s.journal == nil {
		return 0, fmt.Errorf("persistence is not enabled")
	}
	s.journal.Flush()
	return s.journal.Backend().Backup(w)
}

// JournalStats returns the persistence figures (zero when disabled).
func (s *Server) JournalStats() persist.Stats {
	if s.journal == nil {
		return persist.Stats{}
	}
	return s.journal.Stats()
}
