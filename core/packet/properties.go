package packet

// Property identifiers of MQTT 5.0 section 2.2.2.2.
const (
	propPayloadFormat       = 0x01
	propMessageExpiry       = 0x02
	propContentType         = 0x03
	propResponseTopic       = 0x08
	propCorrelationData     = 0x09
	propSubscriptionID      = 0x0B
	propSessionExpiry       = 0x11
	propAssignedClientID    = 0x12
	propServerKeepAlive     = 0x13
	propAuthMethod          = 0x15
	propAuthData            = 0x16
	propRequestProblemInfo  = 0x17
	propWillDelay           = 0x18
	propRequestResponseInfo = 0x19
	propResponseInfo        = 0x1A
	propServerReference     = 0x1C
	propReasonString        = 0x1F
	propReceiveMaximum      = 0x21
	propTopicAliasMaximum   = 0x22
	propTopicAlias          = 0x23
	propMaximumQoS          = 0x24
	propRetainAvailable     = 0x25
	propUserProperty        = 0x26
	propMaximumPacketSize   = 0x27
	propWildcardSubAvail    = 0x28
	propSubIDAvail          = 0x29
	propSharedSubAvail      = 0x2A
)

// UserProperty is a name/value pair; the same name may appear more than once
// and order is preserved [MQTT-3.3.2-18].
type UserProperty struct {
	Key   string
	Value string
}

// Properties holds the MQTT 5 properties of any packet. Numeric properties are
// pointers so that absence is distinct from zero; string properties are
// absent when empty; binary properties are absent when nil.
type Properties struct {
	PayloadFormat        *byte
	MessageExpiry        *uint32
	ContentType          string
	ResponseTopic        string
	CorrelationData      []byte
	SubscriptionIDs      []uint32
	SessionExpiry        *uint32
	AssignedClientID     string
	ServerKeepAlive      *uint16
	AuthMethod           string
	AuthData             []byte
	RequestProblemInfo   *byte
	WillDelay            *uint32
	RequestResponseInfo  *byte
	ResponseInfo         string
	ServerReference      string
	ReasonString         string
	ReceiveMaximum       *uint16
	TopicAliasMaximum    *uint16
	TopicAlias           *uint16
	MaximumQoS           *byte
	RetainAvailable      *byte
	User                 []UserProperty
	MaximumPacketSize    *uint32
	WildcardSubAvailable *byte
	SubIDAvailable       *byte
	SharedSubAvailable   *byte
}

// Ptr returns a pointer to v, for setting numeric properties.
func Ptr[T any](v T) *T { return &v }

// where a property may appear; will is a pseudo packet type for will properties.
const willProps Type = 16

var propAllowed = [0x2B]uint32{
	propPayloadFormat:       bit(PUBLISH, willProps),
	propMessageExpiry:       bit(PUBLISH, willProps),
	propContentType:         bit(PUBLISH, willProps),
	propResponseTopic:       bit(PUBLISH, willProps),
	propCorrelationData:     bit(PUBLISH, willProps),
	propSubscriptionID:      bit(PUBLISH, SUBSCRIBE),
	propSessionExpiry:       bit(CONNECT, CONNACK, DISCONNECT),
	propAssignedClientID:    bit(CONNACK),
	propServerKeepAlive:     bit(CONNACK),
	propAuthMethod:          bit(CONNECT, CONNACK, AUTH),
	propAuthData:            bit(CONNECT, CONNACK, AUTH),
	propRequestProblemInfo:  bit(CONNECT),
	propWillDelay:           bit(willProps),
	propRequestResponseInfo: bit(CONNECT),
	propResponseInfo:        bit(CONNACK),
	propServerReference:     bit(CONNACK, DISCONNECT),
	propReasonString:        bit(CONNACK, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK, DISCONNECT, AUTH),
	propReceiveMaximum:      bit(CONNECT, CONNACK),
	propTopicAliasMaximum:   bit(CONNECT, CONNACK),
	propTopicAlias:          bit(PUBLISH),
	propMaximumQoS:          bit(CONNACK),
	propRetainAvailable:     bit(CONNACK),
	propUserProperty:        bit(CONNECT, CONNACK, PUBLISH, willProps, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, DISCONNECT, AUTH),
	propMaximumPacketSize:   bit(CONNECT, CONNACK),
	propWildcardSubAvail:    bit(CONNACK),
	propSubIDAvail:          bit(CONNACK),
	propSharedSubAvail:      bit(CONNACK),
}

