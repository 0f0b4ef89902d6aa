package core

import (
	"context"
	"errors"
	"fmt"
	"github.com/tidemq/tide/core/acl"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tidemq/tide/core/event"
	"github.com/tidemq/tide/core/packet"
	"github.com/tidemq/tide/core/persist"
	"github.com/tidemq/tide/core/topic"
)

func (c *client) handlePublish(p *packet.Publish) error {
	s := c.srv
	received := s.stats.MessagesReceived.Add(1)
	c.direct = false
	s.stats.PublishReceived[p.QoS].Add(1)
	name := p.Topic
	if c.version == packet.V5 {
		if len(p.Props.SubscriptionIDs) > 0 { // [MQTT-3.3.4-6]
			return &packet.Error{Code: packet.ProtocolError, Msg: "PUBLISH from a client carries a subscription identifier"}
		}
		if a := p.Props.TopicAlias; a != nil {
			if *a == 0 || int(*a) > s.opts.TopicAliasMaximum { // [MQTT-3.3.2-8] [MQTT-3.3.2-9]
				return &packet.Error{Code: packet.TopicAliasInvalid, Msg: fmt.Sprintf("topic alias %d outside 1..%d", *a, s.opts.TopicAliasMaximum)}
			}
			if name != "" {
				if c.aliases == nil {
					c.aliases = map[uint16]string{}
				}
				c.aliases[*a] = name
			} else if t, ok := c.aliases[*a]; ok {
				name = t
			} else {
				return &packet.Error{Code: packet.ProtocolError, Msg: fmt.Sprintf("topic alias %d has no mapping", *a)}
			}
		}
	}
	if name == "" { // [MQTT-4.7.3-1]
		code := packet.ProtocolError
		if c.version != packet.V5 {
			code = packet.MalformedPacket
		}
		return &packet.Error{Code: code, Msg: "PUBLISH with an empty topic name"}
	}
	if err := topic.ValidName(name); err != nil { // [MQTT-3.3.2-2]
		return &packet.Error{Code: packet.TopicNameInvalid, Msg: err.Error()}
	}
	retain := p.Retain
	if retain && !on(s.opts.RetainAvailable) {
		if c.version == packet.V5 { // [MQTT-3.3.1-?] retain not supported
			return &packet.Error{Code: packet.RetainNotSupported, Msg: "retained messages are not available"}
		}
		retain = false
	}
	if p.QoS == 2 {
		sess := c.sess
		sess.mu.Lock()
		_, dup := sess.inQoS2[p.PacketID]
		n := len(sess.inQoS2)
		sess.mu.Unlock()
		if dup {
			// Already received and routed: acknowledge again, deliver nothing [MQTT-4.3.3-?].
			c.sendAck(packet.PUBREC, p.PacketID, packet.Success, "", false)
			return nil
		}
		if c.version == packet.V5 && n >= s.opts.ReceiveMaximum { // [MQTT-3.3.4-9]
			return &packet.Error{Code: packet.ReceiveMaximumExceeded, Msg: fmt.Sprintf("more than %d QoS 2 messages unacknowledged", s.opts.ReceiveMaximum)}
		}
	}
	if c.version == packet.V5 && p.Props.PayloadFormat != nil && *p.Props.PayloadFormat == 1 && !utf8.Valid(p.Payload) {
		if p.QoS == 0 {
			return &packet.Error{Code: packet.PayloadFormatInvalid, Msg: "payload is not valid UTF-8 but the payload format indicator says it is"}
		}
		c.ackPublish(p, packet.PayloadFormatInvalid, "payload is not valid UTF-8")
		return nil
	}

	m := &Message{
		Topic:    name,
		Payload:  p.Payload,
		QoS:      p.QoS,
		Retain:   retain,
		ClientID: c.id,
		Username: c.info.Username,
		Received: time.Now(),
	}
	// Light load, and this reader's input is not backing up: it may write
	// to subscribers and acknowledge itself (see direct.go).
	c.direct = c.reader.Buffered() <= maxDirectBuffered && s.load.light(m.Received, received)
	if c.version == packet.V5 {
		m.Props = messageProps(&p.Props)
		if e := p.Props.MessageExpiry; e != nil {
			m.Expiry = m.Received.Add(time.Duration(*e) * time.Second)
		}
	}

	if ok, code, why := s.admitPublish(s.ctx, c.info, c.sess.acl.Load(), m, c.log); !ok {
		c.ackPublish(p, code, why)
		return nil
	}
	n, ops := s.publishOps(m, c)
	if bp := s.backpressure; bp != nil && p.QoS > 0 && bp.Saturated(m.Topic) {
		// Hold the acknowledgement (and this client's next packets) while a
		// store this message goes to is saturated, for at most a second.
		ctx, cancel := context.WithTimeout(s.ctx, time.Second)
		_ = bp.WaitUnsaturated(ctx, m.Topic)
		cancel()
	}
	code := packet.Success
	if n == 0 {
		code = packet.NoMatchingSubscribers
	}
	c.ackPublishDurable(p, code, "", ops)
	return nil
}

