package plugins

import (
	"time"

	"github.com/tidemq/tide/core"
	"github.com/tidemq/tide/core/event"
	"github.com/tidemq/tide/core/packet"
)

// serverBroker adapts *core.Server to Broker. cmd/tide uses the same
// adapter: the plugins package may not import core, whose methods take and
// return core types.
type serverBroker struct{ s *core.Server }

var _ Broker = serverBroker{}

func (b serverBroker) Publish(m event.Message) error {
	cm := core.Message{Topic: m.Topic, Payload: m.Payload, QoS: m.QoS, Retain: m.Retain}
	p := m.Props
	if p.PayloadFormat != nil || p.ContentType != "" || p.ResponseTopic != "" || p.CorrelationData != nil || len(p.User) > 0 {
		cm.Props = &packet.Properties{PayloadFormat: p.PayloadFormat, ContentType: p.ContentType,
			ResponseTopic: p.ResponseTopic, CorrelationData: p.CorrelationData}
		for _, u := range p.User {
			cm.Props.User = append(cm.Props.User, packet.UserProperty{Key: u.Key, Value: u.Value})
		}
	}
	if p.MessageExpiry != nil {
		cm.Received = time.Now()
		cm.Expiry = cm.Received.Add(time.Duration(*p.MessageExpiry) * time.Second)
	}
	_, err := b.s.Publish(cm)
	return err
}

func (b serverBroker) Retained(topic string) (event.Message, bool) {
	m, ok := b.s.Retained(topic)
	if !ok {
		return event.Message{}, false
	}
	em := event.Message{ID: m.ID, Time: m.Received, ClientID: m.ClientID, Username: m.Username,
		Topic: m.Topic, Payload: m.Payload, QoS: m.QoS, Retain: true}
	if p := m.Props; p != nil {
		em.Props = event.Properties{PayloadFormat: p.PayloadFormat, ContentType: p.ContentType,
			ResponseTopic: p.ResponseTopic, CorrelationData: p.CorrelationData}
		for _, u := range p.User {
			em.Props.User = append(em.Props.User, event.UserProperty{Key: u.Key, Value: u.Value})
		}
	}
	if !m.Expiry.IsZero() {
		left := uint32(max(time.Until(m.Expiry), 0) / time.Second)
		em.Props.MessageExpiry = &left
	}
	return em, true
}

func (b serverBroker) Client(id string) (ClientInfo, bool) {
	c, ok := b.s.Client(id)
	if !ok {
		return ClientInfo{}, false
	}
	return ClientInfo(c), true
}

func (b serverBroker) Disconnect(id, reason string) bool { return b.s.DisconnectClient(id, reason) }