func bit(ts ...Type) uint32 {
	var m uint32
	for _, t := range ts {
		m |= 1 << t
	}
	return m
}

// decodeProperties reads a property length and the properties that follow,
// for a packet of type t (or willProps).
func (d *decoder) properties(t Type, p *Properties) {
	n := int(d.varint("property length"))
	if d.err != nil {
		return
	}
	if n > d.remaining() {
		d.fail(MalformedPacket, "property length %d exceeds packet", n)
		return
	}
	end := d.i + n
	var seen uint64 // bit per identifier (all are < 64)
	sub := decoder{b: d.b[:end], i: d.i}
	for sub.err == nil && sub.i < end {
		id := sub.varint("property identifier")
		if sub.err != nil {
			break
		}
		var allowed uint32
		if id < uint32(len(propAllowed)) {
			allowed = propAllowed[id]
		}
		if allowed == 0 {
			sub.fail(MalformedPacket, "unknown property identifier 0x%02X", id)
			break
		}
		if allowed&(1<<t) == 0 {
			// An identifier not valid for its packet type is a malformed packet (2.2.2.2).
			sub.fail(MalformedPacket, "property 0x%02X not allowed in %s", id, t)
			break
		}
		if id != propUserProperty && !(id == propSubscriptionID && t == PUBLISH) {
			if seen&(1<<id) != 0 {
				sub.fail(ProtocolError, "property 0x%02X included more than once", id)
				break
			}
			seen |= 1 << id
		}
		sub.property(byte(id), p)
	}
	if sub.err != nil {
		d.err = sub.err
		return
	}
	d.i = end
}

func (d *decoder) boolByte(what string) *byte {
	v := d.byte(what)
	if d.err == nil && v > 1 {
		d.fail(ProtocolError, "%s must be 0 or 1, got %d", what, v)
	}
	return &v
}

func (d *decoder) property(id byte, p *Properties) {
	switch id {
	case propPayloadFormat:
		p.PayloadFormat = d.boolByte("payload format indicator")
	case propMessageExpiry:
		v := d.uint32("message expiry interval")
		p.MessageExpiry = &v
	case propContentType:
		p.ContentType = d.string("content type")
	case propResponseTopic:
		p.ResponseTopic = d.string("response topic")
		if d.err == nil && p.ResponseTopic == "" {
			d.fail(ProtocolError, "empty response topic")
		}
	case propCorrelationData:
		p.CorrelationData = append([]byte{}, d.binary("correlation data")...)
	case propSubscriptionID:
		v := d.varint("subscription identifier")
		if d.err == nil && v == 0 {
			d.fail(ProtocolError, "subscription identifier 0") // [MQTT-3.8.2.1.2]
		}
		p.SubscriptionIDs = append(p.SubscriptionIDs, v)
	case propSessionExpiry:
		v := d.uint32("session expiry interval")
		p.SessionExpiry = &v
	case propAssignedClientID:
		p.AssignedClientID = d.string("assigned client identifier")
	case propServerKeepAlive:
		v := d.uint16("server keep alive")
		p.ServerKeepAlive = &v
	case propAuthMethod:
		p.AuthMethod = d.string("authentication method")
	case propAuthData:
		p.AuthData = append([]byte{}, d.binary("authentication data")...)
	case propRequestProblemInfo:
		p.RequestProblemInfo = d.boolByte("request problem information")
	case propWillDelay:
		v := d.uint32("will delay interval")
		p.WillDelay = &v
	case propRequestResponseInfo:
		p.RequestResponseInfo = d.boolByte("request response information")
	case propResponseInfo:
		p.ResponseInfo = d.string("response information")
	case propServerReference:
		p.ServerReference = d.string("server reference")
	case propReasonString:
		p.ReasonString = d.string("reason string")
	case propReceiveMaximum:
		v := d.uint16("receive maximum")
		if d.err == nil && v == 0 {
			d.fail(ProtocolError, "receive maximum 0") // [MQTT-3.1.2.11.3]
		}
		p.ReceiveMaximum = &v
	case propTopicAliasMaximum:
		v := d.uint16("topic alias maximum")
		p.TopicAliasMaximum = &v
	case propTopicAlias:
		v := d.uint16("topic alias")
		p.TopicAlias = &v
	case propMaximumQoS:
		p.MaximumQoS = d.boolByte("maximum QoS")
	case propRetainAvailable:
		p.RetainAvailable = d.boolByte("retain available")
	case propUserProperty:
		k := d.string("user property name")
		v := d.string("user property value")
		p.User = append(p.User, UserProperty{Key: k, Value: v})
	case propMaximumPacketSize:
		v := d.uint32("maximum packet size")
		if d.err == nil && v == 0 {
			d.fail(ProtocolError, "maximum packet size 0") // [MQTT-3.1.2.11.4]
		}
		p.MaximumPacketSize = &v
	case propWildcardSubAvail:
		p.WildcardSubAvailable = d.boolByte("wildcard subscription available")
	case propSubIDAvail:
		p.SubIDAvailable = d.boolByte("subscription identifier available")
	case propSharedSubAvail:
		p.SharedSubAvailable = d.boolByte("shared subscription available")
	}
}

