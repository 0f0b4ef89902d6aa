package main

import (
	"strconv"

	"github.com/tidemq/tide/core"
	"github.com/tidemq/tide/core/admin"
	"github.com/tidemq/tide/core/event"
	"github.com/tidemq/tide/core/persist"
	"github.com/tidemq/tide/plugins"
	"github.com/tidemq/tide/scheduler"
)

// pluginBroker is the broker as the Lua "broker" module sees it.
type pluginBroker struct{ s *core.Server }

var _ plugins.Broker = pluginBroker{}

func (b pluginBroker) Publish(m event.Message) error {
	_, err := b.s.PublishEvent(m)
	return err
}

func (b pluginBroker) Retained(topic string) (event.Message, bool) { return b.s.RetainedEvent(topic) }
func (b pluginBroker) Client(id string) (event.ClientInfo, bool)   { return b.s.Client(id) }
func (b pluginBroker) Disconnect(id, reason string) bool           { return b.s.DisconnectClient(id, reason) }

// schedBroker is the broker as scheduler jobs see it: the plugins' broker
// module plus retained messages by filter and the broker's counters.
type schedBroker struct{ pluginBroker }

var _ scheduler.Broker = schedBroker{}

func (b schedBroker) RetainedMatch(filter string, limit int) []event.Message {
	return b.s.RetainedMatchEvents(filter, limit)
}

// Stats are the counters of broker.stats(), named as in $SYS.
func (b schedBroker) Stats() map[string]float64 {
	st := b.s.Stats()
	var pubIn, pubOut uint64
	for q := range st.PublishReceived {
		pubIn += st.PublishReceived[q]
		pubOut += st.PublishSent[q]
	}
	return map[string]float64{
		"uptime_seconds":       st.Uptime.Seconds(),
		"clients_connected":    float64(st.ClientsConnected),
		"sessions":             float64(st.ClientsTotal),
		"connects_total":       float64(st.ConnectsTotal),
		"connections_refused":  float64(st.Refused),
		"messages_received":    float64(st.MessagesReceived),
		"messages_sent":        float64(st.MessagesSent),
		"publish_received":     float64(pubIn),
		"publish_sent":         float64(pubOut),
		"bytes_received":       float64(st.BytesReceived),
		"bytes_sent":           float64(st.BytesSent),
		"retained":             float64(st.Retained),
		"subscriptions":        float64(st.Subscriptions),
		"dropped_qos0_full":    float64(st.DroppedQoS0Full),
		"dropped_queue_full":   float64(st.DroppedQueueFull),
		"dropped_too_large":    float64(st.DroppedTooLarge),
		"dropped_expired":      float64(st.DroppedExpired),
		"dropped_offline_qos0": float64(st.DroppedOfflineQoS0),
		"denied":               float64(st.Denied),
		"no_subscribers":       float64(st.NoSubscribers),
	}
}

// adminBroker is the broker as the admin API sees it.
type adminBroker struct{ *core.Server }

var (
	_ admin.Broker    = adminBroker{}
	_ admin.BusSource = adminBroker{}
)

func (b adminBroker) RetainedMatch(filter string, limit int) []admin.Message {
	ms := b.Server.RetainedMatch(filter, limit)
	out := make([]admin.Message, len(ms))
	for i, m := range ms {
		out[i] = admin.Message{Topic: m.Topic, Payload: m.Payload, QoS: m.QoS, Retain: m.Retain, Received: m.Received}
	}
	return out
}

func (b adminBroker) Publish(m admin.Message) (int, error) {
	return b.Server.Publish(core.Message{Topic: m.Topic, Payload: m.Payload, QoS: m.QoS, Retain: m.Retain})
}

func (b adminBroker) Stats() admin.Stats {
	s := b.Server.Stats()
	return admin.Stats{
		Uptime: s.Uptime, ClientsConnected: s.ClientsConnected, Sessions: s.ClientsTotal,
		ConnectsTotal: s.ConnectsTotal, Refused: s.Refused,
		BytesReceived: s.BytesReceived, BytesSent: s.BytesSent,
		PublishReceived: s.PublishReceived, PublishSent: s.PublishSent,
		Retained: s.Retained, Subscriptions: s.Subscriptions,
		DroppedQoS0Full: s.DroppedQoS0Full, DroppedQueueFull: s.DroppedQueueFull,
		DroppedTooLarge: s.DroppedTooLarge, DroppedExpired: s.DroppedExpired,
		DroppedOfflineQoS0: s.DroppedOfflineQoS0, Denied: s.Denied,
		NoSubscribers: s.NoSubscribers,
	}
}

