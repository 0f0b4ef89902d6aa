// Package persist keeps the broker's own state on disk: sessions,
// subscriptions, queued and in-flight messages, inbound QoS 2 packet
// identifiers and retained messages. The core writes through a Journal,
// which groups the writes of many connections into few transactions (group
// commit) and tells when a write is durable; a Backend (bbolt today) stores
// them.
package persist

import (
	"io"
	"time"

	"github.com/tidemq/tide/core/packet"
)

// Message is a stored application message.
type Message struct {
	ID       string
	Topic    string
	Payload  []byte
	QoS      byte
	Retain   bool
	ClientID string
	Username string
	Received time.Time
	Expiry   time.Time // zero: never
	// TTL is a will's message expiry interval, applied when it is published.
	TTL   time.Duration
	Props *packet.Properties // the forwarded MQTT 5 properties, or nil
}

// Session is a stored session (only sessions that outlive their connection,
// with a non-zero expiry interval, are stored).
type Session struct {
	ID     string
	Expiry uint32 // seconds; 0xFFFFFFFF never
	// Disconnected is when the last connection ended; zero while connected
	// (after a crash, the load time stands in for it).
	Disconnected time.Time
	// Will is the will of the last connection, kept until it is published
	// or cancelled; WillDelay is its delay in seconds.
	Will      *Message
	WillDelay uint32
	// Username is the user name of the last connection (for the ACL of
	// the messages queued while offline).
	Username string
}

// Subscription is a stored subscription of a session.
type Subscription struct {
	Raw               string // the filter as sent, with any $share/{group}/
	Filter            string
	Group             string
	QoS               byte
	NoLocal           bool
	RetainAsPublished bool
	RetainHandling    byte
	ID                uint32
}

// Entry states.
const (
	Queued   byte = iota // waiting to be sent
	WaitAck              // sent as PUBLISH, waiting for PUBACK/PUBREC
	WaitComp             // PUBREL sent, waiting for PUBCOMP
)

// Entry is one message in a session's queue, in send order (Seq).
type Entry struct {
	Seq    uint64
	Msg    *Message // nil once a QoS 2 exchange reached WaitComp
	QoS    byte
	Retain bool
	SubIDs []uint32
	PID    uint16
	State  byte
}

// OpKind says what an Op does.
type OpKind byte

// The operations.
const (
	PutSession OpKind = iota + 1
	DelSession        // also deletes the session's subscriptions, queue and inbound ids
	PutSub
	DelSub
	PutEntry
	DelEntry
	PutInbound
	DelInbound
	PutRetained
	DelRetained
	// Notify writes nothing: its Then runs once the group it ends is
	// durable (a send that must wait for the group's writes).
	Notify
)

// Op is one change. Which fields are used depends on Kind.
type Op struct {
	Kind     OpKind
	Session  string // session id (all but retained)
	Sess     *Session
	Sub      *Subscription
	Raw      string // DelSub: the filter as sent
	Entry    *Entry
	Seq      uint64 // DelEntry
	PID      uint16 // Put/DelInbound
	Topic    string // Put/DelRetained
	Retained *Message
	Then     func() // Notify
}

// State is everything loaded at start-up except queue contents, which are
// read page by page (Backend.Queue) so that offline queues stay on disk.
type State struct {
	Sessions []*Session
	Subs     map[string][]*Subscription // by session id
	Inbound  map[string][]uint16        // inbound QoS 2 ids awaiting PUBREL, by session id
	// Queues tells, per session id, how many entries are stored, the first
	// sequence number and the next one to use.
	Queues   map[string]QueueInfo
	Retained []*Message
}

// QueueInfo sums up a stored queue.
type QueueInfo struct {
	Len      int
	FirstSeq uint64
	NextSeq  uint64
}

// Backend stores operations durably.
type Backend interface {
	// Apply writes ops in one atomic transaction; with sync it is on disk
	// when Apply returns.
	Apply(ops []Op, sync bool) error
	// Sync forces earlier writes to disk.
	Sync() error
	// Load reads the state at start-up.
	Load() (*State, error)
	// Queue returns up to limit entries of a session's queue with Seq >= from.
	Queue(session string, from uint64, limit int) ([]*Entry, error)
	// Backup writes a consistent copy of the store to w while running.
	Backup(w io.Writer) (int64, error)
	// Path names the store (for errors and logs).
	Path() string
	Close() error
}
