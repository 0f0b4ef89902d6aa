package datastore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/tidemq/tide/core/event"
	"github.com/tidemq/tide/core/ratelog"
	"github.com/tidemq/tide/core/topic"
)

// Route sends the messages whose topic matches one of Topics (MQTT filters)
// to each of Sinks (names of Runners).
type Route struct {
	Topics []string
	Sinks  []string
}

// RouterOptions configure a Router.
type RouterOptions struct {
	// QueueSize and Shards size the Router's queues on the event bus
	// (defaults 10000 and 1). With several shards, one client's messages
	// stay in order, not all messages.
	QueueSize, Shards int
	// AcceptTimeout is how long a record may wait for a saturated sink
	// under the backpressure policy before it is refused (default 1s). The
	// wait holds up the Router's queue on the bus, which drops (and counts)
	// when full: the wait moves the loss point, it does not add one.
	AcceptTimeout time.Duration
	Log           *slog.Logger
}

// Router feeds the Runners from the event bus: each published message goes,
// once, to every sink that one of its routes names.
type Router struct {
	runners []*Runner
	byName  map[string]int
	routes  []route
	opts    RouterOptions
	log     *slog.Logger
	limit   ratelog.Limiter

	received atomic.Uint64 // messages seen
	refused  atomic.Uint64 // records a sink did not take
	// stalled[i] is 1 + runner i's Written count when a wait for it timed
	// out, 0 otherwise: until it writes again, records are refused without
	// waiting, so that a dead sink does not hold up the others.
	stalled []atomic.Uint64

	mu     sync.Mutex
	sub    *event.Subscriber
	wg     sync.WaitGroup
	closed bool
	// feed is sub, for lock-free reads of its backlog by Saturated.
	feed atomic.Pointer[event.Subscriber]
}

type route struct {
	filters []string
	sinks   []int
}

