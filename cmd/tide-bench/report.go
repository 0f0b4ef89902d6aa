package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"unicode/utf8"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// result is one run of one scenario against one broker.
type result struct {
	Scenario string `json:"scenario"`
	Target   string `json:"target"` // A (--host) or B (--compare)
	Label    string `json:"label"`
	Host     string `json:"host"`
	Rep      int    `json:"rep"`

	Publishers  int     `json:"publishers,omitempty"`
	Subscribers int     `json:"subscribers,omitempty"`
	QoS         int     `json:"qos"`
	SubQoS      int     `json:"sub_qos"`
	Size        int     `json:"size,omitempty"`
	Version     int     `json:"version"`
	Window      int     `json:"window,omitempty"` // effective, after the broker's Receive Maximum
	Rate        float64 `json:"rate,omitempty"`

	Planned   uint64 `json:"planned,omitempty"` // messages to publish
	Published uint64 `json:"published,omitempty"`
	Acked     uint64 `json:"acked,omitempty"`
	Rejected  uint64 `json:"rejected,omitempty"` // refused by the broker (MQTT 5 reason code >= 0x80)

	Expected      uint64  `json:"expected,omitempty"` // deliveries, over all subscribers
	Delivered     uint64  `json:"delivered"`          // distinct deliveries
	Lost          uint64  `json:"lost"`
	LossPct       float64 `json:"loss_percent"`
	Duplicates    uint64  `json:"duplicates"`
	BadDuplicates uint64  `json:"duplicates_forbidden"` // at QoS 0 or 2
	OutOfOrder    uint64  `json:"out_of_order"`
	Unexpected    uint64  `json:"unexpected"`

	// Seconds runs from the first publish to the last delivery (conns:
	// first dial to last CONNACK).
	Seconds        float64         `json:"seconds"`
	PublishSeconds float64         `json:"publish_seconds,omitempty"`
	PublishRate    float64         `json:"publish_rate,omitempty"`
	DeliveryRate   float64         `json:"delivery_rate,omitempty"`
	Latency        *latencySummary `json:"latency,omitempty"`
	SendLagMaxUs   float64         `json:"send_lag_max_us,omitempty"`
	LateSends      uint64          `json:"late_sends,omitempty"` // paced sends more than 1 ms behind schedule

	Conns *connsResult `json:"conns,omitempty"`

	// hist is the run's latency histogram, pooled with the other runs'
	// for the summary.
	hist *hdrhistogram.Histogram

	Generator *procUsage `json:"generator"`
	Broker    *procUsage `json:"broker,omitempty"`
	// MachineBusy is the share of all CPUs busy during the run (from
	// /proc/stat); Others is what neither the generator nor the broker
	// (when --pid says which it is) used of it: on a shared machine, the
	// noise in the figures.
	MachineBusy *float64 `json:"machine_busy,omitempty"`
	Others      *float64 `json:"others_share,omitempty"`

	TimedOut    bool     `json:"timed_out,omitempty"`
	Interrupted bool     `json:"interrupted,omitempty"`
	Errors      []string `json:"errors,omitempty"`
	Warnings    []string `json:"warnings,omitempty"`
	// Problems say why OK is false.
	Problems []string `json:"problems,omitempty"`
	OK       bool     `json:"ok"`
}

// generatorLimit is the share of the machine above which the generator
// may be what limits the figures.
const generatorLimit = 0.5