// admitPublish applies what a client's message must pass before it is
// routed, whether the client publishes it or it is the client's will: no
// topic starting with $ (reserved for the broker), and the publish gate,
// which may rewrite m. A refusal is counted and logged; code and why are
// for the acknowledgement (Success for a gate's silent drop).
func (s *Server) admitPublish(ctx context.Context, info *event.Client, rules *acl.Rules, m *Message, log *slog.Logger) (ok bool, code packet.ReasonCode, why string) {
	if strings.HasPrefix(m.Topic, "$") {
		s.stats.Denied.Add(1)
		log.Info("publish denied: topics starting with $ are reserved", "topic", m.Topic)
		return false, packet.NotAuthorized, "topics starting with $ are reserved for the broker"
	}
	if rules != nil && !rules.Allowed(m.Topic, true) {
		s.stats.Denied.Add(1)
		log.Debug("publish denied by the ACL file", "topic", m.Topic)
		return false, packet.NotAuthorized, "not allowed by the ACL"
	}
	g := s.gates.Load().publish
	if g == nil {
		return true, packet.Success, ""
	}
	ctx, cancel := context.WithCancel(ctx)
	d := g.OnPublish(ctx, info, m.eventMessage())
	cancel()
	switch d.Verdict {
	case event.Deny:
		s.stats.Denied.Add(1)
		why := d.Reason
		if why == "" {
			why = "not authorized"
		}
		log.Debug("publish denied", "topic", m.Topic, "reason", why)
		return false, packet.NotAuthorized, why
	case event.Drop:
		s.stats.Denied.Add(1)
		return false, packet.Success, ""
	case event.Allow:
		if d.Message != nil {
			m.applyEventMessage(d.Message)
			if err := topic.ValidName(m.Topic); err != nil || strings.HasPrefix(m.Topic, "$") || m.QoS > 2 {
				s.stats.Denied.Add(1)
				log.Warn("publish rewritten to an invalid message: not routed", "topic", m.Topic, "qos", m.QoS)
				return false, packet.ImplementationSpecificError, "rewritten to an invalid topic"
			}
		}
	}
	return true, packet.Success, ""
}

// ackPublish sends PUBACK or PUBREC for p. MQTT 3 clients cannot be told of
// a refusal, so they get a plain acknowledgement.
func (c *client) ackPublish(p *packet.Publish, code packet.ReasonCode, why string) {
	c.ackPublishDurable(p, code, why, nil)
}

// ackPublishDurable submits the writes of a routed publish (ops) with the
// inbound QoS 2 id as one group, and acknowledges once they are durable when
// persistence syncs always.
func (c *client) ackPublishDurable(p *packet.Publish, code packet.ReasonCode, why string, ops []persist.Op) {
	s := c.srv
	if c.version != packet.V5 {
		code = packet.Success
	}
	if p.QoS == 0 {
		if len(ops) > 0 && s.journal != nil {
			s.journal.Submit(ops...)
		}
		return
	}
	kind, pid := packet.PUBACK, p.PacketID
	if !code.IsError() || c.noProblemInfo { // [MQTT-3.1.2-29]
		why = ""
	}
	if p.QoS == 2 {
		kind = packet.PUBREC
		if !code.IsError() {
			// Remember the id so a resend is not routed again and PUBREL completes.
			ss := c.sess
			ss.mu.Lock()
			ss.inQoS2[p.PacketID] = struct{}{}
			if ss.persistent() {
				ops = append(ops, persist.Op{Kind: persist.PutInbound, Session: ss.id, PID: p.PacketID})
			}
			ss.mu.Unlock()
		}
	}
	if len(ops) > 0 && s.journal != nil {
		s.journal.Submit(ops...)
		if s.syncAlways {
			s.journal.AfterCommit(func() { c.sendAck(kind, pid, code, why, false) })
			return
		}
	}
	// On the reader: unless under load, answer at once.
	c.sendAck(kind, pid, code, why, c.direct)
}

