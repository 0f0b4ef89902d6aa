package core

import (
	"time"

	"github.com/tidemq/tide/core/event"
	"github.com/tidemq/tide/core/packet"
)

// Message is an application message inside the broker. It is immutable once
// routed: every subscriber's queue points at the same Message.
type Message struct {
	// ID is set when something needs it (events, persistence).
	ID       string
	Topic    string
	Payload  []byte
	QoS      byte
	Retain   bool
	ClientID string // the publisher ("" for the broker itself)
	Username string
	Received time.Time
	// Expiry is when the message expires (zero: never). MQTT 5's message
	// expiry interval is sent to subscribers decremented by the time waited.
	Expiry time.Time
	// Props are the MQTT 5 properties forwarded unchanged (payload format,
	// content type, response topic, correlation data, user properties); nil
	// when there are none.
	Props *packet.Properties
	// ttl is a will's message expiry interval, applied when it is published.
	ttl time.Duration
	// from is a will's client, for the publish gate when it is published
	// (nil for a will restored from the store).
	from *event.Client
}

// expired reports whether the message's expiry has passed at now.
func (m *Message) expired(now time.Time) bool {
	return !m.Expiry.IsZero() && !now.Before(m.Expiry)
}

// forwardProps returns the properties of a PUBLISH for m sent at now, with
// the message expiry interval set to the time left [MQTT-3.3.2-6] and the
// given subscription identifiers.
func (m *Message) forwardProps(now time.Time, subIDs []uint32) packet.Properties {
	var p packet.Properties
	if m.Props != nil {
		p = *m.Props
	}
	p.TopicAlias = nil
	p.SubscriptionIDs = subIDs
	if !m.Expiry.IsZero() {
		left := m.Expiry.Sub(now)
		secs := uint32((left + time.Second - 1) / time.Second)
		if secs == 0 {
			secs = 1
		}
		p.MessageExpiry = &secs
	} else {
		p.MessageExpiry = nil
	}
	return p
}

// messageProps keeps the properties of an inbound PUBLISH (or will) that
// travel with the message.
func messageProps(in *packet.Properties) *packet.Properties {
	if in.PayloadFormat == nil && in.ContentType == "" && in.ResponseTopic == "" &&
		in.CorrelationData == nil && len(in.User) == 0 {
		return nil
	}
	return &packet.Properties{
		PayloadFormat:   in.PayloadFormat,
		ContentType:     in.ContentType,
		ResponseTopic:   in.ResponseTopic,
		CorrelationData: in.CorrelationData,
		User:            in.User,
	}
}

// eventMessage converts m for observers and gates.
func (m *Message) eventMessage() *event.Message {
	em := &event.Message{
		ID:       m.ID,
		Time:     m.Received,
		ClientID: m.ClientID,
		Username: m.Username,
		Topic:    m.Topic,
		Payload:  m.Payload,
		QoS:      m.QoS,
		Retain:   m.Retain,
	}
	if m.Props != nil {
		em.Props = event.Properties{
			PayloadFormat:   m.Props.PayloadFormat,
			ContentType:     m.Props.ContentType,
			ResponseTopic:   m.Props.ResponseTopic,
			CorrelationData: m.Props.CorrelationData,
		}
		for _, u := range m.Props.User {
			em.Props.User = append(em.Props.User, event.UserProperty{Key: u.Key, Value: u.Value})
		}
	}
	if !m.Expiry.IsZero() {
		secs := uint32(m.Expiry.Sub(m.Received) / time.Second)
		em.Props.MessageExpiry = &secs
	}
	return em
}

// applyEventMessage takes a gate's rewrite of a message.
func (m *Message) applyEventMessage(em *event.Message) {
	m.Topic = em.Topic
	m.Payload = append([]byte(nil), em.Payload...)
	m.QoS = em.QoS
	m.Retain = em.Retain
	p := &packet.Properties{
		PayloadFormat:   em.Props.PayloadFormat,
		ContentType:     em.Props.ContentType,
		ResponseTopic:   em.Props.ResponseTopic,
		CorrelationData: em.Props.CorrelationData,
	}
	for _, u := range em.Props.User {
		p.User = append(p.User, packet.UserProperty{Key: u.Key, Value: u.Value})
	}
	m.Props = messageProps(p)
	if em.Props.MessageExpiry != nil {
		m.Expiry = m.Received.Add(time.Duration(*em.Props.MessageExpiry) * time.Second)
	} else {
		m.Expiry = time.Time{}
	}
}
