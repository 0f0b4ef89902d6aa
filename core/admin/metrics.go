package admin

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// brokerCollector reads Broker.Stats (and the event bus) at scrape time:
// the broker keeps its counters as plain atomics and pays nothing for
// metrics between scrapes.
type brokerCollector struct {
	b Broker

	uptime, connected, sessions, connects, refused *prometheus.Desc
	received, sent, bytesIn, bytesOut              *prometheus.Desc
	dropped, unrouted, retained, subscriptions     *prometheus.Desc
	evDropped, evQueued, evEnqueued                *prometheus.Desc
}

// The reasons of tide_messages_dropped_total, as in $SYS/broker/messages/dropped/.
var dropReasons = []string{"qos0_queue_full", "session_queue_full", "too_large", "expired", "offline_qos0", "denied"}

func newBrokerCollector(b Broker) *brokerCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &brokerCollector{
		b:             b,
		uptime:        d("tide_uptime_seconds", "Time since the broker started."),
		connected:     d("tide_clients_connected", "Clients connected now."),
		sessions:      d("tide_sessions", "Sessions held, of connected clients and of persistent sessions whose client is away."),
		connects:      d("tide_connects_total", "Successful CONNECTs."),
		refused:       d("tide_connections_refused_total", "Connections refused by the broker: max_connections, or a CONNACK with an error."),
		received:      d("tide_messages_received_total", "PUBLISH packets received from clients, by QoS.", "qos"),
		sent:          d("tide_messages_sent_total", "PUBLISH packets sent to clients, by QoS.", "qos"),
		bytesIn:       d("tide_received_bytes_total", "Bytes of MQTT packets received."),
		bytesOut:      d("tide_sent_bytes_total", "Bytes of MQTT packets sent."),
		dropped:       d("tide_messages_dropped_total", "Messages dropped, by reason: a subscriber's full QoS 0 queue (qos0_queue_full) or session queue (session_queue_full), larger than the subscriber accepts (too_large), expired while queued (expired), QoS 0 for an offline session (offline_qos0), refused by a gate or the $ rule (denied).", "reason"),
		unrouted:      d("tide_messages_unrouted_total", "Messages accepted that matched no subscriber (not a loss)."),
		retained:      d("tide_retained_messages", "Retained messages held."),
		subscriptions: d("tide_subscriptions", "Subscriptions, shared ones included."),
		evDropped:     d("tide_event_queue_dropped_total", "Events dropped because a subscriber's queue on the event bus was full, by subscriber.", "subscriber"),
		evQueued:      d("tide_event_queue_length", "Events waiting in a subscriber's queue on the event bus.", "subscriber"),
		evEnqueued:    d("tide_event_queue_enqueued_total", "Events queued for a subscriber of the event bus.", "subscriber"),
	}
}

func (c *brokerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.uptime, c.connected, c.sessions, c.connects, c.refused,
		c.received, c.sent, c.bytesIn, c.bytesOut, c.dropped, c.unrouted, c.retained, c.subscriptions,
		c.evDropped, c.evQueued, c.evEnqueued} {
		ch <- d
	}
}

func (c *brokerCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.b.Stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(c.uptime, st.Uptime.Seconds())
	gauge(c.connected, float64(st.ClientsConnected))
	gauge(c.sessions, float64(st.Sessions))
	counter(c.connects, st.ConnectsTotal)
	counter(c.refused, st.Refused)
	for q := range 3 {
		counter(c.received, st.PublishReceived[q], strconv.Itoa(q))
		counter(c.sent, st.PublishSent[q], strconv.Itoa(q))
	}
	counter(c.bytesIn, st.BytesReceived)
	counter(c.bytesOut, st.BytesSent)
	for i, v := range []uint64{st.DroppedQoS0Full, st.DroppedQueueFull, st.DroppedTooLarge,
		st.DroppedExpired, st.DroppedOfflineQoS0, st.Denied} {
		counter(c.dropped, v, dropReasons[i])
	}
	counter(c.unrouted, st.NoSubscribers)
	gauge(c.retained, float64(st.Retained))
	gauge(c.subscriptions, float64(st.Subscriptions))

	bs, ok := c.b.(BusSource)
	if !ok || bs.Bus() == nil {
		return
	}
	// Two subscribers may share a name; one series each would make the
	// scrape fail, so their figures are added up.
	type fig struct {
		dropped, enqueued uint64
		queued            int
	}
	figs := map[string]*fig{}
	var order []string
	for _, s := range bs.Bus().Subscribers() {
		f := figs[s.Name()]
		if f == nil {
			f = &fig{}
			figs[s.Name()] = f
			order = append(order, s.Name())
		}
		f.dropped += s.Dropped()
		f.enqueued += s.Enqueued()
		f.queued += s.Len()
	}
	for _, name := range order {
		f := figs[name]
		counter(c.evDropped, f.dropped, name)
		counter(c.evEnqueued, f.enqueued, name)
		gauge(c.evQueued, float64(f.queued), name)
	}
}