// judge decides OK and explains every reason it is not.
func (r *result) judge() {
	var p []string
	if r.Lost > 0 {
		p = append(p, fmt.Sprintf("LOST %d of %d expected deliveries (%.4g%%)", r.Lost, r.Expected, r.LossPct))
	}
	if r.BadDuplicates > 0 {
		p = append(p, fmt.Sprintf("%d duplicates delivered at QoS 0 or 2, where the protocol forbids them", r.BadDuplicates))
	}
	if r.Unexpected > 0 {
		p = append(p, fmt.Sprintf("%d messages that were not sent to that subscriber", r.Unexpected))
	}
	if r.Rejected > 0 {
		p = append(p, fmt.Sprintf("%d publishes refused by the broker", r.Rejected))
	}
	if r.TimedOut {
		p = append(p, "the run hit --timeout")
	}
	if r.Interrupted {
		p = append(p, "interrupted")
	}
	if c := r.Conns; c != nil {
		if c.Failed > 0 {
			p = append(p, fmt.Sprintf("%d of %d connections failed", c.Failed, c.Wanted))
		}
		if c.Dropped > 0 {
			p = append(p, fmt.Sprintf("%d idle connections dropped by the broker", c.Dropped))
		}
		if c.Opened+c.Failed < c.Wanted {
			p = append(p, fmt.Sprintf("only %d of %d connections attempted", c.Opened+c.Failed, c.Wanted))
		}
	}
	if len(r.Errors) > 0 && len(p) == 0 {
		p = append(p, fmt.Sprintf("%d connection errors", len(r.Errors)))
	}
	if r.OutOfOrder > 0 && min(r.QoS, r.SubQoS) > 0 {
		r.Warnings = append(r.Warnings, fmt.Sprintf("%d messages out of order (MQTT orders each publisher's messages on a topic)", r.OutOfOrder))
	}
	if r.Duplicates > 0 && r.BadDuplicates == 0 {
		r.Warnings = append(r.Warnings, fmt.Sprintf("%d QoS 1 duplicates (allowed by the protocol)", r.Duplicates))
	}
	if g := r.Generator; g != nil && g.Share > generatorLimit {
		r.Warnings = append(r.Warnings, fmt.Sprintf("the generator used %.0f%% of the machine (%.2f of %d CPUs): the figures may be limited by the generator, not the broker",
			100*g.Share, g.Cores, runtime.NumCPU()))
	}
	if r.Others != nil && *r.Others > othersLimit {
		r.Warnings = append(r.Warnings, fmt.Sprintf("other processes used %.0f%% of the machine during the run: the figures are noisy", 100**r.Others))
	}
	r.Problems = p
	r.OK = len(p) == 0
}

// othersLimit is the share of the machine other processes may use before
// a run is flagged as noisy.
const othersLimit = 0.15

// setMachine records the machine's load over the run.
func (r *result) setMachine(busy float64, ok bool) {
	if !ok {
		return
	}
	r.MachineBusy = &busy
	if r.Broker != nil && r.Generator != nil {
		o := max(0, busy-r.Broker.Share-r.Generator.Share)
		r.Others = &o
	}
}

// metric is one row of a comparison: how to read it from a result, and
// whether higher is better (for the reader; the ratio is always A/B).
type metric struct {
	name string
	unit string
	get  func(*result) (float64, bool)
}

func metricsFor(scenario string) []metric {
	lat := func(f func(*latencySummary) float64) func(*result) (float64, bool) {
		return func(r *result) (float64, bool) {
			if r.Latency == nil {
				return 0, false
			}
			return f(r.Latency), true
		}
	}
	broker := func(f func(*procUsage) float64) func(*result) (float64, bool) {
		return func(r *result) (float64, bool) {
			if r.Broker == nil {
				return 0, false
			}
			return f(r.Broker), true
		}
	}
	always := func(f func(*result) float64) func(*result) (float64, bool) {
		return func(r *result) (float64, bool) { return f(r), true }
	}
	conns := func(f func(*connsResult) (float64, bool)) func(*result) (float64, bool) {
		return func(r *result) (float64, bool) {
			if r.Conns == nil {
				return 0, false
			}
			return f(r.Conns)
		}
	}
	var ms []metric
	if scenario == scConns {
		ms = []metric{
			{"connections opened", "", conns(func(c *connsResult) (float64, bool) { return float64(c.Opened), true })},
			{"time to open", "s", conns(func(c *connsResult) (float64, bool) { return c.Seconds, true })},
			{"connect rate", "/s", conns(func(c *connsResult) (float64, bool) { return c.Rate, true })},
			{"CONNACK p50", "ms", conns(func(c *connsResult) (float64, bool) {
				return nz(c.Connack, func(l *latencySummary) float64 { return l.P50 / 1e3 })
			})},
			{"CONNACK p99", "ms", conns(func(c *connsResult) (float64, bool) {
				return nz(c.Connack, func(l *latencySummary) float64 { return l.P99 / 1e3 })
			})},
			{"broker memory per connection", "KB", conns(func(c *connsResult) (float64, bool) {
				return c.BytesPerConn / 1024, c.RSSAfter > 0
			})},
			{"broker RSS with connections", "MB", conns(func(c *connsResult) (float64, bool) {
				return float64(c.RSSAfter) / 1024, c.RSSAfter > 0
			})},
		}
	} else {
		ms = []metric{
			{"delivery rate", "msg/s", always(func(r *result) float64 { return r.DeliveryRate })},
			{"publish rate", "msg/s", always(func(r *result) float64 { return r.PublishRate })},
			{"lost", "%", always(func(r *result) float64 { return r.LossPct })},
			{"latency p50", "ms", lat(func(l *latencySummary) float64 { return l.P50 / 1e3 })},
			{"latency p90", "ms", lat(func(l *latencySummary) float64 { return l.P90 / 1e3 })},
			{"latency p95", "ms", lat(func(l *latencySummary) float64 { return l.P95 / 1e3 })},
			{"latency p99", "ms", lat(func(l *latencySummary) float64 { return l.P99 / 1e3 })},
			{"latency p99.9", "ms", lat(func(l *latencySummary) float64 { return l.P999 / 1e3 })},
			{"latency max", "ms", lat(func(l *latencySummary) float64 { return l.Max / 1e3 })},
		}
	}
	ms = append(ms,
		metric{"broker CPU", "cores", broker(func(u *procUsage) float64 { return u.Cores })},
		metric{"broker RSS peak", "MB", broker(func(u *procUsage) float64 { return float64(u.RSSPeak) / 1024 })},
		metric{"generator CPU", "% of machine", always(func(r *result) float64 {
			if r.Generator == nil {
				return 0
			}
			return 100 * r.Generator.Share
		})},
	)
	return ms
}