// appendProperties appends the property length and the properties. Only
// properties valid for type t are written, so a caller can reuse a
// Properties value across packet types without producing malformed packets.
func (p *Properties) appendTo(b []byte, t Type) []byte {
	if p == nil {
		return append(b, 0)
	}
	n := p.size(t)
	b = appendVarint(b, n)
	ok := func(id byte) bool { return propAllowed[id]&(1<<t) != 0 }
	if p.PayloadFormat != nil && ok(propPayloadFormat) {
		b = append(b, propPayloadFormat, *p.PayloadFormat)
	}
	if p.MessageExpiry != nil && ok(propMessageExpiry) {
		b = appendUint32(append(b, propMessageExpiry), *p.MessageExpiry)
	}
	if p.ContentType != "" && ok(propContentType) {
		b = appendString(append(b, propContentType), p.ContentType)
	}
	if p.ResponseTopic != "" && ok(propResponseTopic) {
		b = appendString(append(b, propResponseTopic), p.ResponseTopic)
	}
	if p.CorrelationData != nil && ok(propCorrelationData) {
		b = appendBinary(append(b, propCorrelationData), p.CorrelationData)
	}
	if ok(propSubscriptionID) {
		for _, id := range p.SubscriptionIDs {
			b = appendVarint(append(b, propSubscriptionID), int(id))
			if t == SUBSCRIBE {
				break
			}
		}
	}
	if p.SessionExpiry != nil && ok(propSessionExpiry) {
		b = appendUint32(append(b, propSessionExpiry), *p.SessionExpiry)
	}
	if p.AssignedClientID != "" && ok(propAssignedClientID) {
		b = appendString(append(b, propAssignedClientID), p.AssignedClientID)
	}
	if p.ServerKeepAlive != nil && ok(propServerKeepAlive) {
		b = appendUint16(append(b, propServerKeepAlive), *p.ServerKeepAlive)
	}
	if p.AuthMethod != "" && ok(propAuthMethod) {
		b = appendString(append(b, propAuthMethod), p.AuthMethod)
	}
	if p.AuthData != nil && ok(propAuthData) {
		b = appendBinary(append(b, propAuthData), p.AuthData)
	}
	if p.RequestProblemInfo != nil && ok(propRequestProblemInfo) {
		b = append(b, propRequestProblemInfo, *p.RequestProblemInfo)
	}
	if p.WillDelay != nil && ok(propWillDelay) {
		b = appendUint32(append(b, propWillDelay), *p.WillDelay)
	}
	if p.RequestResponseInfo != nil && ok(propRequestResponseInfo) {
		b = append(b, propRequestResponseInfo, *p.RequestResponseInfo)
	}
	if p.ResponseInfo != "" && ok(propResponseInfo) {
		b = appendString(append(b, propResponseInfo), p.ResponseInfo)
	}
	if p.ServerReference != "" && ok(propServerReference) {
		b = appendString(append(b, propServerReference), p.ServerReference)
	}
	if p.ReasonString != "" && ok(propReasonString) {
		b = appendString(append(b, propReasonString), p.ReasonString)
	}
	if p.ReceiveMaximum != nil && ok(propReceiveMaximum) {
		b = appendUint16(append(b, propReceiveMaximum), *p.ReceiveMaximum)
	}
	if p.TopicAliasMaximum != nil && ok(propTopicAliasMaximum) {
		b = appendUint16(append(b, propTopicAliasMaximum), *p.TopicAliasMaximum)
	}
	if p.TopicAlias != nil && ok(propTopicAlias) {
		b = appendUint16(append(b, propTopicAlias), *p.TopicAlias)
	}
	if p.MaximumQoS != nil && ok(propMaximumQoS) {
		b = append(b, propMaximumQoS, *p.MaximumQoS)
	}
	if p.RetainAvailable != nil && ok(propRetainAvailable) {
		b = append(b, propRetainAvailable, *p.RetainAvailable)
	}
	if ok(propUserProperty) {
		for _, u := range p.User {
			b = appendString(appendString(append(b, propUserProperty), u.Key), u.Value)
		}
	}
	if p.MaximumPacketSize != nil && ok(propMaximumPacketSize) {
		b = appendUint32(append(b, propMaximumPacketSize), *p.MaximumPacketSize)
	}
	if p.WildcardSubAvailable != nil && ok(propWildcardSubAvail) {
		b = append(b, propWildcardSubAvail, *p.WildcardSubAvailable)
	}
	if p.SubIDAvailable != nil && ok(propSubIDAvail) {
		b = append(b, propSubIDAvail, *p.SubIDAvailable)
	}
	if p.SharedSubAvailable != nil && ok(propSharedSubAvail) {
		b = append(b, propSharedSubAvail, *p.SharedSubAvailable)
	}
	return b
}

