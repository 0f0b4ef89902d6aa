// Package event carries what happens in the broker to everything that observes
// or decides on it: the Lua plugins, the datastore sinks and the scheduler's
// live windows. It is a leaf package: it imports nothing of Tide's, so those
// packages depend on it and never on core.
//
// Two mechanisms live here. Observers receive Events through a Bus, which never
// blocks the broker: each subscriber has bounded queues and a full queue drops
// (and counts) for that subscriber only. Gates (ConnectGate, SubscribeGate,
// PublishGate) are called synchronously on the client's goroutine and decide;
// they are the only extension code on the hot path.
package event

import (
	"time"
)

// Kind names what happened. Kinds are bit flags so that a subscriber can ask
// for several at once and the Bus can answer Wants with one atomic load.
type Kind uint32

// The kinds of events the broker emits.
const (
	// Connect: a client finished CONNECT and was accepted.
	Connect Kind = 1 << iota
	// Disconnect: a client's network connection ended (graceful or not).
	Disconnect
	// Subscribe: a client's subscriptions were granted.
	Subscribe
	// Unsubscribe: a client removed subscriptions.
	Unsubscribe
	// Publish: the broker accepted a message (from a client, a will, or an
	// internal publisher) and is about to route it.
	Publish
	// Deliver: a message was handed to a subscriber's connection.
	Deliver

	// All is every kind.
	All = Connect | Disconnect | Subscribe | Unsubscribe | Publish | Deliver
)

var kindNames = []string{"connect", "disconnect", "subscribe", "unsubscribe", "publish", "deliver"}

// String returns the lower-case name of a single kind, or a '|'-joined list.
func (k Kind) String() string {
	s := ""
	for i, n := range kindNames {
		if k&(1<<i) != 0 {
			if s != "" {
				s += "|"
			}
			s += n
		}
	}
	if s == "" {
		return "none"
	}
	return s
}

// Client describes a connected client as gates and observers see it.
// Observers must treat it as read-only: it is shared.
type Client struct {
	ID         string
	Username   string
	RemoteAddr string
	// Listener is the name of the listener the client came in through.
	Listener string
	// Protocol is the MQTT protocol level: 3 (3.1), 4 (3.1.1) or 5.
	Protocol   byte
	CleanStart bool
	KeepAlive  uint16
	// TLS is nil for plain connections.
	TLS *TLS
	// Attrs are attached by a ConnectGate (Lua: the attrs table returned by
	// on_connect) so that later decisions need no second look-up.
	Attrs map[string]any
}

// TLS describes the client side of a TLS connection.
type TLS struct {
	// CN is the common name of the verified client certificate, if any.
	CN string
	// SANs are the DNS names, e-mail addresses and URIs of that certificate.
	SANs []string
	// Verified reports that a client certificate was presented and verified.
	Verified bool
}

// UserProperty is an MQTT 5 user property: a key/value pair that may repeat.
type UserProperty struct {
	Key   string
	Value string
}

// Properties are the MQTT 5 properties of a message that travel with it from
// publisher to subscribers.
type Properties struct {
	// PayloadFormat is nil when absent; 1 means UTF-8 text.
	PayloadFormat *byte
	// MessageExpiry is nil when the message does not expire (seconds).
	MessageExpiry   *uint32
	ContentType     string
	ResponseTopic   string
	CorrelationData []byte
	User            []UserProperty
}

// Message is an application message as observers and gates see it.
type Message struct {
	// ID is unique per message accepted by this broker, time-ordered; sinks
	// use it to make writes idempotent.
	ID string
	// Time is when the broker received the message.
	Time     time.Time
	ClientID string
	Username string
	Topic    string
	Payload  []byte
	QoS      byte
	Retain   bool
	Props    Properties
}

// Subscription is one topic filter of a SUBSCRIBE or UNSUBSCRIBE.
type Subscription struct {
	// Filter is the topic filter as the client sent it (including any
	// $share/{group}/ prefix).
	Filter            string
	QoS               byte
	NoLocal           bool
	RetainAsPublished bool
	RetainHandling    byte
	// Identifier is the MQTT 5 subscription identifier, 0 when absent.
	Identifier uint32
}

// DisconnectInfo says how a connection ended.
type DisconnectInfo struct {
	// Graceful is true when the client sent DISCONNECT (reason 0x00 or 0x04).
	Graceful bool
	// Code is the MQTT 5 reason code of the DISCONNECT sent or received.
	Code byte
	// Reason explains the end in words (an I/O error, a keep-alive timeout,
	// a protocol error, a take-over, a server shutdown...).
	Reason string
	// WillSent reports that the will message was (or is scheduled to be) published.
	WillSent bool
}

// Event is one thing that happened. Which fields are set depends on Kind.
// Events are shared between subscribers and must not be modified.
type Event struct {
	Kind Kind
	Time time.Time
	// Client is set for every kind except broker-internal publishes.
	Client *Client
	// Message is set for Publish and Deliver.
	Message *Message
	// Subscriptions is set for Subscribe (the granted ones) and Unsubscribe.
	Subscriptions []Subscription
	// Disconnect is set for Disconnect.
	Disconnect *DisconnectInfo
}

// ClientInfo describes a connected client for the admin API and scripts: a
// snapshot, not a live view.
type ClientInfo struct {
	ID          string
	Username    string
	RemoteAddr  string
	Listener    string
	Protocol    byte // 3, 4 or 5
	CleanStart  bool
	KeepAlive   time.Duration
	ConnectedAt time.Time
	// Subscriptions are the filters as the client sent them, sorted.
	Subscriptions []string
	// QueueDepth counts the messages waiting for the client: queued in the
	// session, in flight, and written to the connection's queue.
	QueueDepth int
	Inflight   int
}
