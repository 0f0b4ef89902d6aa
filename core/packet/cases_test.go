package packet

// The one table of packet cases: it feeds the round-trip tests, the
// malformed-input tests, and seeds the fuzz target.

type validCase struct {
	name    string
	version byte
	packet  Packet
	// wire, when set, is the exact encoding expected (checked both ways).
	wire []byte
}

type malformedCase struct {
	name    string
	version byte
	wire    []byte
	code    ReasonCode
}

var allProps = Properties{
	PayloadFormat:   Ptr[byte](1),
	MessageExpiry:   Ptr[uint32](3600),
	ContentType:     "application/json",
	ResponseTopic:   "reply/to",
	CorrelationData: []byte{1, 2, 3},
	User:            []UserProperty{{"a", "1"}, {"a", "2"}, {"b", ""}},
}

var validCases = []validCase{
	{name: "connect 3.1.1 minimal", version: V311, packet: &Connect{ProtocolName: "MQTT", ProtocolLevel: 4, CleanStart: true, KeepAlive: 60, ClientID: "c1"},
		wire: []byte{0x10, 14, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, 0, 2, 'c', '1'}},
	{name: "connect 3.1", version: V31, packet: &Connect{ProtocolName: "MQIsdp", ProtocolLevel: 3, CleanStart: true, KeepAlive: 10, ClientID: "old"}},
	{name: "connect 3.1.1 full", version: V311, packet: &Connect{ProtocolName: "MQTT", ProtocolLevel: 4, KeepAlive: 30, ClientID: "dev",
		UsernameFlag: true, Username: "u", PasswordFlag: true, Password: []byte("p"),
		Will: &Will{Topic: "will/t", Payload: []byte("bye"), QoS: 2, Retain: true}}},
	{name: "connect 5 full", version: V5, packet: &Connect{ProtocolName: "MQTT", ProtocolLevel: 5, CleanStart: true, KeepAlive: 5, ClientID: "",
		PasswordFlag: true, Password: []byte("secret-without-user"),
		Props: Properties{SessionExpiry: Ptr[uint32](120), ReceiveMaximum: Ptr[uint16](10), MaximumPacketSize: Ptr[uint32](1 << 20),
			TopicAliasMaximum: Ptr[uint16](5), RequestResponseInfo: Ptr[byte](1), RequestProblemInfo: Ptr[byte](0),
			User: []UserProperty{{"k", "v"}}, AuthMethod: "SCRAM", AuthData: []byte{9}},
		Will: &Will{Topic: "w", Payload: []byte{}, QoS: 1, Props: Properties{WillDelay: Ptr[uint32](30), PayloadFormat: Ptr[byte](1),
			MessageExpiry: Ptr[uint32](9), ContentType: "text/plain", ResponseTopic: "r", CorrelationData: []byte("c"), User: []UserProperty{{"x", "y"}}}}}},
	{name: "connack 3.1.1", version: V311, packet: &Connack{SessionPresent: true}, wire: []byte{0x20, 2, 1, 0}},
	{name: "connack 3.1.1 refused", version: V311, packet: &Connack{ReasonCode: NotAuthorized}, wire: []byte{0x20, 2, 0, 5}},
	{name: "connack 5", version: V5, packet: &Connack{SessionPresent: true, ReasonCode: Success, Props: Properties{
		SessionExpiry: Ptr[uint32](60), ReceiveMaximum: Ptr[uint16](100), MaximumQoS: Ptr[byte](1), RetainAvailable: Ptr[byte](0),
		MaximumPacketSize: Ptr[uint32](1000), AssignedClientID: "auto-1", TopicAliasMaximum: Ptr[uint16](10), ReasonString: "ok",
		User: []UserProperty{{"a", "b"}}, WildcardSubAvailable: Ptr[byte](1), SubIDAvailable: Ptr[byte](1), SharedSubAvailable: Ptr[byte](0),
		ServerKeepAlive: Ptr[uint16](30), ResponseInfo: "resp/", ServerReference: "other:1883", AuthMethod: "m", AuthData: []byte{1}}}},
	{name: "connack 5 refused", version: V5, packet: &Connack{ReasonCode: BadUserNameOrPassword}, wire: []byte{0x20, 3, 0, 0x86, 0}},
	{name: "publish qos0", version: V311, packet: &Publish{Topic: "a/b", Payload: []byte("hi")},
		wire: []byte{0x30, 7, 0, 3, 'a', '/', 'b', 'h', 'i'}},
	{name: "publish qos1 retain dup", version: V311, packet: &Publish{Dup: true, QoS: 1, Retain: true, Topic: "t", PacketID: 7, Payload: []byte{0, 1, 2}},
		wire: []byte{0x3B, 8, 0, 1, 't', 0, 7, 0, 1, 2}},
	{name: "publish qos2 empty payload", version: V31, packet: &Publish{QoS: 2, Topic: "x/y", PacketID: 65535, Payload: []byte{}}},
	{name: "publish 5 no props", version: V5, packet: &Publish{QoS: 1, Topic: "t", PacketID: 1, Payload: []byte("p")},
		wire: []byte{0x32, 7, 0, 1, 't', 0, 1, 0, 'p'}},
	{name: "publish 5 props", version: V5, packet: &Publish{QoS: 2, Topic: "s/t", PacketID: 9, Payload: []byte("{}"), Props: func() Properties {
		p := allProps
		p.TopicAlias = Ptr[uint16](3)
		p.SubscriptionIDs = []uint32{1, 268435455}
		return p
	}()}},
	{name: "publish 5 alias only", version: V5, packet: &Publish{Topic: "", Payload: []byte("x"), Props: Properties{TopicAlias: Ptr[uint16](1)}}},
	{name: "publish large", version: V311, packet: &Publish{Topic: "big", Payload: make([]byte, 70000)}},
	{name: "puback 3", version: V311, packet: &Ack{Kind: PUBACK, PacketID: 258}, wire: []byte{0x40, 2, 1, 2}},
	{name: "pubrec 3", version: V311, packet: &Ack{Kind: PUBREC, PacketID: 1}, wire: []byte{0x50, 2, 0, 1}},
	{name: "pubrel 3", version: V311, packet: &Ack{Kind: PUBREL, PacketID: 1}, wire: []byte{0x62, 2, 0, 1}},
	{name: "pubcomp 3", version: V311, packet: &Ack{Kind: PUBCOMP, PacketID: 1}, wire: []byte{0x70, 2, 0, 1}},
	{name: "puback 5 short", version: V5, packet: &Ack{Kind: PUBACK, PacketID: 3}, wire: []byte{0x40, 2, 0, 3}},
	{name: "puback 5 code", version: V5, packet: &Ack{Kind: PUBACK, PacketID: 3, ReasonCode: NoMatchingSubscribers}, wire: []byte{0x40, 3, 0, 3, 0x10}},
	{name: "pubrec 5 props", version: V5, packet: &Ack{Kind: PUBREC, PacketID: 3, ReasonCode: NotAuthorized, Props: Properties{ReasonString: "acl", User: []UserProperty{{"a", "b"}}}}},
	{name: "pubrel 5 not found", version: V5, packet: &Ack{Kind: PUBREL, PacketID: 4, ReasonCode: PacketIdentifierNotFound}, wire: []byte{0x62, 3, 0, 4, 0x92}},
	{name: "pubcomp 5 props", version: V5, packet: &Ack{Kind: PUBCOMP, PacketID: 4, Props: Properties{ReasonString: "r"}}},
	{name: "subscribe 3", version: V311, packet: &Subscribe{PacketID: 10, Subs: []SubOption{{Filter: "a/+", QoS: 1}, {Filter: "#", QoS: 2}}},
		wire: []byte{0x82, 12, 0, 10, 0, 3, 'a', '/', '+', 1, 0, 1, '#', 2}},
	{name: "subscribe 5", version: V5, packet: &Subscribe{PacketID: 11, Props: Properties{SubscriptionIDs: []uint32{42}, User: []UserProperty{{"u", "p"}}},
		Subs: []SubOption{{Filter: "$share/g/a", QoS: 1, RetainHandling: 2}, {Filter: "b", QoS: 0, NoLocal: true, RetainAsPublished: true, RetainHandling: 1}}}},
	{name: "suback 3", version: V311, packet: &Suback{PacketID: 10, Codes: []ReasonCode{1, 0x80}}, wire: []byte{0x90, 4, 0, 10, 1, 0x80}},
	{name: "suback 5", version: V5, packet: &Suback{PacketID: 10, Codes: []ReasonCode{GrantedQoS2, TopicFilterInvalid, NotAuthorized}, Props: Properties{ReasonString: "no"}}},
	{name: "unsubscribe 3", version: V311, packet: &Unsubscribe{PacketID: 5, Filters: []string{"a", "b/#"}}, wire: []byte{0xA2, 10, 0, 5, 0, 1, 'a', 0, 3, 'b', '/', '#'}},
	{name: "unsubscribe 5", version: V5, packet: &Unsubscribe{PacketID: 5, Filters: []string{"a"}, Props: Properties{User: []UserProperty{{"k", "v"}}}}},
	{name: "unsuback 3", version: V311, packet: &Unsuback{PacketID: 5}, wire: []byte{0xB0, 2, 0, 5}},
	{name: "unsuback 5", version: V5, packet: &Unsuback{PacketID: 5, Codes: []ReasonCode{Success, NoSubscriptionExisted}}, wire: []byte{0xB0, 5, 0, 5, 0, 0, 0x11}},
	{name: "pingreq", version: V311, packet: &Pingreq{}, wire: []byte{0xC0, 0}},
	{name: "pingresp", version: V5, packet: &Pingresp{}, wire: []byte{0xD0, 0}},
	{name: "disconnect 3", version: V311, packet: &Disconnect{}, wire: []byte{0xE0, 0}},
	{name: "disconnect 5 normal", version: V5, packet: &Disconnect{}, wire: []byte{0xE0, 0}},
	{name: "disconnect 5 will", version: V5, packet: &Disconnect{ReasonCode: DisconnectWithWill}, wire: []byte{0xE0, 1, 4}},
	{name: "disconnect 5 props", version: V5, packet: &Disconnect{ReasonCode: SessionTakenOver, Props: Properties{SessionExpiry: Ptr[uint32](0), ReasonString: "bye", ServerReference: "b:1"}}},
	{name: "auth 5 empty", version: V5, packet: &Auth{}, wire: []byte{0xF0, 0}},
	{name: "auth 5", version: V5, packet: &Auth{ReasonCode: ContinueAuthentication, Props: Properties{AuthMethod: "SCRAM", AuthData: []byte("d"), ReasonString: "go on"}}},
}