func nz(l *latencySummary, f func(*latencySummary) float64) (float64, bool) {
	if l == nil {
		return 0, false
	}
	return f(l), true
}

// summaryRow is the median of one metric for A and B, and their ratio.
type summaryRow struct {
	Metric string   `json:"metric"`
	Unit   string   `json:"unit"`
	A      *float64 `json:"a"`
	B      *float64 `json:"b,omitempty"`
	Ratio  *float64 `json:"ratio,omitempty"` // A/B
}

// summarize computes medians per target.
func summarize(scenario string, runs []*result, compare bool) []summaryRow {
	var rows []summaryRow
	for _, m := range metricsFor(scenario) {
		med := func(name string) *float64 {
			var vs []float64
			for _, r := range runs {
				if r.Target != name {
					continue
				}
				if v, ok := m.get(r); ok && !math.IsNaN(v) {
					vs = append(vs, v)
				}
			}
			if len(vs) == 0 {
				return nil
			}
			slices.Sort(vs)
			v := vs[len(vs)/2]
			if len(vs)%2 == 0 {
				v = (vs[len(vs)/2-1] + vs[len(vs)/2]) / 2
			}
			return &v
		}
		row := summaryRow{Metric: m.name, Unit: m.unit, A: med("A")}
		if row.A == nil {
			continue
		}
		if compare {
			row.B = med("B")
			if row.B != nil && *row.B != 0 {
				q := *row.A / *row.B
				row.Ratio = &q
			}
		}
		rows = append(rows, row)
	}
	return append(rows, pooled(runs, compare)...)
}

// pooled returns latency percentiles over all of a target's messages, every
// run's histogram merged. With few runs the median of their p99 is noisy:
// on a shared machine one run's p99 can be twice the next one's, and the
// middle run decides. The pooled p99 is the p99 of every message sent.
func pooled(runs []*result, compare bool) []summaryRow {
	merge := func(name string) *hdrhistogram.Histogram {
		var h *hdrhistogram.Histogram
		n := 0
		for _, r := range runs {
			if r.Target != name || r.hist == nil || r.hist.TotalCount() == 0 {
				continue
			}
			if h == nil {
				h = hdrhistogram.New(1000, maxLatency, 3)
			}
			h.Merge(r.hist)
			n++
		}
		if n < 2 {
			return nil // one run: the medians are its figures
		}
		return h
	}
	a := merge("A")
	if a == nil {
		return nil
	}
	var b *hdrhistogram.Histogram
	if compare {
		b = merge("B")
	}
	var rows []summaryRow
	for _, q := range []struct {
		name string
		q    float64
	}{{"latency p50, pooled", 50}, {"latency p99, pooled", 99}, {"latency p99.9, pooled", 99.9}} {
		av := float64(a.ValueAtQuantile(q.q)) / 1e6
		row := summaryRow{Metric: q.name, Unit: "ms", A: &av}
		if b != nil {
			bv := float64(b.ValueAtQuantile(q.q)) / 1e6
			row.B = &bv
			if bv != 0 {
				r := av / bv
				row.Ratio = &r
			}
		}
		rows = append(rows, row)
	}
	return rows
}