// ErrInvalidTopic is returned by Publish for a topic that is not a valid
// topic name.
var ErrInvalidTopic = errors.New("invalid topic name")

// Publish routes a message from inside the broker (an admin request, a
// script, $SYS). Topic, Payload, QoS, Retain and Props are taken from m; it
// returns the number of subscribers it was delivered to.
func (s *Server) Publish(m Message) (int, error) {
	if err := topic.ValidName(m.Topic); err != nil {
		return 0, fmt.Errorf("%w: %v", ErrInvalidTopic, err)
	}
	if m.QoS > 2 {
		return 0, fmt.Errorf("invalid QoS %d", m.QoS)
	}
	if m.Received.IsZero() {
		m.Received = time.Now()
	}
	m.Payload = append([]byte(nil), m.Payload...)
	return s.publish(&m, nil), nil
}

// publish stores a retained message and routes m to every matching
// subscription. from is the publishing client (for no-local), or nil.
func (s *Server) publish(m *Message, from *client) int {
	n, ops := s.publishOps(m, from)
	if len(ops) > 0 && s.journal != nil {
		s.journal.Submit(ops...)
	}
	return n
}

// publishOps routes m and returns the writes it caused, for the caller to
// submit as one group with its own.
func (s *Server) publishOps(m *Message, from *client) (int, []persist.Op) {
	if s.bus.Wants(event.Publish) {
		if m.ID == "" {
			m.ID = event.NewID()
		}
		var ci *event.Client
		if from != nil {
			ci = from.info
		}
		s.bus.Emit(&event.Event{Kind: event.Publish, Time: m.Received, Client: ci, Message: m.eventMessage()})
	}
	r := s.routePool.Get().(*router)
	if m.Retain {
		if len(m.Payload) == 0 { // [MQTT-3.3.1-6] [MQTT-3.3.1-7]
			if s.retained.Delete(m.Topic) && s.journal != nil && m.Topic[0] != '$' {
				r.ops = append(r.ops, persist.Op{Kind: persist.DelRetained, Topic: m.Topic})
			}
		} else {
			s.retained.Set(m.Topic, m)
			if s.journal != nil && m.Topic[0] != '$' { // $SYS values are rebuilt at start, not stored
				if m.ID == "" {
					m.ID = event.NewID()
				}
				r.ops = append(r.ops, persist.Op{Kind: persist.PutRetained, Topic: m.Topic, Retained: toPersist(m)})
			}
		}
	}
	n := r.route(s, m, from)
	var ops []persist.Op
	if len(r.ops) > 0 {
		ops = append(ops, r.ops...)
	}
	if len(r.deferred) > 0 {
		// Sends waiting for the routed writes: they ride on the group as a
		// last no-op, run once it is durable.
		fns := append([]func(){}, r.deferred...)
		ops = append(ops, persist.Op{Kind: persist.Notify, Then: func() {
			for _, f := range fns {
				f()
			}
		}})
	}
	r.reset()
	s.routePool.Put(r)
	if n == 0 {
		s.stats.DroppedNoRoute.Add(1)
	}
	return n, ops
}

// router is the scratch space of one routing pass, pooled.
type router struct {
	ops      []persist.Op
	deferred []func()
	from     *client
	m        topic.Matches
	targets  []target
	idx      map[string]int
	msg      *Message
	// direct: the publisher's reader may write to subscribers itself.
	direct bool
	now    time.Time
	enc    [2][3][2][]byte // [v5][qos][retain]
}

type target struct {
	clientID string
	qos      byte
	rap      bool
	subIDs   []uint32
}

