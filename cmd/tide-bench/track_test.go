package main

import (
	"io"
	"math"
	"strings"
	"testing"
)

func payload(magic, pub, seq uint32) []byte {
	p := make([]byte, hdrLen+4)
	putHeader(p, magic, pub)
	putSeq(p, seq, nowNanos())
	return p
}

func TestSubscriberAccounting(t *testing.T) {
	const magic = 0x1234567
	s := newSubscriber(magic, 3, newLatency())
	s.expect(0, 10)
	s.expect(2, 100)
	steps := []struct {
		pub, seq uint32
		magic    uint32
		qos      byte
	}{
		{0, 0, magic, 1},
		{0, 1, magic, 1},
		{0, 1, magic, 1},       // QoS 1 duplicate: allowed
		{0, 3, magic, 2},       //
		{0, 2, magic, 2},       // out of order
		{0, 3, magic, 2},       // QoS 2 duplicate: forbidden
		{0, 4, magic, 0},       //
		{0, 4, magic, 0},       // QoS 0 duplicate: forbidden
		{1, 0, magic, 0},       // publisher not expected here
		{0, 10, magic, 0},      // sequence beyond the count
		{2, 99, magic, 0},      //
		{2, 0, magic + 1, 0},   // another run's message
		{7, 0, magic, 0},       // unknown publisher
		{2, 63, magic, 1},      //
		{2, 64, magic, 1},      // word boundary of the bitmap
		{2, 64, magic, 1},      // duplicate across it
		{2, 1 << 31, magic, 1}, // far out of range
	}
	for _, st := range steps {
		s.record(payload(st.magic, st.pub, st.seq), st.qos, nowNanos())
	}
	s.record([]byte("short"), 0, nowNanos())
	s.flush()
	if got, want := s.unique.Load(), uint64(8); got != want {
		t.Errorf("unique %d, want %d", got, want)
	}
	if s.dups != 4 || s.badDups != 2 {
		t.Errorf("dups %d bad %d, want 4 and 2", s.dups, s.badDups)
	}
	if s.ooo != 3 {
		// seq 2 after 3 (pub 0); 63 and 64 after 99 (pub 2).
		t.Errorf("out of order %d, want 3", s.ooo)
	}
	if s.unexpected != 6 {
		t.Errorf("unexpected %d, want 6", s.unexpected)
	}
	if s.expected != 110 {
		t.Errorf("expected %d, want 110", s.expected)
	}
	if l := s.lat.summary(); l == nil || l.Count != 8 {
		t.Errorf("latency %+v, want 8 samples", l)
	}
}

func TestSplitCount(t *testing.T) {
	c := &config{scenario: scFanin, clients: 3, count: 10}
	p := makePlan(c, "x")
	got := []int{p.pubs[0].count, p.pubs[1].count, p.pubs[2].count}
	if got[0] != 4 || got[1] != 3 || got[2] != 3 {
		t.Errorf("split of 10 over 3: %v, want [4 3 3]", got)
	}
	if p.subs[0].filter != "x/fanin/+" || p.pubs[2].topic != "x/fanin/2" {
		t.Errorf("filter %q topic %q", p.subs[0].filter, p.pubs[2].topic)
	}
	c = &config{scenario: scFanout, clients: 4, count: 10}
	p = makePlan(c, "x")
	if len(p.pubs) != 1 || p.pubs[0].count != 10 || len(p.subs) != 4 {
		t.Errorf("fanout plan %+v", p)
	}
}

func TestQuickAckAuto(t *testing.T) {
	cases := []struct {
		args []string
		want bool
	}{
		{[]string{"fanin"}, false},
		{[]string{"fanin", "--rate", "100"}, true},
		{[]string{"latency"}, true}, // paced by default
		{[]string{"conns"}, false},  // --rate is connections per second there
		{[]string{"fanin", "--quickack", "on"}, true},
		{[]string{"latency", "--quickack", "off"}, false},
	}
	for _, tc := range cases {
		c, err := parseConfig(tc.args, io.Discard)
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if c.quickAck != tc.want {
			t.Errorf("%v: quickack %v, want %v", tc.args, c.quickAck, tc.want)
		}
	}
}