// pairedRow counts, over the repetitions, in how many A's figure was
// below B's from the same repetition. A and B of one repetition run back to
// back (A B, then B A), so the machine's slow spells tend to hit both or
// neither: the count says more than a ratio of medians when a metric such
// as p99 moves 2-4x from one run to the next.
type pairedRow struct {
	Metric string `json:"metric"`
	Pairs  int    `json:"pairs"`
	ALower int    `json:"a_lower"`
	BLower int    `json:"b_lower"` // the rest of the pairs are ties
	// P is the two-sided sign test's p-value: how likely a split at least
	// this uneven is when neither target is lower more often. Ties are
	// left out.
	P float64 `json:"p"`
}

// pairedMetrics are the metrics counted pair by pair, where lower is
// better: the latency percentiles and the broker's CPU.
var pairedMetrics = []string{"latency p50", "latency p99", "latency p99.9", "broker CPU"}

// paired compares each repetition's A run with its B run.
func paired(scenario string, runs []*result) []pairedRow {
	byRep := map[int][2]*result{}
	for _, r := range runs {
		pr := byRep[r.Rep]
		switch r.Target {
		case "A":
			pr[0] = r
		case "B":
			pr[1] = r
		}
		byRep[r.Rep] = pr
	}
	var rows []pairedRow
	for _, m := range metricsFor(scenario) {
		if !slices.Contains(pairedMetrics, m.name) {
			continue
		}
		row := pairedRow{Metric: m.name}
		for _, pr := range byRep {
			if pr[0] == nil || pr[1] == nil {
				continue
			}
			a, aok := m.get(pr[0])
			b, bok := m.get(pr[1])
			if !aok || !bok || math.IsNaN(a) || math.IsNaN(b) {
				continue
			}
			row.Pairs++
			switch {
			case a < b:
				row.ALower++
			case b < a:
				row.BLower++
			}
		}
		if row.Pairs < 2 {
			continue
		}
		row.P = signTest(row.ALower, row.BLower)
		rows = append(rows, row)
	}
	return rows
}

// signTest returns the two-sided p-value of an exact sign test: the chance,
// with each pair a fair coin toss, of a split at least as uneven as a : b.
func signTest(a, b int) float64 {
	total := a + b
	if total == 0 {
		return 1
	}
	low := min(a, b)
	// P(X <= low) for X ~ Binomial(total, 1/2), in logs to stay finite.
	sum := 0.0
	for i := 0; i <= low; i++ {
		lc, _ := math.Lgamma(float64(total + 1))
		li, _ := math.Lgamma(float64(i + 1))
		lr, _ := math.Lgamma(float64(total - i + 1))
		sum += math.Exp(lc - li - lr - float64(total)*math.Ln2)
	}
	return math.Min(1, 2*sum)
}

// report is the whole output of an invocation, as --json prints it.
type report struct {
	Scenario string         `json:"scenario"`
	Config   map[string]any `json:"config"`
	Runs     []*result      `json:"runs"`
	Summary  []summaryRow   `json:"summary"`
	Paired   []pairedRow    `json:"paired,omitempty"`
	OK       bool           `json:"ok"`
}

func (c *config) describe() map[string]any {
	m := map[string]any{
		"host": c.host, "label": c.label, "clients": c.clients, "qos": c.qos, "size": c.size,
		"count": c.count, "window": c.window, "version": c.version, "rate": c.rate, "reps": c.reps,
		"timeout": c.timeout.String(), "tls": c.useTLS, "ws": c.ws,
	}
	if c.compare != "" {
		m["compare"] = c.compare
		m["compare_label"] = c.compareLabel
	}
	return m
}

