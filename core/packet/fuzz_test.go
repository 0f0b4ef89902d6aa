package packet

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzDecode feeds arbitrary bytes, split at an arbitrary point, to the
// Reader. It must never panic, never hang, and every packet it accepts must
// encode to bytes that decode to the same encoding again.
//
// Run: go test -run x -fuzz FuzzDecode ./core/packet/ (new corpus entries land in
// testdata/fuzz/FuzzDecode; commit the interesting ones).
func FuzzDecode(f *testing.F) {
	for _, c := range validCases {
		f.Add(Encode(c.packet, c.version), c.version, uint16(3))
	}
	for _, c := range malformedCases {
		f.Add(c.wire, c.version, uint16(1))
	}
	f.Fuzz(func(t *testing.T, data []byte, version byte, split uint16) {
		v := []byte{V31, V311, V5}[int(version)%3]
		src := &splitReader{data: data, split: int(split)}
		r := NewReader(src)
		r.Version = v
		r.MaxSize = 1 << 20
		for i := 0; i < 64; i++ {
			p, _, err := r.ReadPacket()
			if err != nil {
				var pe *Error
				if err == io.EOF || err == io.ErrUnexpectedEOF || errors.As(err, &pe) {
					return
				}
				t.Fatalf("unexpected error type %T: %v", err, err)
			}
			ver := r.Version
			wire := Encode(p, ver)
			r2 := NewReader(bytes.NewReader(wire))
			r2.Version = ver
			p2, _, err := r2.ReadPacket()
			if err != nil {
				t.Fatalf("%s re-encoded as % x does not decode: %v", p.Type(), head(wire), err)
			}
			if again := Encode(p2, ver); !bytes.Equal(again, wire) {
				t.Fatalf("%s: encoding not stable:\n% x\n% x", p.Type(), head(wire), head(again))
			}
		}
	})
}

type splitReader struct {
	data  []byte
	split int
	n     int
}

func (s *splitReader) Read(p []byte) (int, error) {
	if len(s.data) == 0 {
		return 0, io.EOF
	}
	k := len(s.data)
	if s.n == 0 && s.split > 0 && s.split < k {
		k = s.split
	}
	s.n++
	k = copy(p, s.data[:k])
	s.data = s.data[k:]
	return k, nil
}