// size returns the encoded length of the properties valid for t, without
// the property length field itself.
func (p *Properties) size(t Type) int {
	if p == nil {
		return 0
	}
	ok := func(id byte) bool { return propAllowed[id]&(1<<t) != 0 }
	n := 0
	if p.PayloadFormat != nil && ok(propPayloadFormat) {
		n += 2
	}
	if p.MessageExpiry != nil && ok(propMessageExpiry) {
		n += 5
	}
	if p.ContentType != "" && ok(propContentType) {
		n += 3 + len(p.ContentType)
	}
	if p.ResponseTopic != "" && ok(propResponseTopic) {
		n += 3 + len(p.ResponseTopic)
	}
	if p.CorrelationData != nil && ok(propCorrelationData) {
		n += 3 + len(p.CorrelationData)
	}
	if ok(propSubscriptionID) {
		for _, id := range p.SubscriptionIDs {
			n += 1 + varintLen(int(id))
			if t == SUBSCRIBE {
				break
			}
		}
	}
	if p.SessionExpiry != nil && ok(propSessionExpiry) {
		n += 5
	}
	if p.AssignedClientID != "" && ok(propAssignedClientID) {
		n += 3 + len(p.AssignedClientID)
	}
	if p.ServerKeepAlive != nil && ok(propServerKeepAlive) {
		n += 3
	}
	if p.AuthMethod != "" && ok(propAuthMethod) {
		n += 3 + len(p.AuthMethod)
	}
	if p.AuthData != nil && ok(propAuthData) {
		n += 3 + len(p.AuthData)
	}
	if p.RequestProblemInfo != nil && ok(propRequestProblemInfo) {
		n += 2
	}
	if p.WillDelay != nil && ok(propWillDelay) {
		n += 5
	}
	if p.RequestResponseInfo != nil && ok(propRequestResponseInfo) {
		n += 2
	}
	if p.ResponseInfo != "" && ok(propResponseInfo) {
		n += 3 + len(p.ResponseInfo)
	}
	if p.ServerReference != "" && ok(propServerReference) {
		n += 3 + len(p.ServerReference)
	}
	if p.ReasonString != "" && ok(propReasonString) {
		n += 3 + len(p.ReasonString)
	}
	if p.ReceiveMaximum != nil && ok(propReceiveMaximum) {
		n += 3
	}
	if p.TopicAliasMaximum != nil && ok(propTopicAliasMaximum) {
		n += 3
	}
	if p.TopicAlias != nil && ok(propTopicAlias) {
		n += 3
	}
	if p.MaximumQoS != nil && ok(propMaximumQoS) {
		n += 2
	}
	if p.RetainAvailable != nil && ok(propRetainAvailable) {
		n += 2
	}
	if ok(propUserProperty) {
		for _, u := range p.User {
			n += 5 + len(u.Key) + len(u.Value)
		}
	}
	if p.MaximumPacketSize != nil && ok(propMaximumPacketSize) {
		n += 5
	}
	if p.WildcardSubAvailable != nil && ok(propWildcardSubAvail) {
		n += 2
	}
	if p.SubIDAvailable != nil && ok(propSubIDAvail) {
		n += 2
	}
	if p.SharedSubAvailable != nil && ok(propSharedSubAvail) {
		n += 2
	}
	return n
}

// encodedSize returns the size of the property length field plus properties.
func (p *Properties) encodedSize(t Type) int {
	n := p.size(t)
	return varintLen(n) + n
}