// NewRouter checks the routes against the runners. The Router owns the
// runners from then on: its Close closes them.
func NewRouter(runners []*Runner, routes []Route, opts RouterOptions) (*Router, error) {
	if opts.QueueSize <= 0 {
		opts.QueueSize = 10000
	}
	if opts.Shards <= 0 {
		opts.Shards = 1
	}
	if opts.AcceptTimeout <= 0 {
		opts.AcceptTimeout = time.Second
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	rt := &Router{runners: runners, byName: map[string]int{}, opts: opts, log: opts.Log,
		stalled: make([]atomic.Uint64, len(runners))}
	for i, r := range runners {
		if _, dup := rt.byName[r.Name()]; dup {
			return nil, fmt.Errorf("datastore: two sinks named %q", r.Name())
		}
		rt.byName[r.Name()] = i
	}
	var errs []error
	for i, rc := range routes {
		var ro route
		for _, f := range rc.Topics {
			if err := topic.ValidFilter(f); err != nil {
				errs = append(errs, fmt.Errorf("route %d: topic filter %q: %w", i, f, err))
				continue
			}
			ro.filters = append(ro.filters, f)
		}
		for _, name := range rc.Sinks {
			idx, ok := rt.byName[name]
			if !ok {
				errs = append(errs, fmt.Errorf("route %d: unknown sink %q", i, name))
				continue
			}
			ro.sinks = append(ro.sinks, idx)
		}
		rt.routes = append(rt.routes, ro)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return rt, nil
}

// Start subscribes to the bus's Publish events and feeds the runners until
// Close.
func (rt *Router) Start(bus *event.Bus) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.sub != nil || rt.closed {
		return
	}
	rt.sub = bus.Subscribe("datastore", event.Publish, event.QueueOptions{Size: rt.opts.QueueSize, Shards: rt.opts.Shards})
	rt.feed.Store(rt.sub)
	for i := range rt.sub.Shards() {
		q := rt.sub.Queue(i)
		rt.wg.Go(func() {
			for e := range q {
				if e.Message != nil {
					rt.Dispatch(e.Message)
				}
			}
		})
	}
}

// Subscriber returns the Router's subscription to the bus (nil before
// Start), whose Dropped counts the messages the bus could not queue.
func (rt *Router) Subscriber() *event.Subscriber {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.sub
}

// Dispatch hands m's record to each sink its routes name, once per sink.
func (rt *Router) Dispatch(m *event.Message) {
	rt.received.Add(1)
	var seenBuf [64]bool
	var seen []bool
	if len(rt.runners) <= len(seenBuf) {
		seen = seenBuf[:len(rt.runners)]
	} else {
		seen = make([]bool, len(rt.runners))
	}
	var rec Record
	built := false
	for _, ro := range rt.routes {
		if !ro.match(m.Topic) {
			continue
		}
		for _, idx := range ro.sinks {
			if seen[idx] {
				continue
			}
			seen[idx] = true
			if !built {
				rec, built = RecordFromMessage(m), true
			}
			rt.hand(idx, rec)
		}
	}
}

func (ro *route) match(name string) bool {
	for _, f := range ro.filters {
		if topic.Match(f, name) {
			return true
		}
	}
	return false
}

// hand gives rec to runner idx, waiting up to AcceptTimeout when it is
// saturated, unless the last such wait timed out and it has not written
// anything since.
func (rt *Router) hand(idx int, rec Record) error {
	r := rt.runners[idx]
	ok, _, err := r.offer(rec)
	if ok {
		return nil
	}
	switch {
	case err != nil:
		r.stats.Refused.Add(1)
	case rt.stalled[idx].Load() == r.stats.Written.Load()+1:
		err = fmt.Errorf("%w: no progress since the last wait", ErrFull)
		r.stats.Refused.Add(1)
	default:
		ctx, cancel := context.WithTimeout(context.Background(), rt.opts.AcceptTimeout)
		err = r.Accept(ctx, rec)
		cancel()
		if err == nil {
			rt.stalled[idx].Store(0)
			return nil
		}
		rt.stalled[idx].Store(r.stats.Written.Load() + 1)
	}
	rt.refused.Add(1)
	if ok, suppressed := rt.limit.Allow(r.Name()); ok {
		rt.log.Warn("sink did not take a record: dropped", "sink", r.Name(), "err", err,
			"refused_total", r.stats.Refused.Load(), "similar_suppressed", suppressed)
	}
	return err
}

// Write hands rec to the named sink (Lua's sink.write). An empty ID or a
// zero Time is filled in, and JSON is set from a JSON payload. It waits up
// to AcceptTimeout for a saturated sink, and says so in its error.
func (rt *Router) Write(sink string, rec Record) error {
	idx, ok := rt.byName[sink]
	if !ok {
		return fmt.Errorf("unknown sink %q", sink)
	}
	if rec.ID == "" {
		rec.ID = event.NewID()
	}
	if rec.Time.IsZero() {
		rec.Time = time.Now()
	}
	if rec.JSON == nil && isJSON(rec.Payload) {
		rec.JSON = rec.Payload
	}
	rt.received.Add(1)
	if err := rt.hand(idx, rec); err != nil {
		return fmt.Errorf("sink %q: %w", sink, err)
	}
	return nil
}

// MapWriter adapts a Router to writers of plain field maps, such as the Lua
// "sink" module's Writer (plugins.SinkWriter): cmd/tide wires it with
// m.SetSinkWriter(datastore.MapWriter{Router: rt}). The map is converted
// by RecordFromMap.
type MapWriter struct{ Router *Router }

// Write converts fields to a Record and hands it to the named sink.
func (w MapWriter) Write(sink string, fields map[string]any) error {
	rec, err := RecordFromMap(fields)
	if err != nil {
		return err
	}
	return w.Router.Write(sink, rec)
}

// Saturation is what the broker asks of the datastore before it
// acknowledges a QoS 1 or 2 publish, so that publishers slow down to what
// saturated sinks take. core cannot import datastore: it declares the same
// interface where it uses it, and *Router satisfies it. Saturated is cheap
// enough for every publish; WaitUnsaturated is called only when it is true,
// with a bounded context (the broker acknowledges anyway when it expires).
type Saturation interface {
	Saturated(topic string) bool
	WaitUnsaturated(ctx context.Context, topic string) error
}

var _ Saturation = (*Router)(nil)

// Saturated reports whether a sink that topic routes to is saturated
// (Runner.Pressure). When no sink is, it costs one atomic load per sink and
// no topic matching, so the broker can ask it for every QoS 1/2 publish.
func (rt *Router) Saturated(topicName string) bool {
	return rt.backlogged() || rt.saturated(topicName) != nil
}

// backlogged reports that the Router's own queue on the bus is more than
// half full: the Router falls behind the publishers, and the bus would
// drop (and count) once the queue is full. Holding acknowledgements back
// then keeps QoS 1/2 messages from being acknowledged and not stored.
func (rt *Router) backlogged() bool {
	sub := rt.feed.Load()
	return sub != nil && sub.Len() > rt.opts.QueueSize*sub.Shards()/2
}

func (rt *Router) saturated(topicName string) *Runner {
	some := false
	for _, r := range rt.runners {
		if r.Pressure() {
			some = true
			break
		}
	}
	if !some {
		return nil
	}
	for _, ro := range rt.routes {
		if !ro.match(topicName) {
			continue
		}
		for _, idx := range ro.sinks {
			if r := rt.runners[idx]; r.Pressure() {
				return r
			}
		}
	}
	return nil
}

// WaitUnsaturated returns nil once no sink that topic routes to is
// saturated, or ctx's error. The broker calls it, with a bounded ctx, before
// acknowledging a QoS 1/2 publish, so that publishers slow down to what the
// sinks take instead of the Router dropping records.
func (rt *Router) WaitUnsaturated(ctx context.Context, topicName string) error {
	for rt.backlogged() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
	for {
		r := rt.saturated(topicName)
		if r == nil {
			return nil
		}
		if err := r.Wait(ctx); err != nil {
			return err
		}
	}
}

// Runner returns the named sink's Runner, or nil.
func (rt *Router) Runner(name string) *Runner {
	if idx, ok := rt.byName[name]; ok {
		return rt.runners[idx]
	}
	return nil
}

// Runners returns the Runners in configuration order.
func (rt *Router) Runners() []*Runner { return append([]*Runner(nil), rt.runners...) }

// Querier returns the named sink as a Querier, if it is one.
func (rt *Router) Querier(name string) (Querier, bool) {
	r := rt.Runner(name)
	if r == nil {
		return nil, false
	}
	q, ok := r.Sink().(Querier)
	return q, ok
}

// Searcher returns the named sink as a Searcher, if it is one.
func (rt *Router) Searcher(name string) (Searcher, bool) {
	r := rt.Runner(name)
	if r == nil {
		return nil, false
	}
	s, ok := r.Sink().(Searcher)
	return s, ok
}

// RouterStats are the Router's own figures.
type RouterStats struct {
	// Received counts the messages (and Write calls) the Router handled.
	Received uint64 `json:"received"`
	// Refused counts the records a sink did not take (also in the sink's
	// Refused).
	Refused uint64 `json:"refused"`
	// BusDropped counts the messages the event bus dropped because the
	// Router's queue was full.
	BusDropped uint64 `json:"bus_dropped"`
}

// Stats returns the Router's figures.
func (rt *Router) Stats() RouterStats {
	s := RouterStats{Received: rt.received.Load(), Refused: rt.refused.Load()}
	if sub := rt.Subscriber(); sub != nil {
		s.BusDropped = sub.Dropped()
	}
	return s
}

// Sys emits every figure under "datastore/": the Router's and each sink's
// ("datastore/<sink>/written", ...). Its signature is core.SysSource's:
// the broker registers it with AddSysSource.
func (rt *Router) Sys(emit func(topic, value string)) {
	st := rt.Stats()
	emit("datastore/received", fmt.Sprint(st.Received))
	emit("datastore/refused", fmt.Sprint(st.Refused))
	emit("datastore/bus_dropped", fmt.Sprint(st.BusDropped))
	for _, r := range rt.runners {
		prefix := "datastore/" + r.Name() + "/"
		r.Stats().Values(func(name, value string) { emit(prefix+name, value) })
	}
}

// Close unsubscribes from the bus, hands over the messages still queued,
// and closes every Runner (in parallel, each flushing until ctx is done).
func (rt *Router) Close(ctx context.Context) error {
	rt.mu.Lock()
	if rt.closed {
		rt.mu.Unlock()
		return nil
	}
	rt.closed = true
	sub := rt.sub
	rt.mu.Unlock()
	if sub != nil {
		sub.Close() // closes the queues once no Emit can send to them
		rt.wg.Wait()
	}
	errs := make([]error, len(rt.runners))
	var wg sync.WaitGroup
	for i, r := range rt.runners {
		wg.Go(func() { errs[i] = r.Close(ctx) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// isJSON reports whether a payload is a JSON document that stores accept:
// Go's json.Valid lets invalid UTF-8 through, which PostgreSQL's jsonb and
// Elasticsearch reject.
func isJSON(p []byte) bool {
	return len(p) > 0 && utf8.Valid(p) && json.Valid(p)
}

// RecordFromMessage builds the stored form of a published message. The
// payload is shared, not copied: records are read-only. A repeated user
// property keeps its last value.
func RecordFromMessage(m *event.Message) Record {
	rec := Record{
		ID: m.ID, Time: m.Time, Topic: m.Topic, ClientID: m.ClientID, Username: m.Username,
		QoS: m.QoS, Retain: m.Retain, Payload: m.Payload, ContentType: m.Props.ContentType,
	}
	if rec.ID == "" {
		rec.ID = event.NewID()
	}
	if rec.Time.IsZero() {
		rec.Time = time.Now()
	}
	if isJSON(m.Payload) {
		rec.JSON = m.Payload
	}
	if len(m.Props.User) > 0 {
		rec.UserProperties = make(map[string]string, len(m.Props.User))
		for _, u := range m.Props.User {
			rec.UserProperties[u.Key] = u.Value
		}
	}
	return rec
}
