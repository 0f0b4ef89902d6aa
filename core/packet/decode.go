package packet

// Decode decodes one packet from its first byte and body (the bytes after the
// remaining length) for protocol level v. A CONNECT is decoded whatever v is,
// since it carries the level. Byte slices in the result (payloads,
// passwords, will payloads) alias body.
func Decode(header byte, body []byte, v byte) (Packet, error) {
	return decodeInto(header, body, v, nil, nil)
}

// decodeInto is Decode; a PUBLISH is decoded into pub and an acknowledgement
// into ack when they are not nil, instead of into new values.
func decodeInto(header byte, body []byte, v byte, pub *Publish, ack *Ack) (Packet, error) {
	t := Type(header >> 4)
	flags := header & 0x0F
	switch t {
	case PUBLISH:
		// checked in decodePublish
	case PUBREL, SUBSCRIBE, UNSUBSCRIBE:
		if flags != 0x02 { // [MQTT-3.6.1-1] [MQTT-3.8.1-1] [MQTT-3.10.1-1]
			return nil, errorf(MalformedPacket, "%s: reserved flags 0x%X, want 0x2", t, flags)
		}
	case 0:
		return nil, errorf(MalformedPacket, "reserved packet type 0")
	case AUTH:
		if v != V5 {
			return nil, errorf(MalformedPacket, "AUTH packet on an MQTT %s connection", levelName(v))
		}
		fallthrough
	default:
		if flags != 0 { // [MQTT-2.1.3-1]
			return nil, errorf(MalformedPacket, "%s: reserved flags 0x%X, want 0", t, flags)
		}
	}
	d := decoder{b: body}
	var p Packet
	switch t {
	case CONNECT:
		p = d.connect()
	case CONNACK:
		p = d.connack(v)
	case PUBLISH:
		if pub == nil {
			pub = new(Publish)
		}
		p = d.publish(pub, header, v)
	case PUBACK, PUBREC, PUBREL, PUBCOMP:
		if ack == nil {
			ack = new(Ack)
		}
		p = d.ack(ack, t, v)
	case SUBSCRIBE:
		p = d.subscribe(v)
	case SUBACK:
		p = d.suback(v)
	case UNSUBSCRIBE:
		p = d.unsubscribe(v)
	case UNSUBACK:
		p = d.unsuback(v)
	case PINGREQ:
		p = &Pingreq{}
	case PINGRESP:
		p = &Pingresp{}
	case DISCONNECT:
		p = d.disconnect(v)
	case AUTH:
		p = d.auth()
	}
	if d.err != nil {
		return nil, d.err
	}
	if d.remaining() != 0 {
		return nil, errorf(MalformedPacket, "%s: %d unexpected bytes at the end", t, d.remaining())
	}
	return p, nil
}

func levelName(v byte) string {
	switch v {
	case V31:
		return "3.1"
	case V311:
		return "3.1.1"
	case V5:
		return "5.0"
	}
	return "?"
}

// ErrUnsupportedVersion is returned by Decode for a CONNECT whose protocol
// name and level are not 3.1, 3.1.1 or 5.0; Connect holds what was read so
// the broker can answer in the client's own format.
var ErrUnsupportedVersion = &Error{Code: UnsupportedProtocolVersion, Msg: "unsupported protocol name or level"}

