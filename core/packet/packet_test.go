package packet

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
	"testing/iotest"
)

// normalize makes empty byte slices nil so decoded and built packets compare.
func normalize(p Packet) Packet {
	switch x := p.(type) {
	case *Publish:
		if len(x.Payload) == 0 {
			x.Payload = nil
		}
	case *Connect:
		if len(x.Password) == 0 {
			x.Password = nil
		}
		if x.Will != nil && len(x.Will.Payload) == 0 {
			x.Will.Payload = nil
		}
	}
	return p
}

func decodeAll(t *testing.T, wire []byte, v byte) Packet {
	t.Helper()
	r := NewReader(bytes.NewReader(wire))
	r.Version = v
	p, n, err := r.ReadPacket()
	if err != nil {
		t.Fatalf("decode % x: %v", head(wire), err)
	}
	if n != len(wire) {
		t.Fatalf("size = %d, want %d", n, len(wire))
	}
	if _, _, err := r.ReadPacket(); err != io.EOF {
		t.Fatalf("after the packet: err = %v, want io.EOF", err)
	}
	return p
}

func head(b []byte) []byte {
	if len(b) > 32 {
		return b[:32]
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	for _, c := range validCases {
		t.Run(c.name, func(t *testing.T) {
			wire := Encode(c.packet, c.version)
			if c.wire != nil && !bytes.Equal(wire, c.wire) {
				t.Fatalf("encode = % x, want % x", wire, c.wire)
			}
			got := decodeAll(t, wire, c.version)
			if got.Type() != c.packet.Type() {
				t.Fatalf("type = %v, want %v", got.Type(), c.packet.Type())
			}
			if !reflect.DeepEqual(normalize(got), normalize(c.packet)) {
				t.Fatalf("decoded = %+v, want %+v", got, c.packet)
			}
			if again := Encode(got, c.version); !bytes.Equal(again, wire) {
				t.Fatalf("re-encode = % x, want % x", head(again), head(wire))
			}
		})
	}
}

func TestMalformed(t *testing.T) {
	for _, c := range malformedCases {
		t.Run(c.name, func(t *testing.T) {
			r := NewReader(bytes.NewReader(c.wire))
			r.Version = c.version
			_, _, err := r.ReadPacket()
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v, want a packet error with %v", err, c.code)
			}
			if pe.Code != c.code {
				t.Fatalf("code = %v (%s), want %v", pe.Code, pe.Msg, c.code)
			}
			if !errors.Is(err, c.code) {
				t.Fatalf("errors.Is(%v, %v) = false", err, c.code)
			}
		})
	}
}

// Every packet of the table, concatenated, read back through readers that
// split the stream at every byte and in odd chunks.
func TestReaderSplitStreams(t *testing.T) {
	for _, v := range []byte{V311, V5} {
		var stream []byte
		var want []Packet
		for _, c := range validCases {
			if c.version != v {
				continue
			}
			if _, ok := c.packet.(*Connect); ok {
				continue // a CONNECT would switch the reader's version
			}
			stream = append(stream, Encode(c.packet, v)...)
			want = append(want, c.packet)
		}
		for name, src := range map[string]io.Reader{
			"one byte": iotest.OneByteReader(bytes.NewReader(stream)),
			"half":     iotest.HalfReader(bytes.NewReader(stream)),
			"chunks":   &chunkReader{data: stream, sizes: []int{3, 1, 700, 2, 5000, 17}},
		} {
			r := NewReader(src)
			r.Version = v
			for i, w := range want {
				p, _, err := r.ReadPacket()
				if err != nil {
					t.Fatalf("v%d %s: packet %d: %v", v, name, i, err)
				}
				if !reflect.DeepEqual(normalize(p), normalize(w)) {
					t.Fatalf("v%d %s: packet %d = %+v, want %+v", v, name, i, p, w)
				}
			}
			if _, _, err := r.ReadPacket(); err != io.EOF {
				t.Fatalf("v%d %s: end: %v, want io.EOF", v, name, err)
			}
		}
	}
}

