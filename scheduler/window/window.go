// Package window keeps live aggregates of the numbers published on MQTT
// topics, for scheduler jobs to read without a database: each
// [[aggregate]] names topic filters, where the number is in the payload,
// and sliding windows (1m, 5m, ...); a job asks for the count, sum, min,
// max, average and last value of each matching topic over one window.
//
// The Store is fed from the event bus (Publish events), on its own
// goroutine: the broker's publish path only emits the event, as it does for
// the datastore. Memory is bounded: each window of each topic is a ring of
// Buckets buckets (so old samples expire by being overwritten), a topic
// with no sample for its longest window is forgotten, and each aggregate
// tracks at most max_topics topics; samples of further topics are dropped,
// counted and logged. A payload that holds no number is counted and logged
// too.
//
// Windows are bucketed: a window of length w is Buckets buckets of w/Buckets
// each, aligned on multiples of w/Buckets since the Unix epoch. A query at
// time now covers the bucket holding now and the Buckets-1 before it, so it
// never includes a sample older than w, and it may leave out samples up to
// w/Buckets older than the start of the bucket window (it covers between
// (1-1/Buckets)·w and w). Samples are stamped with the Store's clock when
// they are taken from the bus, not with the publisher's clock.
package window

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidemq/tide/conf"
	"github.com/tidemq/tide/core/event"
	"github.com/tidemq/tide/core/ratelog"
	"github.com/tidemq/tide/core/topic"
)

// Buckets is the number of buckets of every window.
const Buckets = 20

// DefaultMaxTopics is the topic cap of an aggregate that gives none.
const DefaultMaxTopics = 10000

// Options configure a Store. Every field is optional.
type Options struct {
	// Now is the clock that stamps samples and ends windows (default
	// time.Now); tests give the scheduler's fake clock.
	Now func() time.Time
	// Logger receives the drop and invalid-payload warnings (rate-limited).
	Logger *slog.Logger
	// QueueSize is the Store's queue on the event bus (default 10000); a
	// full queue drops events, counted in BusDropped.
	QueueSize int
}

// Stats are the figures of one topic over one window.
type Stats struct {
	Topic string `json:"topic"`
	// Aggregate is the name of the [[aggregate]] that holds the topic.
	Aggregate string  `json:"aggregate"`
	Count     int64   `json:"count"`
	Sum       float64 `json:"sum"`
	Min       float64 `json:"min"`
	Max       float64 `json:"max"`
	Avg       float64 `json:"avg"`
	// Last is the latest sample in the window, taken at LastTime.
	Last     float64   `json:"last"`
	LastTime time.Time `json:"last_time"`
}

// Figures are one aggregate's counters, for $SYS and /metrics.
type Figures struct {
	Aggregate string `json:"aggregate"`
	// Topics is the number of topics tracked now.
	Topics int `json:"topics"`
	// Samples counts the numbers taken.
	Samples uint64 `json:"samples"`
	// Invalid counts the messages on a matching topic whose payload held
	// no number at the configured place.
	Invalid uint64 `json:"invalid"`
	// Dropped counts the samples of new topics refused at max_topics.
	Dropped uint64 `json:"dropped"`
}

// Store holds the aggregates. Its methods are safe for concurrent use.
type Store struct {
	now   func() time.Time
	log   *slog.Logger
	qsize int
	limit ratelog.Limiter

	mu     sync.RWMutex
	aggs   []*aggregate
	byName map[string]*aggregate

	subMu  sync.Mutex
	sub    *event.Subscriber
	wg     sync.WaitGroup
	closed bool
}

type aggregate struct {
	cfg     conf.Aggregate
	path    []string        // JSON path of the value; nil: the payload is the number
	windows []time.Duration // as configured
	longest time.Duration
	max     int
	sweep   time.Duration // how often expired topics are forgotten

	mu        sync.Mutex
	series    map[string]*series
	lastSweep int64 // unix nanoseconds

	samples, invalid, dropped atomic.Uint64
}

// series is one topic of one aggregate: a ring per window.
type series struct {
	rings []ring
	lastT int64 // unix nanoseconds of the latest sample
}

type ring struct {
	width int64 // nanoseconds per bucket
	b     [Buckets]bucket
}

type bucket struct {
	idx           int64 // unix nanoseconds / width
	count         int64
	sum, min, max float64
	last          float64
	lastT         int64
}

