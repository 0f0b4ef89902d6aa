package packet

// Append implements Packet. The protocol level written is c.ProtocolLevel,
// or v when that is zero; the protocol name defaults to the level's.
func (c *Connect) Append(b []byte, v byte) []byte {
	level := c.ProtocolLevel
	if level == 0 {
		level = v
	}
	name := c.ProtocolName
	if name == "" {
		name = "MQTT"
		if level == V31 {
			name = "MQIsdp"
		}
	}
	b, start := reserve(b)
	b = appendString(b, name)
	var flags byte
	if c.UsernameFlag {
		flags |= 0x80
	}
	if c.PasswordFlag {
		flags |= 0x40
	}
	if c.Will != nil {
		flags |= 0x04 | c.Will.QoS<<3
		if c.Will.Retain {
			flags |= 0x20
		}
	}
	if c.CleanStart {
		flags |= 0x02
	}
	b = append(b, level, flags)
	b = appendUint16(b, c.KeepAlive)
	if level == V5 {
		b = c.Props.appendTo(b, CONNECT)
	}
	b = appendString(b, c.ClientID)
	if c.Will != nil {
		if level == V5 {
			b = c.Will.Props.appendTo(b, willProps)
		}
		b = appendString(b, c.Will.Topic)
		b = appendBinary(b, c.Will.Payload)
	}
	if c.UsernameFlag {
		b = appendString(b, c.Username)
	}
	if c.PasswordFlag {
		b = appendBinary(b, c.Password)
	}
	return frame(b, start, byte(CONNECT)<<4)
}

// Append implements Packet.
func (c *Connack) Append(b []byte, v byte) []byte {
	var flags byte
	if c.SessionPresent && v != V31 {
		flags = 1
	}
	if v != V5 {
		return append(b, byte(CONNACK)<<4, 2, flags, c.ReasonCode.ConnackV3())
	}
	b, start := reserve(b)
	b = append(b, flags, byte(c.ReasonCode))
	b = c.Props.appendTo(b, CONNACK)
	return frame(b, start, byte(CONNACK)<<4)
}

// Header returns the first byte of the packet: type and flags.
func (p *Publish) Header() byte {
	h := byte(PUBLISH)<<4 | p.QoS<<1
	if p.Dup {
		h |= 0x08
	}
	if p.Retain {
		h |= 0x01
	}
	return h
}

// Append implements Packet.
func (p *Publish) Append(b []byte, v byte) []byte {
	n := 2 + len(p.Topic) + len(p.Payload)
	if p.QoS > 0 {
		n += 2
	}
	if v == V5 {
		n += p.Props.encodedSize(PUBLISH)
	}
	b = append(b, p.Header())
	b = appendVarint(b, n)
	b = appendString(b, p.Topic)
	if p.QoS > 0 {
		b = appendUint16(b, p.PacketID)
	}
	if v == V5 {
		b = p.Props.appendTo(b, PUBLISH)
	}
	return append(b, p.Payload...)
}

// Size returns the encoded length of the packet for protocol level v.
func (p *Publish) Size(v byte) int {
	n := 2 + len(p.Topic) + len(p.Payload)
	if p.QoS > 0 {
		n += 2
	}
	if v == V5 {
		n += p.Props.encodedSize(PUBLISH)
	}
	return 1 + varintLen(n) + n
}

// PacketIDOffset returns where the packet identifier of an encoded QoS 1 or
// 2 PUBLISH starts, so a broker can encode a message once and patch the
// identifier for each subscriber. It returns -1 for QoS 0 or a short buffer.
func PacketIDOffset(encoded []byte) int {
	if len(encoded) < 2 || (encoded[0]>>1)&3 == 0 {
		return -1
	}
	_, n, err := decodeVarint(encoded[1:])
	if err != nil {
		return -1
	}
	i := 1 + n
	if i+2 > len(encoded) {
		return -1
	}
	i += 2 + (int(encoded[i])<<8 | int(encoded[i+1]))
	if i+2 > len(encoded) {
		return -1
	}
	return i
}

// Append implements Packet.
func (a *Ack) Append(b []byte, v byte) []byte {
	h := byte(a.Kind) << 4
	if a.Kind == PUBREL {
		h |= 0x02 // [MQTT-3.6.1-1]
	}
	if v != V5 {
		return append(b, h, 2, byte(a.PacketID>>8), byte(a.PacketID))
	}
	ps := a.Props.size(a.Kind)
	switch {
	case a.ReasonCode == Success && ps == 0:
		return append(b, h, 2, byte(a.PacketID>>8), byte(a.PacketID))
	case ps == 0:
		return append(b, h, 3, byte(a.PacketID>>8), byte(a.PacketID), byte(a.ReasonCode))
	}
	b, start := reserve(b)
	b = appendUint16(b, a.PacketID)
	b = append(b, byte(a.ReasonCode))
	b = a.Props.appendTo(b, a.Kind)
	return frame(b, start, h)
}