// journalSys publishes the store's figures under $SYS/broker/persistence/.
func journalSys(j *persist.Journal) core.SysSource {
	return func(emit func(topic, value string)) {
		st := j.Stats()
		u := func(v uint64) string { return strconv.FormatUint(v, 10) }
		emit("persistence/commits", u(st.Commits))
		emit("persistence/writes", u(st.Ops))
		emit("persistence/coalesced", u(st.Coalesced))
		emit("persistence/errors", u(st.Errors))
		emit("persistence/pending", strconv.Itoa(st.Pending))
		if st.LastError != "" {
			emit("persistence/last_error", st.LastError)
		}
	}
}

// figures are the sinks', plugins' and store's numbers for /metrics.
func (a *app) figures() []admin.Figure {
	var out []admin.Figure
	add := func(name, help string, counter bool, v float64, labels ...string) {
		f := admin.Figure{Name: name, Help: help, Counter: counter, Value: v}
		if len(labels) > 0 {
			f.Labels = map[string]string{}
			for i := 0; i+1 < len(labels); i += 2 {
				f.Labels[labels[i]] = labels[i+1]
			}
		}
		out = append(out, f)
	}
	if a.store != nil {
		for _, r := range a.store.Runners() {
			s := r.Stats()
			n := r.Name()
			add("tide_sink_queued", "Records waiting in the sink's memory queue.", false, float64(s.Queued), "sink", n)
			add("tide_sink_written_total", "Records written to the store.", true, float64(s.Written), "sink", n)
			add("tide_sink_retried_total", "Write attempts retried.", true, float64(s.Retried), "sink", n)
			add("tide_sink_spooled_total", "Records written to the disk spool.", true, float64(s.Spooled), "sink", n)
			add("tide_sink_spool_bytes", "Bytes in the disk spool.", false, float64(s.SpoolBytes), "sink", n)
			add("tide_sink_replayed_total", "Records replayed from the spool.", true, float64(s.Replayed), "sink", n)
			add("tide_sink_dead_lettered_total", "Records the store rejected for good (dead-letter file).", true, float64(s.DeadLettered), "sink", n)
			add("tide_sink_dropped_total", "Records dropped by the drop_oldest policy.", true, float64(s.Dropped), "sink", n)
			add("tide_sink_refused_total", "Records refused while the sink was saturated.", true, float64(s.Refused), "sink", n)
			add("tide_sink_connected", "1 when the sink is connected.", false, b2f(s.Connected), "sink", n)
			add("tide_sink_batch_latency_seconds", "Duration of the last batch write.", false, s.BatchLatency.Seconds(), "sink", n)
		}
	}
	if a.plugins != nil {
		for _, p := range a.plugins.Stats() {
			for hook, h := range p.Hooks {
				add("tide_plugin_calls_total", "Hook calls.", true, float64(h.Calls), "plugin", p.Name, "hook", hook)
				add("tide_plugin_errors_total", "Hook calls that failed with a Lua error or an invalid answer.", true, float64(h.Errors), "plugin", p.Name, "hook", hook)
				add("tide_plugin_timeouts_total", "Hook calls cut at the plugin's timeout.", true, float64(h.Timeouts), "plugin", p.Name, "hook", hook)
				add("tide_plugin_busy_total", "Hook calls that found no free VM in time.", true, float64(h.Busy), "plugin", p.Name, "hook", hook)
				add("tide_plugin_denied_total", "Refusals (deny or drop), fail policy included.", true, float64(h.Denied), "plugin", p.Name, "hook", hook)
				add("tide_plugin_latency_seconds_total", "Total time spent in hook calls.", true, h.LatencySum.Seconds(), "plugin", p.Name, "hook", hook)
			}
			add("tide_plugin_events_dropped_total", "Events on_message/on_disconnect never saw (queue full).", true, float64(p.ObserverDropped), "plugin", p.Name)
			add("tide_plugin_events_queued", "Events waiting for on_message/on_disconnect.", false, float64(p.ObserverQueued), "plugin", p.Name)
		}
	}
	if a.journal != nil {
		st := a.journal.Stats()
		add("tide_persistence_commits_total", "Transactions written to the store.", true, float64(st.Commits))
		add("tide_persistence_writes_total", "Operations written to the store.", true, float64(st.Ops))
		add("tide_persistence_errors_total", "Failed store writes.", true, float64(st.Errors))
		add("tide_persistence_pending", "Operations waiting to be written.", false, float64(st.Pending))
	}
	return out
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
