package event

import "context"

// Verdict is a gate's answer.
type Verdict int8

// The answers a gate can give.
const (
	// Pass leaves the decision to the next gate, and finally to the
	// listener's default.
	Pass Verdict = iota
	// Allow accepts.
	Allow
	// Deny refuses: a refused CONNECT gets CONNACK "not authorized", a
	// refused SUBSCRIBE the failure code, a refused PUBLISH is not routed
	// (MQTT 5 clients get PUBACK/PUBREC 0x87).
	Deny
	// Drop (publish only) silently discards the message: the publisher is
	// acknowledged with success, nobody receives it.
	Drop
)

// String returns the verdict's name.
func (v Verdict) String() string {
	switch v {
	case Pass:
		return "pass"
	case Allow:
		return "allow"
	case Deny:
		return "deny"
	case Drop:
		return "drop"
	}
	return "unknown"
}

// ConnectRequest is what a ConnectGate sees of a CONNECT. The gate may read
// everything; Client.Attrs is attached from the decision by the broker.
type ConnectRequest struct {
	Client   *Client
	Password []byte
	// HasPassword distinguishes an absent password from an empty one.
	HasPassword bool
	// UserProperties are the MQTT 5 user properties of the CONNECT.
	UserProperties []UserProperty
	// AuthMethod is the MQTT 5 authentication method, if any.
	AuthMethod string
}

// ConnectDecision answers a ConnectRequest.
type ConnectDecision struct {
	Verdict Verdict
	// Reason is logged, and sent to MQTT 5 clients as the reason string.
	Reason string
	// Code is the MQTT 5 CONNACK reason code to use on Deny (0: the broker
	// chooses 0x87 not authorized, or 0x86 bad user name or password).
	Code byte
	// Username, when non-nil, replaces the client's user name.
	Username *string
	// Attrs are attached to the client (Client.Attrs) for later gates.
	Attrs map[string]any
}

// SubscribeDecision answers one subscription of a SUBSCRIBE.
type SubscribeDecision struct {
	Verdict Verdict
	// QoS, when Verdict is Allow and QoS is lower than requested, is granted
	// instead of the requested QoS. Values above the request are ignored.
	QoS    byte
	HasQoS bool
	Reason string
}

// PublishDecision answers a PUBLISH.
type PublishDecision struct {
	Verdict Verdict
	Reason  string
	// Message, when non-nil with Verdict Allow, replaces the message: its
	// topic, payload, QoS, retain flag and properties are used instead.
	Message *Message
}

// ConnectGate decides whether a client may connect. It runs on the client's
// goroutine: it must honour ctx's deadline.
type ConnectGate interface {
	OnConnect(ctx context.Context, req *ConnectRequest) ConnectDecision
}

// SubscribeGate decides whether a client may subscribe to a filter.
type SubscribeGate interface {
	OnSubscribe(ctx context.Context, c *Client, s *Subscription) SubscribeDecision
}

// PublishGate decides whether a client's message may be routed, and may
// rewrite it. The message's Payload may alias a buffer that is reused after
// the call returns: a gate that keeps it must copy it.
type PublishGate interface {
	OnPublish(ctx context.Context, c *Client, m *Message) PublishDecision
}

// AuthRequest is one step of MQTT 5 enhanced authentication: the CONNECT
// that names an authentication method, each AUTH the client answers a
// challenge with, and a re-authentication (AUTH 0x19) while connected.
type AuthRequest struct {
	// Connect is the CONNECT as a ConnectRequest; its Client is the
	// connection's (read-only while re-authenticating).
	Connect *ConnectRequest
	// Method is the authentication method, the same at every step.
	Method string
	// Data is the client's authentication data of this step (nil if none).
	Data []byte
	// Step counts the client's packets of this exchange, from 1 (the
	// CONNECT, or the AUTH 0x19 that starts a re-authentication).
	Step int
	// State is what the gate returned with the previous step's Continue
	// (nil at step 1).
	State any
	// Reauth is set while a connected client re-authenticates.
	Reauth bool
}

// AuthDecision answers an AuthRequest.
type AuthDecision struct {
	// Verdict is Allow (authenticated), Deny (refused: CONNACK, or
	// DISCONNECT when re-authenticating), or Pass when the method is not
	// the gate's: the client is refused with 0x8C bad authentication
	// method. Continue overrides it.
	Verdict Verdict
	// Continue sends Data to the client in an AUTH 0x18 and waits for its
	// answer, which comes back as the next step with State.
	Continue bool
	// Data is the server's authentication data: the challenge with
	// Continue, else sent with the CONNACK (or the AUTH 0x00 of a
	// re-authentication) on Allow.
	Data  []byte
	State any
	// Reason and Code as in ConnectDecision (Code 0: 0x87 not authorized).
	Reason string
	Code   byte
	// Username and Attrs as in ConnectDecision; ignored when
	// re-authenticating.
	Username *string
	Attrs    map[string]any
}

// AuthGate carries out MQTT 5 enhanced authentication. A ConnectGate that
// also implements AuthGate is asked instead of OnConnect when a client's
// CONNECT names an authentication method; without one such clients are
// refused with 0x8C bad authentication method. It runs on the client's
// goroutine: it must honour ctx's deadline.
type AuthGate interface {
	OnAuth(ctx context.Context, req *AuthRequest) AuthDecision
}