func writeJSON(w io.Writer, rep *report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// writeRun prints one run for people.
func writeRun(w io.Writer, c *config, r *result) {
	fmt.Fprintf(w, "%s against %s (%s), run %d:\n", r.Scenario, r.Label, r.Host, r.Rep)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	row := func(k, format string, args ...any) {
		fmt.Fprintf(tw, "  %s\t"+format+"\n", append([]any{k}, args...)...)
	}
	if r.Conns != nil {
		cr := r.Conns
		row("setup", "%d idle connections, %s, keep alive %v, rate %s/s", cr.Wanted, versionName(r.Version), c.keepAlive, rateStr(r.Rate))
		row("opened", "%d in %.2f s (%s conn/s), %d failed, %d dropped while idle", cr.Opened, cr.Seconds, fmtCount(cr.Rate), cr.Failed, cr.Dropped)
		if l := cr.Connack; l != nil {
			row("CONNACK latency", "p50 %s  p99 %s  max %s", fmtUs(l.P50), fmtUs(l.P99), fmtUs(l.Max))
		}
		if cr.RSSAfter > 0 {
			row("broker RSS", "%s before the first run, %s before this one, %s after %v idle: %.2f KB per connection",
				fmtKB(cr.RSSBaseline), fmtKB(cr.RSSBefore), fmtKB(cr.RSSAfter), c.hold, cr.BytesPerConn/1024)
		}
	} else {
		qos := fmt.Sprintf("QoS %d", r.QoS)
		if r.SubQoS != r.QoS {
			qos = fmt.Sprintf("publish QoS %d, subscribe QoS %d", r.QoS, r.SubQoS)
		}
		row("setup", "%d publishers -> %d subscribers, %s, %d-byte payload, %s%s%s",
			r.Publishers, r.Subscribers, qos, r.Size, versionName(r.Version), windowStr(r), paceStr(r))
		row("published", "%d of %d in %.2f s (%s msg/s)", r.Published, r.Planned, r.PublishSeconds, fmtCount(r.PublishRate))
		row("delivered", "%d of %d in %.2f s (%s msg/s)", r.Delivered, r.Expected, r.Seconds, fmtCount(r.DeliveryRate))
		lost := fmt.Sprintf("%d (%.4g%%)", r.Lost, r.LossPct)
		if r.Lost > 0 {
			lost += "   <<<<<<<<<< LOSS"
		}
		row("lost", "%s", lost)
		row("duplicates", "%d (forbidden: %d)   out of order %d   unexpected %d", r.Duplicates, r.BadDuplicates, r.OutOfOrder, r.Unexpected)
		if l := r.Latency; l != nil {
			row("latency", "p50 %s  p90 %s  p95 %s  p99 %s  p99.9 %s  max %s  (mean %s, %d samples)",
				fmtUs(l.P50), fmtUs(l.P90), fmtUs(l.P95), fmtUs(l.P99), fmtUs(l.P999), fmtUs(l.Max), fmtUs(l.Mean), l.Count)
		}
		if r.Rate > 0 {
			row("pacing", "worst send %s behind schedule, %d sends more than 1 ms late", fmtUs(r.SendLagMaxUs), r.LateSends)
		}
	}
	if b := r.Broker; b != nil {
		row("broker", "pid %d: %.2f CPU s = %.2f cores (%.0f%% of the machine), RSS %s -> %s (peak %s)%s",
			b.PID, b.CPUSeconds, b.Cores, 100*b.Share, fmtKB(b.RSSStart), fmtKB(b.RSSEnd), fmtKB(b.RSSPeak), sampleErr(b))
	}
	if g := r.Generator; g != nil {
		row("generator", "%.2f CPU s = %.2f cores (%.0f%% of %d CPUs)", g.CPUSeconds, g.Cores, 100*g.Share, runtime.NumCPU())
	}
	if m := r.MachineBusy; m != nil {
		others := "unknown without --pid"
		if r.Others != nil {
			others = fmt.Sprintf("%.0f%%", 100**r.Others)
		}
		row("machine", "%.0f%% busy; other processes: %s", 100**m, others)
	}
	tw.Flush()
	for _, e := range r.Errors {
		fmt.Fprintf(w, "  error: %s\n", e)
	}
	for _, e := range r.Warnings {
		fmt.Fprintf(w, "  warning: %s\n", e)
	}
	if r.OK {
		fmt.Fprintln(w, "  result: OK")
	} else {
		fmt.Fprintf(w, "  result: FAILED: %s\n", strings.Join(r.Problems, "; "))
	}
}

// writeSummary prints the medians table.
func writeSummary(w io.Writer, c *config, runs []*result, rows []summaryRow, pairs []pairedRow) {
	n := 0
	for _, r := range runs {
		if r.Target == "A" {
			n++
		}
	}
	fmt.Fprintln(w)
	if c.compare != "" {
		fmt.Fprintf(w, "%s: A = %s (%s), B = %s (%s); medians of %d runs each, interleaved A B B A\n",
			c.scenario, c.label, c.host, c.compareLabel, c.compare, n)
	} else {
		fmt.Fprintf(w, "%s: %s (%s); medians of %d runs\n", c.scenario, c.label, c.host, n)
	}
	head := []string{"metric", "unit", "median"}
	if c.compare != "" {
		head = []string{"metric", "unit", "A", "B", "ratio A/B"}
	}
	table := [][]string{head}
	for _, r := range rows {
		line := []string{r.Metric, r.Unit, fmtVal(r.A)}
		if c.compare != "" {
			ratio := "-"
			if r.Ratio != nil {
				ratio = fmt.Sprintf("%.2f", *r.Ratio)
			}
			line = append(line, fmtVal(r.B), ratio)
		}
		table = append(table, line)
	}
	writeTable(w, table)
	if len(pairs) == 0 {
		return
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "pair by pair: each run of A against the run of B next to it (sign test, two-sided; ties left out)")
	table = [][]string{{"metric", "pairs", "A lower", "B lower", "p"}}
	for _, p := range pairs {
		table = append(table, []string{p.Metric, fmt.Sprint(p.Pairs), fmt.Sprint(p.ALower), fmt.Sprint(p.BLower), fmt.Sprintf("%.3g", p.P)})
	}
	writeTable(w, table)
}

// writeTable prints rows with the first two columns aligned left and the
// figures aligned right.
func writeTable(w io.Writer, rows [][]string) {
	width := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, cell := range r {
			width[i] = max(width[i], utf8.RuneCountInString(cell))
		}
	}
	for _, r := range rows {
		var b strings.Builder
		for i, cell := range r {
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(cell))
			if i < 2 {
				b.WriteString(cell + pad + "  ")
			} else {
				b.WriteString("  " + pad + cell)
			}
		}
		fmt.Fprintf(w, "  %s\n", strings.TrimRight(b.String(), " "))
	}
}