func (d *decoder) connect() *Connect {
	c := &Connect{}
	c.ProtocolName = d.string("protocol name")
	c.ProtocolLevel = d.byte("protocol level")
	if d.err != nil {
		return nil
	}
	switch {
	case c.ProtocolName == "MQTT" && (c.ProtocolLevel == V311 || c.ProtocolLevel == V5):
	case c.ProtocolName == "MQIsdp" && c.ProtocolLevel == V31:
	case c.ProtocolName == "MQTT" || c.ProtocolName == "MQIsdp":
		// A known name at an unknown level gets CONNACK 0x01/0x84 [MQTT-3.1.2-2].
		d.err = errorf(UnsupportedProtocolVersion, "protocol level %d of %q is not supported", c.ProtocolLevel, c.ProtocolName)
		return nil
	default:
		// Not MQTT: close without answering [MQTT-3.1.2-1].
		d.err = errorf(ProtocolError, "unknown protocol name %q", c.ProtocolName)
		return nil
	}
	v := c.ProtocolLevel
	flags := d.byte("connect flags")
	c.KeepAlive = d.uint16("keep alive")
	if d.err != nil {
		return nil
	}
	if flags&0x01 != 0 { // [MQTT-3.1.2-3]
		d.fail(MalformedPacket, "CONNECT: reserved flag set")
		return nil
	}
	c.CleanStart = flags&0x02 != 0
	willFlag := flags&0x04 != 0
	willQoS := (flags >> 3) & 3
	willRetain := flags&0x20 != 0
	c.PasswordFlag = flags&0x40 != 0
	c.UsernameFlag = flags&0x80 != 0
	if willQoS == 3 { // [MQTT-3.1.2-14]
		d.fail(MalformedPacket, "CONNECT: will QoS 3")
		return nil
	}
	if !willFlag && (willQoS != 0 || willRetain) { // [MQTT-3.1.2-11] [MQTT-3.1.2-13] [MQTT-3.1.2-15]
		d.fail(MalformedPacket, "CONNECT: will QoS or retain set without the will flag")
		return nil
	}
	if v != V5 && c.PasswordFlag && !c.UsernameFlag { // [MQTT-3.1.2-22]
		d.fail(MalformedPacket, "CONNECT: password flag set without user name flag")
		return nil
	}
	if v == V5 {
		d.properties(CONNECT, &c.Props)
	}
	c.ClientID = d.string("client identifier")
	if willFlag {
		w := &Will{QoS: willQoS, Retain: willRetain}
		if v == V5 {
			d.properties(willProps, &w.Props)
		}
		w.Topic = d.string("will topic")
		w.Payload = d.binary("will payload")
		c.Will = w
	}
	if c.UsernameFlag {
		c.Username = d.string("user name")
	}
	if c.PasswordFlag {
		c.Password = d.binary("password")
	}
	if d.err != nil {
		return nil
	}
	if v == V5 && c.Props.AuthMethod == "" && c.Props.AuthData != nil { // [MQTT-3.1.2.11.9]
		d.fail(ProtocolError, "CONNECT: authentication data without authentication method")
	}
	return c
}

func (d *decoder) connack(v byte) *Connack {
	c := &Connack{}
	flags := d.byte("connack flags")
	if flags&0xFE != 0 { // [MQTT-3.2.2-1]
		d.fail(MalformedPacket, "CONNACK: reserved flags set")
	}
	c.SessionPresent = flags&1 != 0
	code := d.byte("connack code")
	if v == V5 {
		c.ReasonCode = ReasonCode(code)
		if d.remaining() > 0 {
			d.properties(CONNACK, &c.Props)
		}
	} else {
		c.ReasonCode = connackFromV3(code)
	}
	if d.err != nil {
		return nil
	}
	return c
}

func connackFromV3(code byte) ReasonCode {
	switch code {
	case 0:
		return Success
	case 1:
		return UnsupportedProtocolVersion
	case 2:
		return ClientIdentifierNotValid
	case 3:
		return ServerUnavailable
	case 4:
		return BadUserNameOrPassword
	default:
		return NotAuthorized
	}
}

func (d *decoder) publish(p *Publish, header byte, v byte) *Publish {
	*p = Publish{
		Dup:    header&0x08 != 0,
		QoS:    (header >> 1) & 3,
		Retain: header&0x01 != 0,
	}
	if p.QoS == 3 { // [MQTT-3.3.1-4]
		d.fail(MalformedPacket, "PUBLISH: QoS 3")
		return nil
	}
	if p.QoS == 0 && p.Dup { // [MQTT-3.3.1-2]
		d.fail(MalformedPacket, "PUBLISH: DUP set on a QoS 0 message")
		return nil
	}
	p.Topic = d.string("topic name")
	if p.QoS > 0 {
		p.PacketID = d.uint16("packet identifier")
		if d.err == nil && p.PacketID == 0 { // [MQTT-2.2.1-3]
			d.fail(ProtocolError, "PUBLISH: packet identifier 0 with QoS %d", p.QoS)
		}
	}
	if v == V5 {
		d.properties(PUBLISH, &p.Props)
	}
	if d.err != nil {
		return nil
	}
	p.Payload = d.b[d.i:len(d.b):len(d.b)]
	d.i = len(d.b)
	return p
}

func (d *decoder) ack(a *Ack, t Type, v byte) *Ack {
	*a = Ack{Kind: t, PacketID: d.uint16("packet identifier")}
	if d.err == nil && a.PacketID == 0 {
		d.fail(ProtocolError, "%s: packet identifier 0", t)
	}
	if v == V5 && d.remaining() > 0 {
		a.ReasonCode = ReasonCode(d.byte("reason code"))
		if d.remaining() > 0 {
			d.properties(t, &a.Props)
		}
	}
	if d.err != nil {
		return nil
	}
	return a
}

