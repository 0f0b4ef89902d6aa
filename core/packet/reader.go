package packet

import (
	"io"
)

const (
	minReadBuf = 512
	maxReadBuf = 64 << 10
)

// Reader reads packets from a byte stream with a buffer that adapts to the
// traffic: it grows while reads fill it and shrinks back when the connection
// goes quiet, so that idle connections hold little memory.
type Reader struct {
	src  io.Reader
	buf  []byte
	r, w int
	// MaxSize is the largest packet accepted, counting the fixed header as
	// MQTT 5's Maximum Packet Size does; 0 means the protocol limit.
	MaxSize int
	// Version is the protocol level used to decode; CONNECT sets it.
	Version byte
	// Reuse makes ReadPacket decode PUBLISH and the four acknowledgements
	// into values the Reader owns and overwrites on its next call, instead
	// of allocating one per packet. Set it only when no caller keeps the
	// *Publish or *Ack (their topic, payload and properties are fresh
	// allocations and may be kept).
	Reuse   bool
	lastN   int
	scratch *scratch
}

// scratch holds the packets a Reader with Reuse decodes into. It is
// allocated on the first such packet, so idle connections do not pay for it.
type scratch struct {
	pub Publish
	ack Ack
}

// NewReader returns a Reader on src.
func NewReader(src io.Reader) *Reader {
	return &Reader{src: src, buf: make([]byte, minReadBuf)}
}

// Buffered returns how many bytes have been read but not yet decoded.
func (r *Reader) Buffered() int { return r.w - r.r }

// fill reads more bytes into the buffer, compacting and resizing it first.
func (r *Reader) fill() error {
	if r.r == r.w {
		r.r, r.w = 0, 0
		// Quiet connection: give memory back.
		if len(r.buf) > minReadBuf && r.lastN < len(r.buf)/8 {
			r.buf = make([]byte, len(r.buf)/2)
		}
	} else if r.r > 0 {
		r.w = copy(r.buf, r.buf[r.r:r.w])
		r.r = 0
	}
	if r.w == len(r.buf) {
		nb := make([]byte, min(len(r.buf)*2, maxReadBuf))
		if len(nb) <= len(r.buf) {
			return nil
		}
		copy(nb, r.buf[:r.w])
		r.buf = nb
	}
	n, err := r.src.Read(r.buf[r.w:])
	r.w += n
	r.lastN = n
	if n > 0 {
		if r.w == len(r.buf) && len(r.buf) < maxReadBuf {
			nb := make([]byte, len(r.buf)*2)
			copy(nb, r.buf[:r.w])
			r.buf = nb
		}
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// PeekHeader returns the first byte of the next packet without consuming
// it, so that a server can refuse a connection that does not start with
// CONNECT before waiting for a body that may never come.
func (r *Reader) PeekHeader() (byte, error) {
	for r.w == r.r {
		if err := r.fill(); err != nil {
			return 0, err
		}
	}
	return r.buf[r.r], nil
}

// ReadPacket reads and decodes the next packet. It returns the packet and its
// size on the wire. Protocol violations are *Error values; a packet over
// MaxSize is an *Error with PacketTooLarge, reported before its body is read.
// I/O errors are returned as they are (io.EOF on a clean close between
// packets, io.ErrUnexpectedEOF inside one).
func (r *Reader) ReadPacket() (Packet, int, error) {
	header, body, size, err := r.ReadRaw()
	if err != nil {
		return nil, size, err
	}
	var pub *Publish
	var ack *Ack
	if t := Type(header >> 4); r.Reuse && t >= PUBLISH && t <= PUBCOMP {
		if r.scratch == nil {
			r.scratch = new(scratch)
		}
		pub, ack = &r.scratch.pub, &r.scratch.ack
	}
	p, err := decodeInto(header, body, r.Version, pub, ack)
	if err != nil {
		return nil, size, err
	}
	if c, ok := p.(*Connect); ok {
		r.Version = c.ProtocolLevel
	}
	return p, size, nil
}

// ReadRaw reads the next packet's first byte and body without decoding it.
// The body of a PUBLISH or CONNECT is a fresh allocation that the decoded
// packet may alias; other bodies alias the reader's buffer until the next call.
func (r *Reader) ReadRaw() (header byte, body []byte, size int, err error) {
	for r.w-r.r < 2 {
		if err := r.fill(); err != nil {
			if err == io.EOF && r.w > r.r {
				err = io.ErrUnexpectedEOF
			}
			return 0, nil, 0, err
		}
	}
	var remLen uint32
	var n int
	for {
		var perr *Error
		remLen, n, perr = decodeVarint(r.buf[r.r+1 : r.w])
		if perr == nil {
			break
		}
		if perr.Msg != "variable byte integer truncated" {
			return 0, nil, 0, &Error{Code: MalformedPacket, Msg: "remaining length: " + perr.Msg}
		}
		if err := r.fill(); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, nil, 0, err
		}
	}
	header = r.buf[r.r]
	size = 1 + n + int(remLen)
	max := r.MaxSize
	if max <= 0 || max > MaxRemainingLength+5 {
		max = MaxRemainingLength + 5
	}
	if size > max {
		return header, nil, size, errorf(PacketTooLarge, "%s of %d bytes exceeds the maximum packet size %d", Type(header>>4), size, max)
	}
	r.r += 1 + n
	t := Type(header >> 4)
	fresh := t == PUBLISH || t == CONNECT
	if avail := r.w - r.r; avail >= int(remLen) {
		body = r.buf[r.r : r.r+int(remLen)]
		r.r += int(remLen)
		if fresh {
			body = append(make([]byte, 0, len(body)), body...)
		}
		return header, body, size, nil
	}
	if !fresh && int(remLen) <= maxReadBuf {
		for r.w-r.r < int(remLen) {
			if err := r.fill(); err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return 0, nil, 0, err
			}
		}
		body = r.buf[r.r : r.r+int(remLen)]
		r.r += int(remLen)
		return header, body, size, nil
	}
	body = make([]byte, remLen)
	k := copy(body, r.buf[r.r:r.w])
	r.r, r.w = 0, 0
	if _, err := io.ReadFull(r.src, body[k:]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, 0, err
	}
	return header, body, size, nil
}
