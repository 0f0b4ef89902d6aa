package main

import (
	"io"
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
