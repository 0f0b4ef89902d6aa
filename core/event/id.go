package event

import (
	"crypto/rand"
	"encoding/binary"
	"sync"
	"time"
)

// base32hex without padding keeps IDs sortable as strings.
const idAlphabet = "0123456789abcdefghijklmnopqrstuv"

var idGen struct {
	sync.Mutex
	last  int64
	seq   uint32
	node  [4]byte
	ready bool
}

// NewID returns a unique, time-ordered message identifier of 26 characters:
// 8 bytes of Unix nanoseconds (monotonic within the process), 4 bytes of a
// per-process random node, 4 bytes of sequence. IDs sort by creation time
// within one process; across processes the node keeps them distinct.
func NewID() string {
	idGen.Lock()
	if !idGen.ready {
		_, _ = rand.Read(idGen.node[:])
		idGen.ready = true
	}
	now := time.Now().UnixNano()
	if now <= idGen.last {
		now = idGen.last
		idGen.seq++
	} else {
		idGen.last = now
		idGen.seq = 0
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[0:8], uint64(now))
	copy(b[8:12], idGen.node[:])
	binary.BigEndian.PutUint32(b[12:16], idGen.seq)
	idGen.Unlock()
	return encodeID(b)
}

func encodeID(b [16]byte) string {
	// 128 bits in 5-bit groups: 26 characters (the last one holds 3 bits).
	var out [26]byte
	hi := binary.BigEndian.Uint64(b[0:8])
	lo := binary.BigEndian.Uint64(b[8:16])
	for i := 0; i < 26; i++ {
		shift := 123 - 5*i // bit offset of this group from the LSB of 128 bits
		var v uint64
		switch {
		case shift >= 64:
			v = hi >> uint(shift-64)
		case shift > 59:
			v = hi<<uint(64-shift) | lo>>uint(shift)
		case shift >= 0:
			v = lo >> uint(shift)
		default:
			v = lo << uint(-shift)
		}
		out[i] = idAlphabet[v&31]
	}
	return string(out[:])
}
