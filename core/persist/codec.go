package persist

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/tidemq/tide/core/packet"
)

// The stored records are a version byte followed by fields in a compact
// binary form: unsigned varints, and strings and byte slices with a varint
// length. Adding a field means a new version that still reads the old one.
const recordVersion = 1

var errCorrupt = errors.New("record is truncated or corrupt")

type enc struct{ b []byte }

func (e *enc) u(v uint64)     { e.b = binary.AppendUvarint(e.b, v) }
func (e *enc) s(v string)     { e.u(uint64(len(v))); e.b = append(e.b, v...) }
func (e *enc) bytes(v []byte) { e.u(uint64(len(v))); e.b = append(e.b, v...) }
func (e *enc) byte1(v byte)   { e.b = append(e.b, v) }
func (e *enc) flag(v bool) {
	if v {
		e.b = append(e.b, 1)
	} else {
		e.b = append(e.b, 0)
	}
}
func (e *enc) time(t time.Time) {
	if t.IsZero() {
		e.u(0)
		return
	}
	e.u(uint64(t.UnixNano()))
}

type dec struct {
	b   []byte
	err error
}

func (d *dec) u() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errCorrupt
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) raw() []byte {
	n := d.u()
	if d.err != nil {
		return nil
	}
	if uint64(len(d.b)) < n {
		d.err = errCorrupt
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *dec) s() string     { return string(d.raw()) }
func (d *dec) bytes() []byte { return append([]byte(nil), d.raw()...) }
func (d *dec) byte1() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.err = errCorrupt
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}
func (d *dec) flag() bool { return d.byte1() == 1 }
func (d *dec) time() time.Time {
	v := d.u()
	if v == 0 {
		return time.Time{}
	}
	return time.Unix(0, int64(v))
}

func (e *enc) message(m *Message) {
	if m == nil {
		e.flag(false)
		return
	}
	e.flag(true)
	e.s(m.ID)
	e.s(m.Topic)
	e.bytes(m.Payload)
	e.byte1(m.QoS)
	e.flag(m.Retain)
	e.s(m.ClientID)
	e.s(m.Username)
	e.time(m.Received)
	e.time(m.Expiry)
	e.u(uint64(m.TTL))
	p := m.Props
	if p == nil {
		e.flag(false)
		return
	}
	e.flag(true)
	if p.PayloadFormat != nil {
		e.byte1(1 + *p.PayloadFormat)
	} else {
		e.byte1(0)
	}
	e.s(p.ContentType)
	e.s(p.ResponseTopic)
	e.flag(p.CorrelationData != nil)
	e.bytes(p.CorrelationData)
	e.u(uint64(len(p.User)))
	for _, u := range p.User {
		e.s(u.Key)
		e.s(u.Value)
	}
}

func (d *dec) message() *Message {
	if !d.flag() {
		return nil
	}
	m := &Message{
		ID:       d.s(),
		Topic:    d.s(),
		Payload:  d.bytes(),
		QoS:      d.byte1(),
		Retain:   d.flag(),
		ClientID: d.s(),
		Username: d.s(),
		Received: d.time(),
		Expiry:   d.time(),
		TTL:      time.Duration(d.u()),
	}
	if !d.flag() {
		return m
	}
	p := &packet.Properties{}
	if pf := d.byte1(); pf > 0 {
		v := pf - 1
		p.PayloadFormat = &v
	}
	p.ContentType = d.s()
	p.ResponseTopic = d.s()
	hasCD := d.flag()
	cd := d.bytes()
	if hasCD {
		p.CorrelationData = append([]byte{}, cd...)
	}
	n := d.u()
	if n > uint64(len(d.b)) {
		d.err = errCorrupt
		return m
	}
	for i := uint64(0); i < n && d.err == nil; i++ {
		p.User = append(p.User, packet.UserProperty{Key: d.s(), Value: d.s()})
	}
	m.Props = p
	return m
}

func encodeMessage(m *Message) []byte {
	e := enc{b: []byte{recordVersion}}
	e.message(m)
	return e.b
}

func decodeMessage(b []byte) (*Message, error) {
	d, err := open(b)
	if err != nil {
		return nil, err
	}
	m := d.message()
	return m, d.finish()
}

func encodeSession(s *Session) []byte {
	e := enc{b: []byte{recordVersion}}
	e.s(s.ID)
	e.u(uint64(s.Expiry))
	e.time(s.Disconnected)
	e.message(s.Will)
	e.u(uint64(s.WillDelay))
	e.s(s.Username)
	return e.b
}

func decodeSession(b []byte) (*Session, error) {
	d, err := open(b)
	if err != nil {
		return nil, err
	}
	s := &Session{ID: d.s(), Expiry: uint32(d.u()), Disconnected: d.time(), Will: d.message(), WillDelay: uint32(d.u())}
	if len(d.b) > 0 { // absent from records written before it was added
		s.Username = d.s()
	}
	return s, d.finish()
}

func encodeSub(s *Subscription) []byte {
	e := enc{b: []byte{recordVersion}}
	e.s(s.Raw)
	e.s(s.Filter)
	e.s(s.Group)
	e.byte1(s.QoS)
	e.flag(s.NoLocal)
	e.flag(s.RetainAsPublished)
	e.byte1(s.RetainHandling)
	e.u(uint64(s.ID))
	return e.b
}

func decodeSub(b []byte) (*Subscription, error) {
	d, err := open(b)
	if err != nil {
		return nil, err
	}
	s := &Subscription{Raw: d.s(), Filter: d.s(), Group: d.s(), QoS: d.byte1(), NoLocal: d.flag(),
		RetainAsPublished: d.flag(), RetainHandling: d.byte1(), ID: uint32(d.u())}
	return s, d.finish()
}

func encodeEntry(en *Entry) []byte {
	e := enc{b: []byte{recordVersion}}
	e.u(en.Seq)
	e.message(en.Msg)
	e.byte1(en.QoS)
	e.flag(en.Retain)
	e.u(uint64(len(en.SubIDs)))
	for _, id := range en.SubIDs {
		e.u(uint64(id))
	}
	e.u(uint64(en.PID))
	e.byte1(en.State)
	return e.b
}

func decodeEntry(b []byte) (*Entry, error) {
	d, err := open(b)
	if err != nil {
		return nil, err
	}
	en := &Entry{Seq: d.u(), Msg: d.message(), QoS: d.byte1(), Retain: d.flag()}
	n := d.u()
	if n > uint64(len(d.b)) {
		return nil, errCorrupt
	}
	for i := uint64(0); i < n; i++ {
		en.SubIDs = append(en.SubIDs, uint32(d.u()))
	}
	en.PID = uint16(d.u())
	en.State = d.byte1()
	return en, d.finish()
}

func open(b []byte) (*dec, error) {
	if len(b) == 0 {
		return nil, errCorrupt
	}
	if b[0] != recordVersion {
		return nil, fmt.Errorf("record version %d is not supported (this version reads %d)", b[0], recordVersion)
	}
	return &dec{b: b[1:]}, nil
}

func (d *dec) finish() error {
	if d.err != nil {
		return d.err
	}
	if len(d.b) != 0 {
		return errCorrupt
	}
	return nil
}
