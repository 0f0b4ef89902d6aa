package main

import (
	"encoding/binary"
	"sync"
	"sync/atomic"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// putHeader writes the fixed part of a payload; the publisher then patches
// the sequence number and timestamp of each message in place.
func putHeader(p []byte, magic, pubID uint32) {
	binary.BigEndian.PutUint32(p[0:], magic)
	binary.BigEndian.PutUint32(p[4:], pubID)
}

func putSeq(p []byte, seq uint32, ts int64) {
	binary.BigEndian.PutUint32(p[8:], seq)
	binary.BigEndian.PutUint64(p[12:], uint64(ts))
}

// pubTrack is what one subscriber knows of one publisher it expects
// messages from: which sequence numbers arrived, and the highest so far.
type pubTrack struct {
	count uint32
	next  uint32 // highest sequence seen + 1
	seen  []uint64
}

// subscriber counts what one subscriber receives. record runs on the
// connection's reader goroutine only; unique is read live for progress,
// the rest once the reader has stopped.
type subscriber struct {
	magic    uint32
	pubs     []*pubTrack // by publisher id; nil where nothing is expected
	expected uint64

	unique atomic.Uint64
	// dups are deliveries of a message already received; badDups those
	// that arrived with QoS 0 or 2, where the protocol forbids them.
	dups, badDups uint64
	ooo           uint64 // arrived after a later message of the same publisher
	unexpected    uint64 // not from this run, or not expected here
	first, last   int64  // nowNanos of the first and last new message

	lat *latency
	buf []int64
}

func newSubscriber(magic uint32, nPubs int, lat *latency) *subscriber {
	return &subscriber{magic: magic, pubs: make([]*pubTrack, nPubs), lat: lat, buf: make([]int64, 0, 256)}
}

// expect declares that count messages from publisher id should arrive.
func (s *subscriber) expect(id int, count int) {
	s.pubs[id] = &pubTrack{count: uint32(count), seen: make([]uint64, (count+63)/64)}
	s.expected += uint64(count)
}

// record accounts one received payload.
func (s *subscriber) record(p []byte, qos byte, now int64) {
	if len(p) < hdrLen || binary.BigEndian.Uint32(p) != s.magic {
		s.unexpected++
		return
	}
	id := binary.BigEndian.Uint32(p[4:])
	seq := binary.BigEndian.Uint32(p[8:])
	if int(id) >= len(s.pubs) || s.pubs[id] == nil || seq >= s.pubs[id].count {
		s.unexpected++
		return
	}
	t := s.pubs[id]
	w, bit := seq>>6, uint64(1)<<(seq&63)
	if t.seen[w]&bit != 0 {
		s.dups++
		if qos != 1 {
			s.badDups++
		}
		return
	}
	t.seen[w] |= bit
	if seq < t.next {
		s.ooo++
	} else {
		t.next = seq + 1
	}
	if s.first == 0 {
		s.first = now
	}
	s.last = now
	s.unique.Add(1)
	s.buf = append(s.buf, now-int64(binary.BigEndian.Uint64(p[12:])))
	if len(s.buf) == cap(s.buf) {
		s.flush()
	}
}

// flush moves buffered latencies into the shared histogram.
func (s *subscriber) flush() {
	s.lat.record(s.buf)
	s.buf = s.buf[:0]
}

// latency is the run's end-to-end latency histogram, in nanoseconds,
// shared by all subscribers: they add to it in batches, so one histogram
// serves hundreds of subscribers without a lock per message.
type latency struct {
	mu sync.Mutex
	h  *hdrhistogram.Histogram
}

const maxLatency = int64(3600e9)

func newLatency() *latency {
	return &latency{h: hdrhistogram.New(1000, maxLatency, 3)}
}

func (l *latency) record(v []int64) {
	l.mu.Lock()
	for _, x := range v {
		if x < 0 {
			x = 0
		}
		l.h.RecordValue(min(x, maxLatency))
	}
	l.mu.Unlock()
}

// summary returns the figures in microseconds.
func (l *latency) summary() *latencySummary {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.h.TotalCount() == 0 {
		return nil
	}
	us := func(v int64) float64 { return float64(v) / 1e3 }
	return &latencySummary{
		Count: l.h.TotalCount(),
		P50:   us(l.h.ValueAtQuantile(50)),
		P90:   us(l.h.ValueAtQuantile(90)),
		P95:   us(l.h.ValueAtQuantile(95)),
		P99:   us(l.h.ValueAtQuantile(99)),
		P999:  us(l.h.ValueAtQuantile(99.9)),
		Max:   us(l.h.Max()),
		Mean:  l.h.Mean() / 1e3,
	}
}

// snapshot returns a copy of the histogram, for pooling over runs.
func (l *latency) snapshot() *hdrhistogram.Histogram {
	l.mu.Lock()
	defer l.mu.Unlock()
	h := hdrhistogram.New(1000, maxLatency, 3)
	h.Merge(l.h)
	return h
}

// latencySummary is a latency distribution in microseconds.
type latencySummary struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50_us"`
	P90   float64 `json:"p90_us"`
	P95   float64 `json:"p95_us"`
	P99   float64 `json:"p99_us"`
	P999  float64 `json:"p999_us"`
	Max   float64 `json:"max_us"`
	Mean  float64 `json:"mean_us"`
}