func (d *decoder) subscribe(v byte) *Subscribe {
	s := &Subscribe{PacketID: d.uint16("packet identifier")}
	if d.err == nil && s.PacketID == 0 {
		d.fail(ProtocolError, "SUBSCRIBE: packet identifier 0") // [MQTT-2.2.1-3]
	}
	if v == V5 {
		d.properties(SUBSCRIBE, &s.Props)
	}
	for d.err == nil && d.remaining() > 0 {
		o := SubOption{Filter: d.string("topic filter")}
		opt := d.byte("subscription options")
		if d.err != nil {
			break
		}
		o.QoS = opt & 3
		if o.QoS == 3 { // [MQTT-3.8.3-4]
			d.fail(MalformedPacket, "SUBSCRIBE: QoS 3 requested for %q", o.Filter)
			break
		}
		if v == V5 {
			if opt&0xC0 != 0 { // [MQTT-3.8.3-5]
				d.fail(MalformedPacket, "SUBSCRIBE: reserved option bits set for %q", o.Filter)
				break
			}
			o.NoLocal = opt&0x04 != 0
			o.RetainAsPublished = opt&0x08 != 0
			o.RetainHandling = (opt >> 4) & 3
			if o.RetainHandling == 3 {
				d.fail(ProtocolError, "SUBSCRIBE: retain handling 3 for %q", o.Filter)
				break
			}
		} else if opt&0xFC != 0 { // [MQTT-3.8.3-4] (3.1.1)
			d.fail(MalformedPacket, "SUBSCRIBE: reserved option bits set for %q", o.Filter)
			break
		}
		s.Subs = append(s.Subs, o)
	}
	if d.err == nil && len(s.Subs) == 0 { // [MQTT-3.8.3-3]
		d.fail(ProtocolError, "SUBSCRIBE: no topic filter")
	}
	if d.err != nil {
		return nil
	}
	return s
}

func (d *decoder) suback(v byte) *Suback {
	s := &Suback{PacketID: d.uint16("packet identifier")}
	if v == V5 {
		d.properties(SUBACK, &s.Props)
	}
	for d.err == nil && d.remaining() > 0 {
		s.Codes = append(s.Codes, ReasonCode(d.byte("return code")))
	}
	if d.err != nil {
		return nil
	}
	return s
}

func (d *decoder) unsubscribe(v byte) *Unsubscribe {
	u := &Unsubscribe{PacketID: d.uint16("packet identifier")}
	if d.err == nil && u.PacketID == 0 {
		d.fail(ProtocolError, "UNSUBSCRIBE: packet identifier 0")
	}
	if v == V5 {
		d.properties(UNSUBSCRIBE, &u.Props)
	}
	for d.err == nil && d.remaining() > 0 {
		u.Filters = append(u.Filters, d.string("topic filter"))
	}
	if d.err == nil && len(u.Filters) == 0 { // [MQTT-3.10.3-2]
		d.fail(ProtocolError, "UNSUBSCRIBE: no topic filter")
	}
	if d.err != nil {
		return nil
	}
	return u
}

func (d *decoder) unsuback(v byte) *Unsuback {
	u := &Unsuback{PacketID: d.uint16("packet identifier")}
	if v == V5 {
		d.properties(UNSUBACK, &u.Props)
		for d.err == nil && d.remaining() > 0 {
			u.Codes = append(u.Codes, ReasonCode(d.byte("reason code")))
		}
	}
	if d.err != nil {
		return nil
	}
	return u
}

func (d *decoder) disconnect(v byte) *Disconnect {
	p := &Disconnect{}
	if v == V5 && d.remaining() > 0 {
		p.ReasonCode = ReasonCode(d.byte("reason code"))
		if d.remaining() > 0 {
			d.properties(DISCONNECT, &p.Props)
		}
	}
	if d.err != nil {
		return nil
	}
	return p
}

func (d *decoder) auth() *Auth {
	a := &Auth{}
	if d.remaining() > 0 {
		a.ReasonCode = ReasonCode(d.byte("reason code"))
		if d.remaining() > 0 {
			d.properties(AUTH, &a.Props)
		}
	}
	if d.err == nil {
		switch a.ReasonCode {
		case Success, ContinueAuthentication, ReAuthenticate:
		default:
			d.fail(ProtocolError, "AUTH: reason code 0x%02X", byte(a.ReasonCode))
		}
	}
	if d.err != nil {
		return nil
	}
	return a
}