var malformedCases = []malformedCase{
	{"reserved type 0", V311, []byte{0x00, 0}, MalformedPacket},
	{"pingreq flags", V311, []byte{0xC1, 0}, MalformedPacket},
	{"pingreq extra byte", V311, []byte{0xC0, 1, 0}, MalformedPacket},
	{"subscribe flags", V311, []byte{0x80, 6, 0, 1, 0, 1, 'a', 0}, MalformedPacket},
	{"pubrel flags", V5, []byte{0x60, 2, 0, 1}, MalformedPacket},
	{"unsubscribe flags", V311, []byte{0xA0, 5, 0, 1, 0, 1, 'a'}, MalformedPacket},
	{"publish qos3", V311, []byte{0x36, 5, 0, 1, 't', 0, 1}, MalformedPacket},
	{"publish dup qos0", V311, []byte{0x38, 3, 0, 1, 't'}, MalformedPacket},
	{"publish packet id 0", V311, []byte{0x32, 5, 0, 1, 't', 0, 0}, ProtocolError},
	{"publish topic truncated", V311, []byte{0x30, 3, 0, 5, 't'}, MalformedPacket},
	{"publish topic invalid utf8", V311, []byte{0x30, 4, 0, 2, 0xC3, 0x28}, MalformedPacket},
	{"publish topic U+0000", V311, []byte{0x30, 4, 0, 2, 'a', 0}, MalformedPacket},
	{"publish topic surrogate", V311, []byte{0x30, 5, 0, 3, 0xED, 0xA0, 0x80}, MalformedPacket},
	{"publish 5 props length overflow", V5, []byte{0x30, 5, 0, 1, 't', 9, 1}, MalformedPacket},
	{"publish 5 unknown property", V5, []byte{0x30, 6, 0, 1, 't', 2, 0x7E, 0}, MalformedPacket},
	{"publish 5 property not allowed", V5, []byte{0x30, 9, 0, 1, 't', 5, 0x11, 0, 0, 0, 1}, MalformedPacket},
	{"publish 5 duplicate property", V5, []byte{0x30, 8, 0, 1, 't', 4, 0x01, 0, 0x01, 0}, ProtocolError},
	{"publish 5 payload format 2", V5, []byte{0x30, 6, 0, 1, 't', 2, 0x01, 2}, ProtocolError},
	{"publish 5 subscription id 0", V5, []byte{0x30, 6, 0, 1, 't', 2, 0x0B, 0}, ProtocolError},
	{"publish 5 props varint not minimal", V5, []byte{0x30, 6, 0, 1, 't', 0x80, 0x00, 'x'}, MalformedPacket},
	{"puback id 0", V311, []byte{0x40, 2, 0, 0}, ProtocolError},
	{"puback short", V311, []byte{0x40, 1, 0}, MalformedPacket},
	{"puback 3 extra", V311, []byte{0x40, 3, 0, 1, 0}, MalformedPacket},
	{"subscribe no filters", V311, []byte{0x82, 2, 0, 1}, ProtocolError},
	{"subscribe id 0", V311, []byte{0x82, 6, 0, 0, 0, 1, 'a', 0}, ProtocolError},
	{"subscribe qos3", V311, []byte{0x82, 6, 0, 1, 0, 1, 'a', 3}, MalformedPacket},
	{"subscribe 3 reserved bits", V311, []byte{0x82, 6, 0, 1, 0, 1, 'a', 0x04}, MalformedPacket},
	{"subscribe 5 reserved bits", V5, []byte{0x82, 7, 0, 1, 0, 0, 1, 'a', 0x40}, MalformedPacket},
	{"subscribe 5 retain handling 3", V5, []byte{0x82, 7, 0, 1, 0, 0, 1, 'a', 0x30}, ProtocolError},
	{"subscribe missing options", V311, []byte{0x82, 5, 0, 1, 0, 1, 'a'}, MalformedPacket},
	{"unsubscribe no filters", V311, []byte{0xA2, 2, 0, 1}, ProtocolError},
	{"connect bad protocol name", V311, []byte{0x10, 12, 0, 4, 'H', 'T', 'T', 'P', 4, 2, 0, 0, 0, 0}, ProtocolError},
	{"connect unsupported level", V311, []byte{0x10, 12, 0, 4, 'M', 'Q', 'T', 'T', 9, 2, 0, 0, 0, 0}, UnsupportedProtocolVersion},
	{"connect reserved flag", V311, []byte{0x10, 12, 0, 4, 'M', 'Q', 'T', 'T', 4, 3, 0, 0, 0, 0}, MalformedPacket},
	{"connect will qos without will", V311, []byte{0x10, 12, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x0A, 0, 0, 0, 0}, MalformedPacket},
	{"connect will retain without will", V311, []byte{0x10, 12, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x22, 0, 0, 0, 0}, MalformedPacket},
	{"connect will qos 3", V311, []byte{0x10, 12, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x1E, 0, 0, 0, 0}, MalformedPacket},
	{"connect password without user 3.1.1", V311, []byte{0x10, 15, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x42, 0, 0, 0, 0, 0, 1, 'p'}, MalformedPacket},
	{"connect truncated", V311, []byte{0x10, 10, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 0}, MalformedPacket},
	{"connect client id invalid utf8", V311, []byte{0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 0, 0, 1, 0xFF}, MalformedPacket},
	{"connect trailing bytes", V311, []byte{0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 0, 0, 0, 9}, MalformedPacket},
	{"connect 5 receive maximum 0", V5, []byte{0x10, 16, 0, 4, 'M', 'Q', 'T', 'T', 5, 2, 0, 0, 3, 0x21, 0, 0, 0, 0}, ProtocolError},
	{"connect 5 auth data without method", V5, []byte{0x10, 17, 0, 4, 'M', 'Q', 'T', 'T', 5, 2, 0, 0, 4, 0x16, 0, 1, 'x', 0, 0}, ProtocolError},
	{"disconnect 3 with body", V311, []byte{0xE0, 1, 0}, MalformedPacket},
	{"disconnect flags", V5, []byte{0xE2, 0}, MalformedPacket},
	{"auth on 3.1.1", V311, []byte{0xF0, 0}, MalformedPacket},
	{"auth bad reason", V5, []byte{0xF0, 2, 0x87, 0}, ProtocolError},
	{"remaining length 5 bytes", V311, []byte{0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01}, MalformedPacket},
	{"remaining length not minimal", V311, []byte{0xC0, 0x80, 0x00}, MalformedPacket},
}
