package core

import (
	"context"
	"strings"
	"time"

	"github.com/tidemq/tide/core/event"
	"github.com/tidemq/tide/core/packet"
	"github.com/tidemq/tide/core/persist"
	"github.com/tidemq/tide/core/topic"
)

// retainedReq is a subscription that receives retained messages once the
// SUBACK is on its way.
type retainedReq struct {
	filter string
	qos    byte
	subID  uint32
}

func (c *client) handleSubscribe(p *packet.Subscribe) error {
	s := c.srv
	var subID uint32
	if c.version == packet.V5 && len(p.Props.SubscriptionIDs) > 0 {
		if !on(s.opts.SubscriptionIdentifiers) { // [MQTT-3.8.2-?]
			return &packet.Error{Code: packet.SubscriptionIdentifiersNotSupported, Msg: "subscription identifiers are not supported"}
		}
		subID = p.Props.SubscriptionIDs[0]
	}
	codes := make([]packet.ReasonCode, len(p.Subs))
	var granted []event.Subscription
	var retained []retainedReq
	// Open the window before the subscriptions exist, so that a message
	// routed through them while the retained ones go out is sent once.
	c.sess.mu.Lock()
	c.sess.window = map[*Message]struct{}{} // a new SUBSCRIBE sends retained messages anew
	c.sess.windowUntil = time.Time{}
	c.sess.mu.Unlock()
	defer func() {
		c.sess.mu.Lock()
		c.sess.windowUntil = time.Now().Add(2 * time.Second)
		c.sess.mu.Unlock()
	}()
	for i, o := range p.Subs {
		group, inner, shared, err := topic.ParseShared(o.Filter)
		if err == nil {
			err = topic.ValidFilter(inner)
		}
		if err != nil {
			c.log.Info("subscribe refused: invalid topic filter", "filter", o.Filter, "err", err)
			codes[i] = packet.TopicFilterInvalid
			continue
		}
		if shared && o.NoLocal { // [MQTT-3.8.3-4]
			return &packet.Error{Code: packet.ProtocolError, Msg: "no local on a shared subscription"}
		}
		if shared && !on(s.opts.SharedSubscriptions) {
			codes[i] = packet.SharedSubscriptionsNotSupported
			continue
		}
		if !on(s.opts.WildcardSubscriptions) && strings.ContainsAny(inner, "+#") {
			codes[i] = packet.WildcardSubscriptionsNotSupported
			continue
		}
		qos := o.QoS
		es := event.Subscription{Filter: o.Filter, QoS: qos, NoLocal: o.NoLocal, RetainAsPublished: o.RetainAsPublished,
			RetainHandling: o.RetainHandling, Identifier: subID}
		if g := s.gates.Load().subscribe; g != nil {
			ctx, cancel := context.WithCancel(s.ctx)
			d := g.OnSubscribe(ctx, c.info, &es)
			cancel()
			if d.Verdict == event.Deny || d.Verdict == event.Drop {
				s.stats.Denied.Add(1)
				c.log.Info("subscribe denied", "filter", o.Filter, "reason", d.Reason)
				codes[i] = packet.NotAuthorized
				continue
			}
			if d.Verdict == event.Allow && d.HasQoS && d.QoS < qos {
				qos = d.QoS
				es.QoS = qos
			}
		}
		sub := topic.Subscription{ClientID: c.id, Filter: inner, Group: group, QoS: qos, NoLocal: o.NoLocal,
			RetainAsPublished: o.RetainAsPublished, RetainHandling: o.RetainHandling, ID: subID}
		sess := c.sess
		sess.mu.Lock()
		_, existed := sess.subs[o.Filter]
		sess.subs[o.Filter] = &subEntry{Subscription: sub, raw: o.Filter}
		s.subs.Subscribe(sub)
		if sess.persistent() {
			sess.emit(persist.Op{Kind: persist.PutSub, Sub: &persist.Subscription{Raw: o.Filter, Filter: inner, Group: group,
				QoS: qos, NoLocal: o.NoLocal, RetainAsPublished: o.RetainAsPublished, RetainHandling: o.RetainHandling, ID: subID}})
			sess.flushOps(nil)
		}
		sess.mu.Unlock()
		codes[i] = packet.ReasonCode(qos)
		granted = append(granted, es)
		// Retained messages: not for shared subscriptions [MQTT-3.8.4-?];
		// retain handling 0 always, 1 only for a new subscription, 2 never.
		if !shared && (o.RetainHandling == 0 || o.RetainHandling == 1 && !existed) {
			retained = append(retained, retainedReq{filter: inner, qos: qos, subID: subID})
		}
	}
	c.sendControl(&packet.Suback{PacketID: p.PacketID, Codes: codes})
	for _, rq := range retained {
		c.sendRetained(rq)
	}
	if len(granted) > 0 && s.bus.Wants(event.Subscribe) {
		s.bus.Emit(&event.Event{Kind: event.Subscribe, Time: time.Now(), Client: c.info, Subscriptions: granted})
	}
	return nil
}

// sendRetained delivers the retained messages matching a new subscription,
// with the retain flag set [MQTT-3.3.1-8].
func (c *client) sendRetained(rq retainedReq) {
	s := c.srv
	now := time.Now()
	var subIDs []uint32
	if rq.subID > 0 {
		subIDs = []uint32{rq.subID}
	}
	var expired []string
	s.retained.Match(rq.filter, func(name string, m *Message) bool {
		if m.expired(now) {
			expired = append(expired, name)
			return true
		}
		if !c.sess.mayRead(name) {
			return true
		}
		c.sess.deliverRetained(delivery{msg: m, qos: min(m.QoS, rq.qos), retain: true, subIDs: subIDs})
		return true
	})
	for _, name := range expired {
		s.dropExpiredRetained(name, now)
	}
}

// dropExpiredRetained removes a retained message whose expiry passed, unless
// it was replaced meanwhile.
func (s *Server) dropExpiredRetained(name string, now time.Time) {
	if m, ok := s.retained.Get(name); ok && m.expired(now) {
		s.retained.Delete(name)
		s.stats.DroppedExpired.Add(1)
	}
}

func (c *client) handleUnsubscribe(p *packet.Unsubscribe) error {
	s := c.srv
	codes := make([]packet.ReasonCode, len(p.Filters))
	var removed []event.Subscription
	sess := c.sess
	for i, f := range p.Filters {
		group, inner, _, err := topic.ParseShared(f)
		if err == nil {
			err = topic.ValidFilter(inner)
		}
		if err != nil {
			codes[i] = packet.TopicFilterInvalid
			continue
		}
		sess.mu.Lock()
		_, ok := sess.subs[f]
		if ok {
			delete(sess.subs, f)
			s.subs.Unsubscribe(c.id, group, inner)
			if sess.persistent() {
				sess.emit(persist.Op{Kind: persist.DelSub, Raw: f})
				sess.flushOps(nil)
			}
		}
		sess.mu.Unlock()
		if ok {
			removed = append(removed, event.Subscription{Filter: f})
		} else {
			codes[i] = packet.NoSubscriptionExisted
		}
	}
	c.sendControl(&packet.Unsuback{PacketID: p.PacketID, Codes: codes}) // [MQTT-3.10.4-4]
	if len(removed) > 0 && s.bus.Wants(event.Unsubscribe) {
		s.bus.Emit(&event.Event{Kind: event.Unsubscribe, Time: time.Now(), Client: c.info, Subscriptions: removed})
	}
	return nil
}