// TestPooledLatency checks that the summary's pooled percentiles are those
// of every message of a target's runs, not the median of the runs' own.
func TestPooledLatency(t *testing.T) {
	run := func(target string, values ...int64) *result {
		l := newLatency()
		l.record(values)
		return &result{Target: target, Latency: l.summary(), hist: l.snapshot()}
	}
	ms := func(n int) int64 { return int64(n) * 1e6 }
	// A: two runs of 100 messages; of the 200, one at 9 ms and three at 5 ms.
	a1 := make([]int64, 100)
	a2 := make([]int64, 100)
	for i := range a1 {
		a1[i], a2[i] = ms(1), ms(1)
	}
	a1[0], a1[1], a2[0], a2[1] = ms(5), ms(5), ms(5), ms(9)
	// B: the same for each run, 2 in 100 at 2 ms.
	b1 := make([]int64, 100)
	for i := range b1 {
		b1[i] = ms(1)
	}
	b1[0], b1[1] = ms(2), ms(2)
	runs := []*result{run("A", a1...), run("B", b1...), run("B", b1...), run("A", a2...)}
	got := map[string]summaryRow{}
	for _, r := range summarize(scLatency, runs, true) {
		got[r.Metric] = r
	}
	near := func(v *float64, want float64) bool { return v != nil && *v > want*0.99 && *v < want*1.01 }
	p99 := got["latency p99, pooled"]
	// p99 of 200 messages is the 198th smallest: 5 ms for A (196 at 1 ms,
	// then 5, 5, 5, 9), 2 ms for B (196 at 1 ms, then four at 2).
	if !near(p99.A, 5) || !near(p99.B, 2) || !near(p99.Ratio, 2.5) {
		t.Fatalf("pooled p99 = %v / %v (ratio %v), want 5 / 2 ms (2.5)", deref(p99.A), deref(p99.B), deref(p99.Ratio))
	}
	if p := got["latency p99.9, pooled"]; !near(p.A, 9) {
		t.Fatalf("pooled p99.9 of A = %v, want 9 ms", deref(p.A))
	}
	if p := got["latency p50, pooled"]; !near(p.A, 1) || !near(p.B, 1) {
		t.Fatalf("pooled p50 = %v / %v, want 1 ms", deref(p.A), deref(p.B))
	}
	// One run per target: no pooled rows.
	for _, r := range summarize(scLatency, runs[:2], true) {
		if strings.Contains(r.Metric, "pooled") {
			t.Fatalf("pooled row %q from a single run", r.Metric)
		}
	}
}

func deref(v *float64) any {
	if v == nil {
		return nil
	}
	return *v
}

// TestPaired checks the pair-by-pair counts: each repetition's A against
// its own B, ties left out of the sign test.
func TestPaired(t *testing.T) {
	run := func(target string, rep int, p99us float64) *result {
		return &result{Target: target, Rep: rep, Latency: &latencySummary{P50: 100, P99: p99us, P999: 1000}}
	}
	var runs []*result
	// 13 repetitions where A is lower, 3 where B is, 2 ties.
	for rep := 1; rep <= 18; rep++ {
		a, b := 400.0, 500.0
		switch {
		case rep > 16:
			b = a
		case rep > 13:
			a, b = b, a
		}
		runs = append(runs, run("A", rep, a), run("B", rep, b))
	}
	// An A without its B (an interrupted invocation) is not a pair.
	runs = append(runs, run("A", 19, 1))
	got := map[string]pairedRow{}
	for _, p := range paired(scLatency, runs) {
		got[p.Metric] = p
	}
	p99 := got["latency p99"]
	if p99.Pairs != 18 || p99.ALower != 13 || p99.BLower != 3 {
		t.Fatalf("p99 pairs = %+v, want 18 pairs, A lower in 13, B in 3", p99)
	}
	// 2 * P(X <= 3), X ~ Binomial(16, 1/2) = 2 * 697 / 65536.
	if want := 2 * 697.0 / 65536; math.Abs(p99.P-want) > 1e-9 {
		t.Fatalf("p99 sign test p = %v, want %v", p99.P, want)
	}
	if p50 := got["latency p50"]; p50.ALower != 0 || p50.BLower != 0 || p50.P != 1 {
		t.Fatalf("p50, all ties: %+v, want no side lower and p = 1", p50)
	}
	if _, ok := got["broker CPU"]; ok {
		t.Fatal("broker CPU paired without a --pid figure")
	}
	for _, tc := range []struct {
		a, b int
		want float64
	}{{10, 0, 2.0 / 1024}, {0, 10, 2.0 / 1024}, {5, 5, 1}, {0, 0, 1}, {1, 0, 1}} {
		if got := signTest(tc.a, tc.b); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("signTest(%d, %d) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}