func fmtVal(v *float64) string {
	if v == nil {
		return "-"
	}
	x := *v
	switch {
	case x >= 1e4:
		return fmtCount(x)
	case x >= 100:
		return fmt.Sprintf("%.0f", x)
	case x >= 1:
		return fmt.Sprintf("%.2f", x)
	}
	return fmt.Sprintf("%.3g", x)
}

func fmtUs(us float64) string {
	switch {
	case us >= 1e6:
		return fmt.Sprintf("%.2f s", us/1e6)
	case us >= 1e3:
		return fmt.Sprintf("%.2f ms", us/1e3)
	}
	return fmt.Sprintf("%.0f µs", us)
}

func fmtKB(kb int64) string {
	if kb >= 10*1024 {
		return fmt.Sprintf("%.1f MB", float64(kb)/1024)
	}
	return fmt.Sprintf("%d KB", kb)
}

func rateStr(r float64) string {
	if r == 0 {
		return "unpaced"
	}
	return fmtCount(r)
}

func windowStr(r *result) string {
	if r.QoS == 0 {
		return ""
	}
	return fmt.Sprintf(", window %d", r.Window)
}

func paceStr(r *result) string {
	if r.Rate == 0 {
		return ""
	}
	return fmt.Sprintf(", paced at %s msg/s", fmtCount(r.Rate))
}

func sampleErr(u *procUsage) string {
	if u.SampleErr == "" {
		return ""
	}
	return " (sampling error: " + u.SampleErr + ")"
}
