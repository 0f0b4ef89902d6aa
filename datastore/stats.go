package datastore

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Stats are one Runner's figures, updated as it works; read them with
// Snapshot. Counters only grow; gauges go up and down.
type Stats struct {
	// Queued (gauge) is the records in memory: queued plus being written.
	Queued atomic.Int64
	// Written counts the records the sink stored.
	Written atomic.Uint64
	// Retried counts record write attempts that failed temporarily and were
	// tried again (a record retried three times counts three).
	Retried atomic.Uint64
	// Spooled counts the records written to the disk spool.
	Spooled atomic.Uint64
	// SpoolBytes (gauge) is the size of the spool files.
	SpoolBytes atomic.Int64
	// Replayed counts the records the sink stored from the spool.
	Replayed atomic.Uint64
	// DeadLettered counts the records the sink rejected for good, written
	// to the dead-letter file.
	DeadLettered atomic.Uint64
	// Dropped counts the records lost: the oldest ones given up under the
	// drop_oldest policy, the rest of a damaged spool segment, records left
	// in memory at a shutdown without spool, and rejected records the
	// dead-letter file could not take.
	Dropped atomic.Uint64
	// Refused counts the records Accept or TryAccept turned away under the
	// backpressure policy because memory and spool were full: the caller
	// dropped them unless it tried again.
	Refused atomic.Uint64
	// Batches counts the write attempts.
	Batches atomic.Uint64

	mu        sync.Mutex
	lastErr   string
	lastErrAt time.Time
	lastLat   time.Duration
	ewmaLat   float64 // nanoseconds
}

func (s *Stats) setError(err error) {
	s.mu.Lock()
	s.lastErr, s.lastErrAt = err.Error(), time.Now()
	s.mu.Unlock()
}

// latencyAlpha weighs the newest batch in the latency average: about the
// last ten batches count.
const latencyAlpha = 0.2

func (s *Stats) addLatency(d time.Duration) {
	s.mu.Lock()
	s.lastLat = d
	if s.ewmaLat == 0 {
		s.ewmaLat = float64(d)
	} else {
		s.ewmaLat += latencyAlpha * (float64(d) - s.ewmaLat)
	}
	s.mu.Unlock()
}

// Snapshot is a copy of a Runner's figures at one moment.
type Snapshot struct {
	Sink         string        `json:"sink"`
	Type         string        `json:"type,omitempty"`
	Connected    bool          `json:"connected"`
	Spooling     bool          `json:"spooling"`
	Saturated    bool          `json:"saturated"`
	Queued       int64         `json:"queued"`
	Written      uint64        `json:"written"`
	Retried      uint64        `json:"retried"`
	Spooled      uint64        `json:"spooled"`
	SpoolBytes   int64         `json:"spool_bytes"`
	Replayed     uint64        `json:"replayed"`
	DeadLettered uint64        `json:"dead_lettered"`
	Dropped      uint64        `json:"dropped"`
	Refused      uint64        `json:"refused"`
	Batches      uint64        `json:"batches"`
	LastError    string        `json:"last_error,omitempty"`
	LastErrorAt  time.Time     `json:"last_error_at,omitzero"`
	BatchLatency time.Duration `json:"batch_latency_ns"`
	// BatchLatencyAvg is an exponentially weighted moving average.
	BatchLatencyAvg time.Duration `json:"batch_latency_avg_ns"`
}

// Snapshot copies the figures.
func (s *Stats) Snapshot() Snapshot {
	s.mu.Lock()
	snap := Snapshot{
		LastError: s.lastErr, LastErrorAt: s.lastErrAt,
		BatchLatency: s.lastLat, BatchLatencyAvg: time.Duration(s.ewmaLat),
	}
	s.mu.Unlock()
	snap.Queued = s.Queued.Load()
	snap.Written = s.Written.Load()
	snap.Retried = s.Retried.Load()
	snap.Spooled = s.Spooled.Load()
	snap.SpoolBytes = s.SpoolBytes.Load()
	snap.Replayed = s.Replayed.Load()
	snap.DeadLettered = s.DeadLettered.Load()
	snap.Dropped = s.Dropped.Load()
	snap.Refused = s.Refused.Load()
	snap.Batches = s.Batches.Load()
	return snap
}

// Values lists the figures as $SYS-style name/value pairs, names relative to
// the sink ("written", "spool/bytes", ...), for $SYS and metrics exporters.
func (s Snapshot) Values(emit func(name, value string)) {
	u := func(v uint64) string { return strconv.FormatUint(v, 10) }
	i := func(v int64) string { return strconv.FormatInt(v, 10) }
	b := func(v bool) string {
		if v {
			return "1"
		}
		return "0"
	}
	emit("connected", b(s.Connected))
	emit("spooling", b(s.Spooling))
	emit("saturated", b(s.Saturated))
	emit("queued", i(s.Queued))
	emit("written", u(s.Written))
	emit("retried", u(s.Retried))
	emit("spool/records", u(s.Spooled))
	emit("spool/bytes", i(s.SpoolBytes))
	emit("spool/replayed", u(s.Replayed))
	emit("dead_lettered", u(s.DeadLettered))
	emit("dropped", u(s.Dropped))
	emit("refused", u(s.Refused))
	emit("batches", u(s.Batches))
	emit("batch_latency_ms", strconv.FormatFloat(float64(s.BatchLatency)/1e6, 'f', 3, 64))
	emit("batch_latency_avg_ms", strconv.FormatFloat(float64(s.BatchLatencyAvg)/1e6, 'f', 3, 64))
	emit("last_error", s.LastError)
	if !s.LastErrorAt.IsZero() {
		emit("last_error_at", s.LastErrorAt.UTC().Format(time.RFC3339))
	}
}
