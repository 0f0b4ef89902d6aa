package core

import (
	"sort"
	"strings"
	"time"

	"github.com/tidemq/tide/core/event"
	"github.com/tidemq/tide/core/packet"
)

// ClientInfo describes a connected client for the admin API and scripts.
type ClientInfo = event.ClientInfo

func (c *client) describe() ClientInfo {
	ci := ClientInfo{
		ID:          c.id,
		Username:    c.info.Username,
		RemoteAddr:  c.info.RemoteAddr,
		Listener:    c.info.Listener,
		Protocol:    c.version,
		CleanStart:  c.cleanStart,
		KeepAlive:   c.keepAlive,
		ConnectedAt: c.connectedAt,
	}
	ss := c.sess
	ss.mu.Lock()
	for f := range ss.subs {
		ci.Subscriptions = append(ci.Subscriptions, f)
	}
	ci.Inflight = len(ss.inflight)
	ci.QueueDepth = ss.pendingLen() + len(ss.inflight)
	ss.mu.Unlock()
	ci.QueueDepth += c.out.len()
	sort.Strings(ci.Subscriptions)
	return ci
}

// connectedClient returns the live connection of a client id.
func (s *Server) connectedClient(id string) *client {
	v, ok := s.sessions.Load(id)
	if !ok {
		return nil
	}
	ss := v.(*session)
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.conn
}

// Clients lists the connected clients, sorted by id.
func (s *Server) Clients() []ClientInfo {
	s.clientsMu.Lock()
	cl := make([]*client, 0, len(s.clients))
	for c := range s.clients {
		if c.connected.Load() && c.sess.online.Load() {
			cl = append(cl, c)
		}
	}
	s.clientsMu.Unlock()
	out := make([]ClientInfo, 0, len(cl))
	for _, c := range cl {
		out = append(out, c.describe())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Client describes one connected client.
func (s *Server) Client(id string) (ClientInfo, bool) {
	c := s.connectedClient(id)
	if c == nil {
		return ClientInfo{}, false
	}
	return c.describe(), true
}

// DisconnectClient closes a client's connection as an administrative action
// (MQTT 5 clients get DISCONNECT 0x98). The will is published: the client did
// not disconnect by itself. It returns false if the client is not connected.
func (s *Server) DisconnectClient(id, reason string) bool {
	c := s.connectedClient(id)
	if c == nil {
		return false
	}
	if reason == "" {
		reason = "disconnected by the administrator"
	}
	c.kick(packet.AdministrativeAction, reason)
	<-c.done
	return true
}

// Retained returns the retained message of a topic.
func (s *Server) Retained(topicName string) (Message, bool) {
	m, ok := s.retained.Get(topicName)
	if !ok || m.expired(time.Now()) {
		return Message{}, false
	}
	return *m, true
}

// RetainedMatch returns up to limit retained messages matching filter (0:
// no limit), sorted by topic. $-topics are matched only by filters that
// start with $ (the $ rule).
func (s *Server) RetainedMatch(filter string, limit int) []Message {
	now := time.Now()
	var out []Message
	s.retained.Match(filter, func(_ string, m *Message) bool {
		if !m.expired(now) {
			out = append(out, *m)
		}
		return true
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Topic < out[j].Topic })
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}

// DeleteRetained removes a topic's retained message.
func (s *Server) DeleteRetained(topicName string) bool {
	if strings.ContainsAny(topicName, "+#") {
		return false
	}
	return s.retained.Delete(topicName)
}

// PublishEvent publishes a message described as an event.Message (by a
// script or an API): topic, payload, QoS, retain flag and properties, with
// the message expiry counted from now.
func (s *Server) PublishEvent(em event.Message) (int, error) {
	m := Message{Received: time.Now()}
	m.applyEventMessage(&em)
	return s.Publish(m)
}

// RetainedMatchEvents is RetainedMatch with the messages as the event
// package describes them (for scripts).
func (s *Server) RetainedMatchEvents(filter string, limit int) []event.Message {
	ms := s.RetainedMatch(filter, limit)
	out := make([]event.Message, 0, len(ms))
	for i := range ms {
		out = append(out, *ms[i].eventMessage())
	}
	return out
}

// RetainedEvent returns a topic's retained message as an event.Message,
// its expiry interval counted down to now.
func (s *Server) RetainedEvent(topicName string) (event.Message, bool) {
	m, ok := s.retained.Get(topicName)
	now := time.Now()
	if !ok || m.expired(now) {
		return event.Message{}, false
	}
	em := *m.eventMessage()
	if !m.Expiry.IsZero() {
		left := uint32(m.Expiry.Sub(now) / time.Second)
		em.Props.MessageExpiry = &left
	}
	return em, true
}