// New checks the aggregates and returns a Store holding them, empty and
// not yet fed: call Start with the broker's bus.
func New(aggs []conf.Aggregate, opts Options) (*Store, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = 10000
	}
	s := &Store{now: opts.Now, log: opts.Logger.With("component", "window"), qsize: opts.QueueSize}
	if err := s.Reload(aggs); err != nil {
		return nil, err
	}
	return s, nil
}

// build checks one aggregate's configuration.
func build(i int, c conf.Aggregate) (*aggregate, error) {
	if c.Name == "" && len(c.Topics) > 0 {
		c.Name = c.Topics[0]
	}
	where := fmt.Sprintf("aggregate[%d] %q", i, c.Name)
	if len(c.Topics) == 0 {
		return nil, fmt.Errorf("%s: topics is empty", where)
	}
	for _, f := range c.Topics {
		if err := topic.ValidFilter(f); err != nil {
			return nil, fmt.Errorf("%s: topic filter %q: %w", where, f, err)
		}
	}
	if len(c.Windows) == 0 {
		return nil, fmt.Errorf("%s: windows is empty", where)
	}
	a := &aggregate{cfg: c, max: c.MaxTopics, series: map[string]*series{}}
	if a.max <= 0 {
		a.max = DefaultMaxTopics
	}
	for _, w := range c.Windows {
		if w.Duration < time.Second {
			return nil, fmt.Errorf("%s: window %v is shorter than 1s", where, w.Duration)
		}
		if slices.Contains(a.windows, w.Duration) {
			return nil, fmt.Errorf("%s: window %v is listed twice", where, w.Duration)
		}
		a.windows = append(a.windows, w.Duration)
		a.longest = max(a.longest, w.Duration)
	}
	a.sweep = max(a.longest/Buckets, time.Second)
	if c.Value != "" {
		a.path = strings.Split(c.Value, ".")
		if slices.Contains(a.path, "") {
			return nil, fmt.Errorf("%s: invalid JSON path %q", where, c.Value)
		}
	}
	return a, nil
}

// same reports whether two configurations keep the same data.
func same(a, b conf.Aggregate) bool {
	return a.Name == b.Name && a.Value == b.Value && slices.Equal(a.Topics, b.Topics) && slices.Equal(a.Windows, b.Windows)
}

