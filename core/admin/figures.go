package admin

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Figure is one number for /metrics from a part of the broker that does
// not depend on Prometheus (sinks, plugins, jobs, the store).
type Figure struct {
	// Name is the full metric name, such as tide_sink_written_total.
	Name string
	Help string
	// Counter marks a monotonically increasing value (else a gauge).
	Counter bool
	// Labels are label name/value pairs, such as {"sink": "history"}.
	Labels map[string]string
	Value  float64
}

// figures collects Figures at scrape time. It describes nothing up front
// (an unchecked collector), since the set of sinks or plugins varies.
type figures struct{ f func() []Figure }

func (c figures) Describe(chan<- *prometheus.Desc) {}

func (c figures) Collect(ch chan<- prometheus.Metric) {
	for _, fg := range c.f() {
		names := make([]string, 0, len(fg.Labels))
		values := make([]string, 0, len(fg.Labels))
		for k, v := range fg.Labels {
			names = append(names, k)
			values = append(values, v)
		}
		typ := prometheus.GaugeValue
		if fg.Counter {
			typ = prometheus.CounterValue
		}
		m, err := prometheus.NewConstMetric(prometheus.NewDesc(fg.Name, fg.Help, names, nil), typ, fg.Value, values...)
		if err == nil {
			ch <- m
		}
	}
}

// RegisterFigures adds to /metrics the figures f returns at each scrape.
func (a *Admin) RegisterFigures(f func() []Figure) error { return a.reg.Register(figures{f}) }
