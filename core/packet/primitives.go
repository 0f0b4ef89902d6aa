package packet

import (
	"encoding/binary"
	"unicode/utf8"
)

// MaxRemainingLength is the largest value the 4-byte variable byte integer can hold.
const MaxRemainingLength = 268435455

// decoder reads the primitive data types of section 1.5 from a packet body.
// The first failure sticks in err; later reads return zero values.
type decoder struct {
	b   []byte
	i   int
	err *Error
}

func (d *decoder) fail(code ReasonCode, format string, args ...any) {
	if d.err == nil {
		d.err = errorf(code, format, args...)
	}
}

func (d *decoder) remaining() int { return len(d.b) - d.i }

func (d *decoder) byte(what string) byte {
	if d.err != nil {
		return 0
	}
	if d.i >= len(d.b) {
		d.fail(MalformedPacket, "%s: packet too short", what)
		return 0
	}
	v := d.b[d.i]
	d.i++
	return v
}

func (d *decoder) uint16(what string) uint16 {
	if d.err != nil {
		return 0
	}
	if d.i+2 > len(d.b) {
		d.fail(MalformedPacket, "%s: packet too short", what)
		return 0
	}
	v := binary.BigEndian.Uint16(d.b[d.i:])
	d.i += 2
	return v
}

func (d *decoder) uint32(what string) uint32 {
	if d.err != nil {
		return 0
	}
	if d.i+4 > len(d.b) {
		d.fail(MalformedPacket, "%s: packet too short", what)
		return 0
	}
	v := binary.BigEndian.Uint32(d.b[d.i:])
	d.i += 4
	return v
}

// varint reads a Variable Byte Integer, which must use the minimum number of
// bytes [MQTT-1.5.5-1] and at most four.
func (d *decoder) varint(what string) uint32 {
	if d.err != nil {
		return 0
	}
	v, n, err := decodeVarint(d.b[d.i:])
	if err != nil {
		d.fail(MalformedPacket, "%s: %s", what, err.Msg)
		return 0
	}
	d.i += n
	return v
}

// binary reads Binary Data: a two-byte length and that many bytes. The
// result aliases the packet body.
func (d *decoder) binary(what string) []byte {
	n := int(d.uint16(what))
	if d.err != nil {
		return nil
	}
	if d.i+n > len(d.b) {
		d.fail(MalformedPacket, "%s: length %d exceeds packet", what, n)
		return nil
	}
	v := d.b[d.i : d.i+n : d.i+n]
	d.i += n
	return v
}

// string reads a UTF-8 Encoded String: well-formed UTF-8 with no U+0000
// [MQTT-1.5.4-1] [MQTT-1.5.4-2]. Go's decoder also rejects encoded surrogates.
func (d *decoder) string(what string) string {
	b := d.binary(what)
	if d.err != nil {
		return ""
	}
	if err := checkUTF8(b); err != "" {
		d.fail(MalformedPacket, "%s: %s", what, err)
		return ""
	}
	return string(b)
}

func checkUTF8(b []byte) string {
	for i := 0; i < len(b); {
		c := b[i]
		if c < utf8.RuneSelf {
			if c == 0 {
				return "contains U+0000"
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size <= 1 {
			return "invalid UTF-8"
		}
		i += size
	}
	return ""
}

// decodeVarint decodes a Variable Byte Integer from the start of b.
func decodeVarint(b []byte) (uint32, int, *Error) {
	var v uint32
	var mult uint32 = 1
	for i := 0; i < 4; i++ {
		if i >= len(b) {
			return 0, 0, &Error{Code: MalformedPacket, Msg: "variable byte integer truncated"}
		}
		c := b[i]
		v += uint32(c&0x7F) * mult
		if c&0x80 == 0 {
			if i > 0 && c == 0 {
				return 0, 0, &Error{Code: MalformedPacket, Msg: "variable byte integer not minimally encoded"}
			}
			return v, i + 1, nil
		}
		mult *= 128
	}
	return 0, 0, &Error{Code: MalformedPacket, Msg: "variable byte integer longer than 4 bytes"}
}

func varintLen(v int) int {
	switch {
	case v < 128:
		return 1
	case v < 16384:
		return 2
	case v < 2097152:
		return 3
	default:
		return 4
	}
}

func appendVarint(b []byte, v int) []byte {
	for {
		c := byte(v & 0x7F)
		v >>= 7
		if v > 0 {
			c |= 0x80
		}
		b = append(b, c)
		if v == 0 {
			return b
		}
	}
}

func appendUint16(b []byte, v uint16) []byte { return append(b, byte(v>>8), byte(v)) }

func appendUint32(b []byte, v uint32) []byte {
	return append(b, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

func appendString(b []byte, s string) []byte {
	b = appendUint16(b, uint16(len(s)))
	return append(b, s...)
}

func appendBinary(b []byte, v []byte) []byte {
	b = appendUint16(b, uint16(len(v)))
	return append(b, v...)
}

// frame wraps a body that was appended to b after start+5 reserved bytes with
// its fixed header, moving the body left so no gap remains.
func frame(b []byte, start int, header byte) []byte {
	bodyLen := len(b) - start - 5
	var hdr [5]byte
	hdr[0] = header
	h := appendVarint(hdr[:1], bodyLen)
	hl := len(h)
	copy(b[start:], h)
	if hl < 5 {
		copy(b[start+hl:], b[start+5:])
		b = b[:len(b)-(5-hl)]
	}
	return b
}

// reserve appends the 5 bytes that frame later fills with the fixed header.
func reserve(b []byte) ([]byte, int) {
	start := len(b)
	return append(b, 0, 0, 0, 0, 0), start
}