func (r *router) reset() {
	clear(r.targets)
	r.targets = r.targets[:0]
	clear(r.idx)
	r.msg = nil
	r.from = nil
	r.direct = false
	clear(r.ops)
	r.ops = r.ops[:0]
	clear(r.deferred)
	r.deferred = r.deferred[:0]
	r.enc = [2][3][2][]byte{}
}

// route delivers m once to each client with matching subscriptions (at the
// highest granted QoS, with every subscription identifier [MQTT-3.3.4-2]
// [MQTT-3.3.4-3]) and to one member of each matching share group.
func (r *router) route(s *Server, m *Message, from *client) int {
	s.subs.Match(m.Topic, &r.m)
	r.msg = m
	r.from = from
	r.now = m.Received
	fromID := ""
	if from != nil {
		fromID = from.id
	}
	many := len(r.m.Subs) > 1
	for _, sub := range r.m.Subs {
		if sub.NoLocal && sub.ClientID == fromID { // [MQTT-3.8.3-3]
			continue
		}
		if many {
			if r.idx == nil {
				r.idx = map[string]int{}
			}
			if i, ok := r.idx[sub.ClientID]; ok {
				t := &r.targets[i]
				t.qos = max(t.qos, sub.QoS)
				t.rap = t.rap || sub.RetainAsPublished
				if sub.ID > 0 {
					t.subIDs = append(t.subIDs, sub.ID)
				}
				continue
			}
			r.idx[sub.ClientID] = len(r.targets)
		}
		t := target{clientID: sub.ClientID, qos: sub.QoS, rap: sub.RetainAsPublished}
		if sub.ID > 0 {
			t.subIDs = []uint32{sub.ID}
		}
		r.targets = append(r.targets, t)
	}
	// A reader with much input buffered is under load: queueing batches
	// better than writing each message; so does a large fan-out.
	r.direct = from != nil && len(r.targets)+len(r.m.Groups) <= maxDirectFanOut && from.direct
	n := 0
	for i := range r.targets {
		if r.deliverTo(s, &r.targets[i]) {
			n++
		}
	}
	for _, g := range r.m.Groups {
		sub := g.Pick(func(sub *topic.Subscription) bool {
			if sub.NoLocal && sub.ClientID == fromID {
				return false
			}
			v, ok := s.sessions.Load(sub.ClientID)
			return ok && v.(*session).online.Load() && v.(*session).mayRead(m.Topic)
		})
		if sub == nil {
			// Nobody online: queue for an offline member rather than lose it.
			sub = g.Pick(func(sub *topic.Subscription) bool {
				v, ok := s.sessions.Load(sub.ClientID)
				return !ok || v.(*session).mayRead(m.Topic)
			})
		}
		if sub == nil {
			continue
		}
		t := target{clientID: sub.ClientID, qos: sub.QoS, rap: sub.RetainAsPublished}
		if sub.ID > 0 {
			t.subIDs = []uint32{sub.ID}
		}
		if r.deliverTo(s, &t) {
			n++
		}
	}
	return n
}

func (r *router) deliverTo(s *Server, t *target) bool {
	v, ok := s.sessions.Load(t.clientID)
	if !ok {
		return false
	}
	m := r.msg
	if !v.(*session).mayRead(m.Topic) { // the ACL file decides message by message
		return false
	}
	d := delivery{msg: m, qos: min(m.QoS, t.qos), subIDs: t.subIDs}
	// Forwarded messages carry retain=0 unless retain-as-published
	// [MQTT-3.3.1-9] [MQTT-3.3.1-12] [MQTT-3.3.1-13].
	d.retain = t.rap && m.Retain
	if !m.Expiry.IsZero() && m.expired(r.now) {
		s.stats.DroppedExpired.Add(1)
		return false
	}
	v.(*session).deliverRouted(d, r)
	return true
}

// encoding returns the shared encoding of the message being routed for a
// client of protocol level v, or nil when d needs its own (subscription
// identifiers differ per client).
func (r *router) encoding(d delivery, v byte) []byte {
	if len(d.subIDs) > 0 {
		return nil
	}
	i := 0
	if v == packet.V5 {
		i = 1
	}
	j := 0
	if d.retain {
		j = 1
	}
	e := r.enc[i][d.qos][j]
	if e == nil {
		e = encodeDelivery(d, v, false, r.now)
		r.enc[i][d.qos][j] = e
	}
	return e
}
