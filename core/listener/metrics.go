package listener

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Describe sends the descriptors of the listener's Prometheus figures; with
// Collect it makes a *Listener a prometheus.Collector. Each listener's
// figures carry its name and type as constant labels, so that several
// listeners register side by side in one registry.
func (l *Listener) Describe(ch chan<- *prometheus.Desc) {
	d := l.descs()
	ch <- d.accepted
	ch <- d.rejected
	if l.tls != nil {
		ch <- d.reloads
		ch <- d.notAfter
	}
}

// Collect sends the listener's figures, read from its counters at scrape time.
func (l *Listener) Collect(ch chan<- prometheus.Metric) {
	d := l.descs()
	st := l.Stats()
	ch <- prometheus.MustNewConstMetric(d.accepted, prometheus.CounterValue, float64(st.Accepted))
	for _, r := range reasons {
		if !isTLS(l.cfg.Type) && r == ReasonTLSHandshake || !isWS(l.cfg.Type) && r != ReasonTLSHandshake {
			continue
		}
		ch <- prometheus.MustNewConstMetric(d.rejected, prometheus.CounterValue, float64(st.Rejected[r]), r)
	}
	if l.tls != nil {
		ch <- prometheus.MustNewConstMetric(d.reloads, prometheus.CounterValue, float64(st.Reloads), "ok")
		ch <- prometheus.MustNewConstMetric(d.reloads, prometheus.CounterValue, float64(st.ReloadFailures), "failed")
		ch <- prometheus.MustNewConstMetric(d.notAfter, prometheus.GaugeValue, float64(st.CertNotAfter.Unix()))
	}
}

type listenerDescs struct {
	accepted, rejected, reloads, notAfter *prometheus.Desc
}

func (l *Listener) descs() listenerDescs {
	l.descOnce.Do(func() {
		labels := prometheus.Labels{"listener": l.cfg.Name, "type": l.cfg.Type}
		l.desc = listenerDescs{
			accepted: prometheus.NewDesc("tide_listener_accepted_connections_total",
				"Connections a listener handed to the broker.", nil, labels),
			rejected: prometheus.NewDesc("tide_listener_rejected_connections_total",
				"Connections a listener refused before the broker saw them, by reason.", []string{"reason"}, labels),
			reloads: prometheus.NewDesc("tide_listener_tls_reloads_total",
				"Reloads of a TLS listener's certificate files, by result.", []string{"result"}, labels),
			notAfter: prometheus.NewDesc("tide_listener_certificate_expiry_timestamp_seconds",
				"When the certificate a TLS listener serves expires, in Unix time.", nil, labels),
		}
	})
	return l.desc
}