// AppendAck appends a PUBACK, PUBREC, PUBREL or PUBCOMP for packet pid
// with reason code code and, for MQTT 5, an optional reason string, and no
// other properties: what a broker sends once per QoS 1 or 2 message. It
// builds no Ack, whose properties would make every caller's stack frame
// several hundred bytes larger.
func AppendAck(b []byte, kind Type, pid uint16, code ReasonCode, reason string, v byte) []byte {
	h := byte(kind) << 4
	if kind == PUBREL {
		h |= 0x02 // [MQTT-3.6.1-1]
	}
	switch {
	case v != V5 || (code == Success && reason == ""):
		return append(b, h, 2, byte(pid>>8), byte(pid))
	case reason == "":
		return append(b, h, 3, byte(pid>>8), byte(pid), byte(code))
	}
	return appendAckReason(b, kind, pid, code, reason)
}

// appendAckReason is AppendAck with a reason string, kept out of line so
// that only this rare case has an Ack in its frame.
//
//go:noinline
func appendAckReason(b []byte, kind Type, pid uint16, code ReasonCode, reason string) []byte {
	a := Ack{Kind: kind, PacketID: pid, ReasonCode: code}
	a.Props.ReasonString = reason
	return a.Append(b, V5)
}

// Append implements Packet.
func (s *Subscribe) Append(b []byte, v byte) []byte {
	b, start := reserve(b)
	b = appendUint16(b, s.PacketID)
	if v == V5 {
		b = s.Props.appendTo(b, SUBSCRIBE)
	}
	for _, o := range s.Subs {
		b = appendString(b, o.Filter)
		opt := o.QoS
		if v == V5 {
			if o.NoLocal {
				opt |= 0x04
			}
			if o.RetainAsPublished {
				opt |= 0x08
			}
			opt |= o.RetainHandling << 4
		}
		b = append(b, opt)
	}
	return frame(b, start, byte(SUBSCRIBE)<<4|0x02)
}

// Append implements Packet.
func (s *Suback) Append(b []byte, v byte) []byte {
	b, start := reserve(b)
	b = appendUint16(b, s.PacketID)
	if v == V5 {
		b = s.Props.appendTo(b, SUBACK)
	}
	for _, c := range s.Codes {
		if v != V5 && c.IsError() {
			c = 0x80
		}
		b = append(b, byte(c))
	}
	return frame(b, start, byte(SUBACK)<<4)
}

// Append implements Packet.
func (u *Unsubscribe) Append(b []byte, v byte) []byte {
	b, start := reserve(b)
	b = appendUint16(b, u.PacketID)
	if v == V5 {
		b = u.Props.appendTo(b, UNSUBSCRIBE)
	}
	for _, f := range u.Filters {
		b = appendString(b, f)
	}
	return frame(b, start, byte(UNSUBSCRIBE)<<4|0x02)
}

// Append implements Packet.
func (u *Unsuback) Append(b []byte, v byte) []byte {
	if v != V5 {
		return append(b, byte(UNSUBACK)<<4, 2, byte(u.PacketID>>8), byte(u.PacketID))
	}
	b, start := reserve(b)
	b = appendUint16(b, u.PacketID)
	b = u.Props.appendTo(b, UNSUBACK)
	for _, c := range u.Codes {
		b = append(b, byte(c))
	}
	return frame(b, start, byte(UNSUBACK)<<4)
}

// Append implements Packet.
func (*Pingreq) Append(b []byte, _ byte) []byte { return append(b, byte(PINGREQ)<<4, 0) }

// Append implements Packet.
func (*Pingresp) Append(b []byte, _ byte) []byte { return append(b, byte(PINGRESP)<<4, 0) }

// Append implements Packet.
func (d *Disconnect) Append(b []byte, v byte) []byte {
	return appendReasonOnly(b, v, DISCONNECT, d.ReasonCode, &d.Props)
}

// Append implements Packet.
func (a *Auth) Append(b []byte, v byte) []byte {
	return appendReasonOnly(b, v, AUTH, a.ReasonCode, &a.Props)
}

// appendReasonOnly encodes DISCONNECT and AUTH, whose variable header is a
// reason code and properties that may both be omitted (3.14.2.1, 3.15.2.1).
func appendReasonOnly(b []byte, v byte, t Type, code ReasonCode, props *Properties) []byte {
	h := byte(t) << 4
	ps := props.size(t)
	if v != V5 || (code == Success && ps == 0) {
		return append(b, h, 0)
	}
	if ps == 0 {
		return append(b, h, 1, byte(code))
	}
	b, start := reserve(b)
	b = append(b, byte(code))
	b = props.appendTo(b, t)
	return frame(b, start, h)
}
