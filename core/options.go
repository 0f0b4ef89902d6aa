package core

import (
	"time"
)

// QueueFullPolicy says which message a full session queue gives up.
type QueueFullPolicy string

// The queue policies.
const (
	DropNew    QueueFullPolicy = "drop_new"
	DropOldest QueueFullPolicy = "drop_oldest"
)

// Options are the broker-wide protocol settings (the [mqtt] section of the
// configuration). The zero value of a field means its default.
type Options struct {
	// SysInterval is how often $SYS topics are published; negative disables.
	SysInterval time.Duration
	// MaxPacketSize is the largest packet accepted from clients (bytes).
	MaxPacketSize int
	// MaxKeepAlive, when positive, replaces a larger or zero client keep alive.
	MaxKeepAlive time.Duration
	// ReceiveMaximum is the number of inbound QoS 1/2 messages a v5 client may
	// have unacknowledged.
	ReceiveMaximum int
	// MaxInflight is the outbound QoS 1/2 window per client.
	MaxInflight int
	// MaxQueuedMessages bounds a session's queue of messages waiting for the
	// in-flight window or for the client to come back (negative: unlimited).
	MaxQueuedMessages int
	// QueueFullPolicy applies when that queue is full.
	QueueFullPolicy QueueFullPolicy
	// MaxQueuedQoS0 bounds the QoS 0 messages waiting to be written to one
	// connected client.
	MaxQueuedQoS0 int
	// StallTimeout is how long a publisher waits for room in a connected
	// client's full queue (QoS 0 write queue, or QoS 1/2 session queue)
	// before the message is dropped for that client, counted and logged
	// (negative: never wait). This back-pressure makes a client that is
	// merely behind lose nothing; a client that makes a publisher wait in
	// vain is marked slow and costs no further waits until it catches up.
	StallTimeout time.Duration
	// QueueQoS0 queues QoS 0 messages for offline persistent sessions.
	QueueQoS0 bool
	// TopicAliasMaximum is the number of inbound topic aliases a v5 client may use.
	TopicAliasMaximum int
	// MaxSessionExpiry caps the session expiry interval (0: no cap).
	MaxSessionExpiry time.Duration
	// Feature switches, advertised to v5 clients in CONNACK. Nil means true.
	RetainAvailable, WildcardSubscriptions, SharedSubscriptions, SubscriptionIdentifiers *bool
	// AllowEmptyClientID lets clients connect with an empty client identifier
	// (3.1.1 with clean session, and 5.0) and get one assigned.
	AllowEmptyClientID *bool
	// MaxClientIDLength bounds client identifiers.
	MaxClientIDLength int
	// ConnectTimeout is how long a new connection may take to send CONNECT.
	ConnectTimeout time.Duration
	// WriteTimeout is how long a write to a client may block before the
	// client is considered dead.
	WriteTimeout time.Duration
	// Version is reported in $SYS/broker/version.
	Version string
}

func (o Options) withDefaults() Options {
	if o.SysInterval == 0 {
		o.SysInterval = 10 * time.Second
	}
	if o.MaxPacketSize <= 0 {
		o.MaxPacketSize = 1 << 20
	}
	if o.ReceiveMaximum <= 0 || o.ReceiveMaximum > 65535 {
		o.ReceiveMaximum = 1024
	}
	if o.MaxInflight <= 0 || o.MaxInflight > 65535 {
		o.MaxInflight = 64
	}
	if o.MaxQueuedMessages == 0 {
		o.MaxQueuedMessages = 1000
	}
	if o.QueueFullPolicy == "" {
		o.QueueFullPolicy = DropNew
	}
	if o.StallTimeout == 0 {
		o.StallTimeout = 100 * time.Millisecond
	}
	if o.MaxQueuedQoS0 <= 0 {
		o.MaxQueuedQoS0 = 10000
	}
	if o.TopicAliasMaximum < 0 {
		o.TopicAliasMaximum = 0
	} else if o.TopicAliasMaximum > 65535 {
		o.TopicAliasMaximum = 65535
	}
	if o.MaxClientIDLength <= 0 {
		o.MaxClientIDLength = 65535
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 10 * time.Second
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 30 * time.Second
	}
	if o.Version == "" {
		o.Version = "tide"
	}
	return o
}

func on(b *bool) bool { return b == nil || *b }

// ListenerOptions are the per-listener settings the core applies to the
// connections a listener accepts.
type ListenerOptions struct {
	// Name identifies the listener in logs, events and metrics.
	Name string
	// AllowAnonymous lets clients without a user name connect when no
	// authenticator answers.
	AllowAnonymous bool
	// MaxConnections bounds concurrent connections (0: unlimited).
	MaxConnections int
	// UsernameFrom, for TLS listeners, takes the user name that auth sees
	// from the client certificate: "cn" or "san" ("" keeps the CONNECT's).
	UsernameFrom string
}
