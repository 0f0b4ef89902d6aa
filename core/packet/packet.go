// Package packet encodes and decodes every MQTT control packet of protocol
// levels 3 (MQTT 3.1), 4 (3.1.1) and 5 (5.0), with strict validation: any
// malformed input is an *Error carrying the reason code the broker reports.
//
// Decoding checks what the encoding rules of the specifications make
// checkable on one packet (flags, lengths, UTF-8, duplicate properties,
// packet identifiers); rules that need connection state (topic aliases,
// receive maximum, a second CONNECT) belong to the broker.
package packet

import "fmt"

// Type is the MQTT control packet type (the high nibble of the first byte).
type Type byte

// The control packet types.
const (
	CONNECT     Type = 1
	CONNACK     Type = 2
	PUBLISH     Type = 3
	PUBACK      Type = 4
	PUBREC      Type = 5
	PUBREL      Type = 6
	PUBCOMP     Type = 7
	SUBSCRIBE   Type = 8
	SUBACK      Type = 9
	UNSUBSCRIBE Type = 10
	UNSUBACK    Type = 11
	PINGREQ     Type = 12
	PINGRESP    Type = 13
	DISCONNECT  Type = 14
	AUTH        Type = 15
)

var typeNames = [...]string{"RESERVED", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL",
	"PUBCOMP", "SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ", "PINGRESP", "DISCONNECT", "AUTH", "WILL"}

// String returns the packet type's name.
func (t Type) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return fmt.Sprintf("TYPE(%d)", byte(t))
}

// Protocol levels.
const (
	V31  byte = 3
	V311 byte = 4
	V5   byte = 5
)

// Packet is any MQTT control packet.
type Packet interface {
	// Type returns the control packet type.
	Type() Type
	// Append appends the packet's wire form for protocol level v to b.
	Append(b []byte, v byte) []byte
}

// Encode returns the wire form of p for protocol level v.
func Encode(p Packet, v byte) []byte { return p.Append(nil, v) }

// Connect is the CONNECT packet.
type Connect struct {
	// ProtocolName is "MQTT", or "MQIsdp" for MQTT 3.1.
	ProtocolName  string
	ProtocolLevel byte
	CleanStart    bool
	KeepAlive     uint16
	ClientID      string
	// UsernameFlag and PasswordFlag tell absent from empty.
	UsernameFlag bool
	Username     string
	PasswordFlag bool
	Password     []byte
	// Will is nil when the will flag is 0.
	Will  *Will
	Props Properties
}

// Will is the will message of a CONNECT.
type Will struct {
	Topic   string
	Payload []byte
	QoS     byte
	Retain  bool
	Props   Properties
}

// Connack is the CONNACK packet. For MQTT 3 the ReasonCode is mapped to a
// return code (ReasonCode.ConnackV3).
type Connack struct {
	SessionPresent bool
	ReasonCode     ReasonCode
	Props          Properties
}

// Publish is the PUBLISH packet.
type Publish struct {
	Dup      bool
	QoS      byte
	Retain   bool
	Topic    string
	PacketID uint16
	Props    Properties
	// Payload aliases the decoded packet's buffer.
	Payload []byte
}

// Ack is PUBACK, PUBREC, PUBREL or PUBCOMP: the packet identifier and, for
// MQTT 5, a reason code and properties.
type Ack struct {
	Kind       Type
	PacketID   uint16
	ReasonCode ReasonCode
	Props      Properties
}

// SubOption is one topic filter of a SUBSCRIBE with its options.
type SubOption struct {
	Filter            string
	QoS               byte
	NoLocal           bool
	RetainAsPublished bool
	RetainHandling    byte
}

// Subscribe is the SUBSCRIBE packet.
type Subscribe struct {
	PacketID uint16
	Props    Properties
	Subs     []SubOption
}

// Suback is the SUBACK packet; Codes holds one code per filter (for MQTT 3
// the granted QoS or 0x80).
type Suback struct {
	PacketID uint16
	Props    Properties
	Codes    []ReasonCode
}

// Unsubscribe is the UNSUBSCRIBE packet.
type Unsubscribe struct {
	PacketID uint16
	Props    Properties
	Filters  []string
}

// Unsuback is the UNSUBACK packet; Codes are sent for MQTT 5 only.
type Unsuback struct {
	PacketID uint16
	Props    Properties
	Codes    []ReasonCode
}

// Pingreq is the PINGREQ packet.
type Pingreq struct{}

// Pingresp is the PINGRESP packet.
type Pingresp struct{}

// Disconnect is the DISCONNECT packet (reason and properties: MQTT 5 only).
type Disconnect struct {
	ReasonCode ReasonCode
	Props      Properties
}

// Auth is the MQTT 5 AUTH packet.
type Auth struct {
	ReasonCode ReasonCode
	Props      Properties
}

// Type implements Packet.
func (*Connect) Type() Type { return CONNECT }

// Type implements Packet.
func (*Connack) Type() Type { return CONNACK }

// Type implements Packet.
func (*Publish) Type() Type { return PUBLISH }

// Type implements Packet.
func (a *Ack) Type() Type { return a.Kind }

// Type implements Packet.
func (*Subscribe) Type() Type { return SUBSCRIBE }

// Type implements Packet.
func (*Suback) Type() Type { return SUBACK }

// Type implements Packet.
func (*Unsubscribe) Type() Type { return UNSUBSCRIBE }

// Type implements Packet.
func (*Unsuback) Type() Type { return UNSUBACK }

// Type implements Packet.
func (*Pingreq) Type() Type { return PINGREQ }

// Type implements Packet.
func (*Pingresp) Type() Type { return PINGRESP }

// Type implements Packet.
func (*Disconnect) Type() Type { return DISCONNECT }

// Type implements Packet.
func (*Auth) Type() Type { return AUTH }
