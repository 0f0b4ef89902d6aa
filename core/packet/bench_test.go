package packet

import (
	"bytes"
	"testing"
)

// Run: go test -run x -bench . -benchmem ./core/packet/

func BenchmarkEncodePublish(b *testing.B) {
	for _, v := range []byte{V311, V5} {
		p := &Publish{QoS: 1, Topic: "devices/sensor-1234/temperature", PacketID: 42, Payload: make([]byte, 64)}
		buf := make([]byte, 0, 256)
		b.Run(levelName(v), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(p.Size(v)))
			for i := 0; i < b.N; i++ {
				buf = p.Append(buf[:0], v)
			}
		})
	}
}

// loopReader serves the same bytes forever.
type loopReader struct {
	data []byte
	off  int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		k := copy(p[n:], l.data[l.off:])
		n += k
		l.off = (l.off + k) % len(l.data)
	}
	return n, nil
}

func BenchmarkDecodePublish(b *testing.B) {
	for _, v := range []byte{V311, V5} {
		wire := Encode(&Publish{QoS: 1, Topic: "devices/sensor-1234/temperature", PacketID: 42, Payload: make([]byte, 64)}, v)
		for _, reuse := range []bool{false, true} {
			name := levelName(v)
			if reuse {
				name += "/reuse" // as the broker reads
			}
			b.Run(name, func(b *testing.B) {
				r := NewReader(&loopReader{data: bytes.Repeat(wire, 64)})
				r.Version = v
				r.Reuse = reuse
				b.ReportAllocs()
				b.SetBytes(int64(len(wire)))
				for i := 0; i < b.N; i++ {
					if _, _, err := r.ReadPacket(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