// Reload replaces the aggregates. An aggregate whose name, topics, value
// and windows are unchanged keeps its data (and takes its new max_topics);
// the others start empty. On error nothing changes.
func (s *Store) Reload(aggs []conf.Aggregate) error {
	built := make([]*aggregate, 0, len(aggs))
	names := map[string]bool{}
	var errs []error
	for i, c := range aggs {
		a, err := build(i, c)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if names[a.cfg.Name] {
			errs = append(errs, fmt.Errorf("aggregate[%d]: duplicate name %q", i, a.cfg.Name))
			continue
		}
		names[a.cfg.Name] = true
		built = append(built, a)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("window: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	byName := make(map[string]*aggregate, len(built))
	for i, a := range built {
		if old := s.byName[a.cfg.Name]; old != nil && same(old.cfg, a.cfg) {
			old.mu.Lock()
			old.max, old.cfg.MaxTopics = a.max, a.cfg.MaxTopics
			old.mu.Unlock()
			built[i] = old
		}
		byName[built[i].cfg.Name] = built[i]
	}
	s.aggs, s.byName = built, byName
	return nil
}

// Start subscribes to the bus's Publish events and takes samples from them
// until Close. Without aggregates it does not subscribe, so that the broker
// builds no events for it.
func (s *Store) Start(bus *event.Bus) {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	if s.sub != nil || s.closed {
		return
	}
	s.mu.RLock()
	n := len(s.aggs)
	s.mu.RUnlock()
	if n == 0 {
		return
	}
	s.sub = bus.Subscribe("window", event.Publish, event.QueueOptions{Size: s.qsize})
	q := s.sub.Queue(0)
	s.wg.Go(func() {
		for e := range q {
			if e.Message != nil {
				s.Add(e.Message.Topic, e.Message.Payload)
			}
		}
	})
}

// BusDropped counts the messages the event bus dropped because the Store's
// queue was full.
func (s *Store) BusDropped() uint64 {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	if s.sub == nil {
		return 0
	}
	return s.sub.Dropped()
}

// Close stops taking samples; the data stays readable.
func (s *Store) Close() {
	s.subMu.Lock()
	s.closed = true
	sub := s.sub
	s.subMu.Unlock()
	if sub != nil {
		sub.Close()
	}
	s.wg.Wait()
}

// Add takes a sample from a message on topicName into every aggregate whose
// filters match it, stamped with the Store's clock.
func (s *Store) Add(topicName string, payload []byte) {
	now := s.now().UnixNano()
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, a := range s.aggs {
		if !a.matches(topicName) {
			continue
		}
		v, err := a.value(payload)
		if err != nil {
			a.invalid.Add(1)
			s.limit.Warn(s.log, "invalid:"+a.cfg.Name, "payload holds no number: sample not taken",
				"aggregate", a.cfg.Name, "topic", topicName, "reason", err.Error(), "invalid_total", a.invalid.Load())
			continue
		}
		if !a.add(topicName, v, now) {
			s.limit.Warn(s.log, "full:"+a.cfg.Name, "aggregate tracks max_topics topics: sample of a new topic dropped",
				"aggregate", a.cfg.Name, "topic", topicName, "max_topics", a.max, "dropped_total", a.dropped.Load())
		}
	}
}

func (a *aggregate) matches(name string) bool {
	for _, f := range a.cfg.Topics {
		if topic.Match(f, name) {
			return true
		}
	}
	return false
}

// value finds the number in a payload.
func (a *aggregate) value(payload []byte) (float64, error) {
	if a.path == nil {
		return number(strings.TrimSpace(string(payload)))
	}
	var doc any
	if err := json.Unmarshal(payload, &doc); err != nil {
		return 0, fmt.Errorf("not JSON (value = %q)", a.cfg.Value)
	}
	for i, key := range a.path {
		obj, ok := doc.(map[string]any)
		if !ok {
			return 0, fmt.Errorf("%s is not a JSON object", strings.Join(a.path[:i], "."))
		}
		if doc, ok = obj[key]; !ok {
			return 0, fmt.Errorf("no %s in the JSON payload", strings.Join(a.path[:i+1], "."))
		}
	}
	switch x := doc.(type) {
	case float64:
		return x, nil
	case string:
		return number(x)
	}
	return 0, fmt.Errorf("%s is a %T, not a number", a.cfg.Value, doc)
}

func number(s string) (float64, error) {
	if s == "" {
		return 0, errors.New("empty payload")
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		if len(s) > 32 {
			s = s[:32] + "..."
		}
		return 0, fmt.Errorf("%q is not a number", s)
	}
	return f, nil
}

// add records v for name at now; false means the topic was new and the
// aggregate full.
func (a *aggregate) add(name string, v float64, now int64) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if now-a.lastSweep >= int64(a.sweep) {
		a.expire(now)
	}
	sr := a.series[name]
	if sr == nil {
		if len(a.series) >= a.max && now-a.lastSweep >= int64(time.Second) {
			a.expire(now) // full: a topic may have gone quiet since the last sweep
		}
		if len(a.series) >= a.max {
			a.dropped.Add(1)
			return false
		}
		sr = &series{rings: make([]ring, len(a.windows))}
		for i, w := range a.windows {
			sr.rings[i].width = max(int64(w)/Buckets, 1)
		}
		a.series[name] = sr
	}
	for i := range sr.rings {
		sr.rings[i].add(now, v)
	}
	sr.lastT = max(sr.lastT, now)
	a.samples.Add(1)
	return true
}

// expire forgets the topics with no sample within the longest window.
func (a *aggregate) expire(now int64) {
	a.lastSweep = now
	for name, sr := range a.series {
		if now-sr.lastT >= int64(a.longest) {
			delete(a.series, name)
		}
	}
}

func (r *ring) add(t int64, v float64) {
	k := floorDiv(t, r.width)
	b := &r.b[mod(k, Buckets)]
	if b.idx != k || b.count == 0 {
		*b = bucket{idx: k, min: v, max: v}
	}
	b.count++
	b.sum += v
	b.min = min(b.min, v)
	b.max = max(b.max, v)
	if t >= b.lastT {
		b.last, b.lastT = v, t
	}
}

// fold adds the buckets of the window ending at now to st.
func (r *ring) fold(now int64, st *Stats, lastT *int64) {
	k := floorDiv(now, r.width)
	for i := range r.b {
		b := &r.b[i]
		if b.count == 0 || b.idx > k || b.idx <= k-Buckets {
			continue
		}
		if st.Count == 0 {
			st.Min, st.Max = b.min, b.max
		} else {
			st.Min, st.Max = min(st.Min, b.min), max(st.Max, b.max)
		}
		st.Count += b.count
		st.Sum += b.sum
		if b.lastT >= *lastT {
			st.Last, *lastT = b.last, b.lastT
		}
	}
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func mod(a, b int64) int64 {
	m := a % b
	if m < 0 {
		m += b
	}
	return m
}

// Query returns the figures over window of every topic matching filter (a
// topic filter, or a topic name) that has samples in the window, sorted by
// topic. With aggregate "", every aggregate keeping that window is asked,
// and a topic held by several is reported from the first in configuration
// order; otherwise only the aggregate named aggName. It fails for an invalid filter, an
// unknown aggregate, or a window that no aggregate (or not the named one)
// keeps.
func (s *Store) Query(filter string, window time.Duration, aggName string) ([]Stats, error) {
	if err := topic.ValidFilter(filter); err != nil {
		return nil, fmt.Errorf("invalid topic filter %q: %w", filter, err)
	}
	now := s.now().UnixNano()
	s.mu.RLock()
	defer s.mu.RUnlock()
	var aggs []*aggregate
	if aggName != "" {
		a := s.byName[aggName]
		if a == nil {
			return nil, fmt.Errorf("no [[aggregate]] named %q (configured: %s)", aggName, s.describe())
		}
		if !slices.Contains(a.windows, window) {
			return nil, fmt.Errorf("aggregate %q keeps no %s window (configured: %s)", aggName, fmtDuration(window), s.describe())
		}
		aggs = []*aggregate{a}
	} else {
		for _, a := range s.aggs {
			if slices.Contains(a.windows, window) {
				aggs = append(aggs, a)
			}
		}
		if len(aggs) == 0 {
			return nil, fmt.Errorf("no [[aggregate]] keeps a %s window (configured: %s)", fmtDuration(window), s.describe())
		}
	}
	exact := !strings.ContainsAny(filter, "+#")
	seen := map[string]bool{}
	var out []Stats
	for _, a := range aggs {
		wi := slices.Index(a.windows, window)
		a.mu.Lock()
		collect := func(name string, sr *series) {
			if seen[name] {
				return
			}
			st := Stats{Topic: name, Aggregate: a.cfg.Name}
			var lastT int64
			sr.rings[wi].fold(now, &st, &lastT)
			if st.Count == 0 {
				return
			}
			seen[name] = true
			st.Avg = st.Sum / float64(st.Count)
			st.LastTime = time.Unix(0, lastT)
			out = append(out, st)
		}
		if exact {
			if sr := a.series[filter]; sr != nil {
				collect(filter, sr)
			}
		} else {
			for name, sr := range a.series {
				if topic.Match(filter, name) {
					collect(name, sr)
				}
			}
		}
		a.mu.Unlock()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Topic < out[j].Topic })
	return out, nil
}

// describe lists the aggregates and their windows, for error messages.
func (s *Store) describe() string {
	if len(s.aggs) == 0 {
		return "none"
	}
	parts := make([]string, len(s.aggs))
	for i, a := range s.aggs {
		ws := make([]string, len(a.windows))
		for k, w := range a.windows {
			ws[k] = fmtDuration(w)
		}
		parts[i] = a.cfg.Name + ": " + strings.Join(ws, ", ")
	}
	return strings.Join(parts, "; ")
}

// fmtDuration writes durations as the configuration does ("5m", not "5m0s").
func fmtDuration(d time.Duration) string {
	b, _ := conf.Duration{Duration: d}.MarshalText()
	return string(b)
}

// Figures returns each aggregate's counters, in configuration order.
func (s *Store) Figures() []Figures {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Figures, len(s.aggs))
	for i, a := range s.aggs {
		a.mu.Lock()
		n := len(a.series)
		a.mu.Unlock()
		out[i] = Figures{Aggregate: a.cfg.Name, Topics: n, Samples: a.samples.Load(), Invalid: a.invalid.Load(), Dropped: a.dropped.Load()}
	}
	return out
}