type chunkReader struct {
	data  []byte
	sizes []int
	i     int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := c.sizes[c.i%len(c.sizes)]
	c.i++
	n = min(n, len(p), len(c.data))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

func TestReaderMaxSize(t *testing.T) {
	wire := Encode(&Publish{Topic: "t", Payload: make([]byte, 100)}, V311)
	r := NewReader(bytes.NewReader(wire))
	r.Version = V311
	r.MaxSize = 50
	_, n, err := r.ReadPacket()
	if !errors.Is(err, PacketTooLarge) {
		t.Fatalf("err = %v, want packet too large", err)
	}
	if n != len(wire) {
		t.Fatalf("size = %d, want %d", n, len(wire))
	}
	r = NewReader(bytes.NewReader(wire))
	r.Version = V311
	r.MaxSize = len(wire)
	if _, _, err := r.ReadPacket(); err != nil {
		t.Fatalf("at the limit: %v", err)
	}
}

func TestReaderTruncated(t *testing.T) {
	wire := Encode(&Publish{Topic: "t", Payload: make([]byte, 10)}, V311)
	for cut := 1; cut < len(wire); cut++ {
		r := NewReader(bytes.NewReader(wire[:cut]))
		r.Version = V311
		if _, _, err := r.ReadPacket(); err != io.ErrUnexpectedEOF {
			t.Fatalf("cut at %d: err = %v, want io.ErrUnexpectedEOF", cut, err)
		}
	}
}

func TestReaderBufferShrinksWhenQuiet(t *testing.T) {
	big := Encode(&Publish{Topic: "t", Payload: make([]byte, 30000)}, V311)
	var stream []byte
	for i := 0; i < 4; i++ {
		stream = append(stream, big...)
	}
	small := Encode(&Pingreq{}, V311)
	src := &chunkReader{data: stream, sizes: []int{64 << 10}}
	r := NewReader(src)
	r.Version = V311
	for i := 0; i < 4; i++ {
		if _, _, err := r.ReadPacket(); err != nil {
			t.Fatal(err)
		}
	}
	grown := len(r.buf)
	for i := 0; i < 12; i++ {
		src.data = small
		if _, _, err := r.ReadPacket(); err != nil {
			t.Fatal(err)
		}
	}
	if len(r.buf) >= grown || len(r.buf) > 1024 {
		t.Fatalf("buffer %d bytes after quiet period (grown to %d)", len(r.buf), grown)
	}
}

// With Reuse, PUBLISH and acknowledgements decode into the Reader's own
// values: each read leaves nothing of the packet before it, the payload and
// properties stay valid after the next read, and an acknowledgement costs
// no allocation.
func TestReaderReuse(t *testing.T) {
	one := uint32(60)
	in := []Packet{
		&Publish{Topic: "a/b", QoS: 1, PacketID: 7, Dup: true, Retain: true, Payload: []byte("first"),
			Props: Properties{MessageExpiry: &one, ContentType: "text/plain", User: []UserProperty{{Key: "k", Value: "v"}}}},
		&Publish{Topic: "c", Payload: []byte("second")},
		&Ack{Kind: PUBACK, PacketID: 9, ReasonCode: NoMatchingSubscribers, Props: Properties{ReasonString: "none"}},
		&Ack{Kind: PUBREL, PacketID: 10},
		&Subscribe{PacketID: 3, Subs: []SubOption{{Filter: "x/#", QoS: 1}}},
		&Ack{Kind: PUBCOMP, PacketID: 11},
	}
	var stream []byte
	for _, p := range in {
		stream = append(stream, Encode(p, V5)...)
	}
	r := NewReader(bytes.NewReader(stream))
	r.Version = V5
	r.Reuse = true
	var got []Packet
	var firstPayload []byte
	var firstUser []UserProperty
	for range in {
		p, _, err := r.ReadPacket()
		if err != nil {
			t.Fatal(err)
		}
		if pub, ok := p.(*Publish); ok && firstPayload == nil {
			firstPayload, firstUser = pub.Payload, pub.Props.User
		}
		// Compare as read, before the next read overwrites it.
		got = append(got, normalize(clonePacket(p)))
	}
	for i := range in {
		if !reflect.DeepEqual(got[i], normalize(in[i])) {
			t.Errorf("packet %d: got %+v, want %+v", i, got[i], in[i])
		}
	}
	if string(firstPayload) != "first" || len(firstUser) != 1 || firstUser[0].Value != "v" {
		t.Errorf("first PUBLISH's payload %q and user properties %v changed by later reads", firstPayload, firstUser)
	}

	ack := Encode(&Ack{Kind: PUBACK, PacketID: 1}, V311)
	src := &repeatReader{b: ack}
	r = NewReader(src)
	r.Version = V311
	r.Reuse = true
	if _, _, err := r.ReadPacket(); err != nil { // allocates the scratch values once
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() {
		if _, _, err := r.ReadPacket(); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("reading a PUBACK with Reuse: %.0f allocations, want 0", n)
	}
}

// clonePacket copies the top-level value of a reused packet.
func clonePacket(p Packet) Packet {
	switch x := p.(type) {
	case *Publish:
		c := *x
		return &c
	case *Ack:
		c := *x
		return &c
	}
	return p
}

// repeatReader returns b over and over.
type repeatReader struct{ b []byte }

func (r *repeatReader) Read(p []byte) (int, error) {
	n := 0
	for n+len(r.b) <= len(p) {
		n += copy(p[n:], r.b)
	}
	if n == 0 {
		return 0, io.ErrShortBuffer
	}
	return n, nil
}

// AppendAck encodes exactly what an Ack with the same fields does.
func TestAppendAckMatchesAck(t *testing.T) {
	for _, v := range []byte{V31, V311, V5} {
		for _, kind := range []Type{PUBACK, PUBREC, PUBREL, PUBCOMP} {
			for _, code := range []ReasonCode{Success, NoMatchingSubscribers, NotAuthorized, PacketIdentifierNotFound} {
				for _, reason := range []string{"", "not allowed here"} {
					a := &Ack{Kind: kind, PacketID: 0x1234, ReasonCode: code}
					a.Props.ReasonString = reason
					want := a.Append(nil, v)
					if v != V5 {
						want = (&Ack{Kind: kind, PacketID: 0x1234}).Append(nil, v)
					}
					got := AppendAck([]byte{0xAA}, kind, 0x1234, code, reason, v)
					if !bytes.Equal(got[1:], want) || got[0] != 0xAA {
						t.Errorf("v%d %s %v %q: got % x, want % x", v, kind, code, reason, got[1:], want)
					}
				}
			}
		}
	}
}

func TestPacketIDOffset(t *testing.T) {
	for _, v := range []byte{V311, V5} {
		p := &Publish{QoS: 1, Topic: "some/topic", PacketID: 0x1234, Payload: make([]byte, 300), Props: Properties{ContentType: "x"}}
		b := Encode(p, v)
		off := PacketIDOffset(b)
		if off < 0 || b[off] != 0x12 || b[off+1] != 0x34 {
			t.Fatalf("v%d: offset %d does not point at the packet id", v, off)
		}
	}
	if off := PacketIDOffset(Encode(&Publish{Topic: "t"}, V311)); off != -1 {
		t.Fatalf("QoS 0 offset = %d, want -1", off)
	}
}

func TestConnackV3Codes(t *testing.T) {
	cases := map[ReasonCode]byte{Success: 0, UnsupportedProtocolVersion: 1, ClientIdentifierNotValid: 2,
		ServerUnavailable: 3, ServerBusy: 3, BadUserNameOrPassword: 4, NotAuthorized: 5, Banned: 5}
	for code, want := range cases {
		if got := code.ConnackV3(); got != want {
			t.Errorf("%v.ConnackV3() = %d, want %d", code, got, want)
		}
	}
}
