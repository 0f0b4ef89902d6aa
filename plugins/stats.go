package plugins

import (
	"strconv"
	"sync/atomic"
	"time"
)

// LatencyBounds are the upper bounds of the latency histogram buckets of
// HookStats (a last bucket counts the slower calls).
var LatencyBounds = []time.Duration{
	50 * time.Microsecond, 100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 500 * time.Millisecond, time.Second,
}

type hookStats struct {
	calls, errors, timeouts, busy, denied, cacheHits atomic.Uint64
	latencyNanos                                     atomic.Uint64
	buckets                                          [12]atomic.Uint64 // len(LatencyBounds)+1
}

func (h *hookStats) observe(d time.Duration) {
	h.latencyNanos.Add(uint64(d))
	i := 0
	for i < len(LatencyBounds) && d > LatencyBounds[i] {
		i++
	}
	h.buckets[i].Add(1)
}

// pluginStats are kept by plugin name across reloads, so that counters only
// grow, as Prometheus expects.
type pluginStats struct {
	hooks    [numHooks]hookStats
	replaced atomic.Uint64
	// dropped accumulates the drops of observer subscriptions that were
	// closed (the live one adds its own).
	dropped atomic.Uint64
}

func (m *Manager) pluginStats(name string) *pluginStats {
	m.statsMu.Lock()
	defer m.statsMu.Unlock()
	ps := m.stats[name]
	if ps == nil {
		ps = &pluginStats{}
		m.stats[name] = ps
	}
	return ps
}

// HookStats are the counters of one hook of one plugin.
type HookStats struct {
	// Calls counts the calls, answered from the cache or not.
	Calls uint64
	// Errors counts Lua errors and invalid answers; Timeouts the calls cut
	// at the plugin's timeout; Busy the calls that found no free VM in time.
	// Each of them applied the fail policy (gates) or lost the event
	// (observers).
	Errors, Timeouts, Busy uint64
	// Denied counts the refusals (deny or drop), fail policy included.
	Denied uint64
	// CacheHits counts the answers taken from the cache_ttl cache.
	CacheHits uint64
	// LatencySum is the total time of the calls, waiting for a VM included.
	LatencySum time.Duration
	// LatencyBuckets counts the calls by latency: bucket i those up to
	// LatencyBounds[i], the last one the slower ones (not cumulative).
	LatencyBuckets []uint64
}

// PluginStats are the counters of one plugin.
type PluginStats struct {
	Name string
	// Hooks is keyed by hook name (on_connect...), for the hooks the
	// loaded script defines or defined before a reload.
	Hooks map[string]HookStats
	// VMsReplaced counts the VMs discarded after an error or a timeout.
	VMsReplaced uint64
	// ObserverDropped counts the events on_message and on_disconnect never
	// saw because the plugin's queue was full; ObserverQueued is the
	// current depth of that queue.
	ObserverDropped uint64
	ObserverQueued  int
}

// Stats returns the plugins' counters, in configuration order.
func (m *Manager) Stats() []PluginStats {
	m.statsMu.Lock()
	order := append([]string(nil), m.order...)
	stats := make([]*pluginStats, len(order))
	for i, n := range order {
		stats[i] = m.stats[n]
	}
	m.statsMu.Unlock()
	m.obsMu.Lock()
	obs := make(map[string]*observer, len(m.observers))
	for n, o := range m.observers {
		obs[n] = o
	}
	m.obsMu.Unlock()
	out := make([]PluginStats, 0, len(order))
	for i, name := range order {
		ps := stats[i]
		st := PluginStats{Name: name, Hooks: map[string]HookStats{}, VMsReplaced: ps.replaced.Load(), ObserverDropped: ps.dropped.Load()}
		if o := obs[name]; o != nil {
			st.ObserverDropped += o.sub.Dropped()
			st.ObserverQueued = o.sub.Len()
		}
		for h := range numHooks {
			hs := &ps.hooks[h]
			calls := hs.calls.Load()
			if calls == 0 {
				continue
			}
			v := HookStats{Calls: calls, Errors: hs.errors.Load(), Timeouts: hs.timeouts.Load(), Busy: hs.busy.Load(),
				Denied: hs.denied.Load(), CacheHits: hs.cacheHits.Load(), LatencySum: time.Duration(hs.latencyNanos.Load()),
				LatencyBuckets: make([]uint64, len(hs.buckets))}
			for b := range hs.buckets {
				v.LatencyBuckets[b] = hs.buckets[b].Load()
			}
			st.Hooks[hookNames[h]] = v
		}
		out = append(out, st)
	}
	return out
}

// SysValues emits the plugins' figures for $SYS, as topics below
// "$SYS/broker/": plugins/<name>/<hook>/{calls,errors,timeouts,busy,denied,
// cache_hits,latency_avg_us}, plugins/<name>/vms_replaced,
// plugins/<name>/events/{dropped,queued} and plugins/kv/{keys,bytes,full}.
// Its signature matches core.SysSource: s.AddSysSource(m.SysValues).
func (m *Manager) SysValues(emit func(topic, value string)) {
	u := func(v uint64) string { return strconv.FormatUint(v, 10) }
	for _, ps := range m.Stats() {
		p := "plugins/" + ps.Name + "/"
		for h, hs := range ps.Hooks {
			hp := p + h + "/"
			emit(hp+"calls", u(hs.Calls))
			emit(hp+"errors", u(hs.Errors))
			emit(hp+"timeouts", u(hs.Timeouts))
			emit(hp+"busy", u(hs.Busy))
			emit(hp+"denied", u(hs.Denied))
			emit(hp+"cache_hits", u(hs.CacheHits))
			emit(hp+"latency_avg_us", strconv.FormatFloat(float64(hs.LatencySum.Microseconds())/float64(hs.Calls), 'f', 1, 64))
		}
		emit(p+"vms_replaced", u(ps.VMsReplaced))
		emit(p+"events/dropped", u(ps.ObserverDropped))
		emit(p+"events/queued", strconv.Itoa(ps.ObserverQueued))
	}
	emit("plugins/kv/keys", strconv.Itoa(m.kv.Len()))
	emit("plugins/kv/bytes", strconv.Itoa(m.kv.Bytes()))
	emit("plugins/kv/full", u(m.kv.FullErrors()))
}
