package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidemq/tide/core/packet"
)

// target is one broker under test.
type target struct {
	name  string // "A" or "B"
	label string
	host  string
	pid   int
	// rssBase is the broker's RSS before the first conns run of this
	// invocation: later runs measure against it, since a broker keeps
	// (and reuses) the memory the previous run's connections used.
	rssBase int64
}

// plan is who publishes what and who expects what, for one scenario.
type plan struct {
	pubs []pubPlan
	subs []subPlan
}

type pubPlan struct {
	topic string
	count int
}

type subPlan struct {
	filter string
	from   []int // publisher ids whose every message this subscriber expects
}

// makePlan lays out a message scenario under prefix. --count is the total
// published, split evenly (the first publishers take the remainder).
func makePlan(c *config, prefix string) plan {
	var p plan
	split := func(n int) {
		per, extra := c.count/n, c.count%n
		for i := range p.pubs {
			p.pubs[i].count = per
			if i < extra {
				p.pubs[i].count++
			}
		}
	}
	all := func(n int) []int {
		ids := make([]int, n)
		for i := range ids {
			ids[i] = i
		}
		return ids
	}
	switch c.scenario {
	case scFanin, scLatency:
		base := prefix + "/" + c.scenario
		p.pubs = make([]pubPlan, c.clients)
		for i := range p.pubs {
			p.pubs[i].topic = fmt.Sprintf("%s/%d", base, i)
		}
		split(c.clients)
		p.subs = []subPlan{{filter: base + "/+", from: all(c.clients)}}
	case scFanout:
		t := prefix + "/fanout"
		p.pubs = []pubPlan{{topic: t, count: c.count}}
		p.subs = make([]subPlan, c.clients)
		for i := range p.subs {
			p.subs[i] = subPlan{filter: t, from: []int{0}}
		}
	case scPairs:
		p.pubs = make([]pubPlan, c.clients)
		p.subs = make([]subPlan, c.clients)
		for i := range p.pubs {
			t := fmt.Sprintf("%s/pairs/%d", prefix, i)
			p.pubs[i].topic = t
			p.subs[i] = subPlan{filter: t, from: []int{i}}
		}
		split(c.clients)
	}
	return p
}

// publisher sends its planned messages on one connection.
type publisher struct {
	c      *conn
	id     uint32
	topic  string
	count  int
	qos    byte
	window int

	sent, acked, rejected atomic.Uint64
	sem                   chan struct{} // one token per message in flight
	ids                   idSet
	nextID                uint16

	lagMax atomic.Int64 // worst lateness behind the pacing schedule, ns
	late   atomic.Uint64
	done   atomic.Bool
}

// pacing spreads a publisher's messages on a schedule: message seq is due
// at start + offset + seq*interval.
type pacing struct {
	start, offset int64
	interval      float64
}

// allocID picks a free packet identifier; the window bounds how many are
// taken, so a free one is always near.
func (p *publisher) allocID() uint16 {
	for {
		p.nextID++
		if p.nextID == 0 {
			p.nextID = 1
		}
		if p.ids.set(p.nextID) {
			return p.nextID
		}
	}
}

// flush writes what the publisher has buffered, before it waits.
func (c *conn) flush() error {
	c.wmu.Lock()
	err := c.w.Flush()
	if c.pending.Load() {
		c.drainLocked()
	}
	c.wmu.Unlock()
	c.kick()
	return err
}

// run publishes every planned message. With QoS 1/2 it keeps up to window
// messages in flight, flushing only when it must wait, so a burst goes out
// in few writes; then it waits for the last acknowledgements.
func (p *publisher) run(ctx context.Context, size int, magic uint32, pace *pacing) {
	defer p.done.Store(true)
	c := p.c
	payload := make([]byte, size)
	for i := hdrLen; i < size; i++ {
		payload[i] = byte('a' + i%26)
	}
	putHeader(payload, magic, p.id)
	pk := packet.Publish{Topic: p.topic, QoS: p.qos, Payload: payload}
	var sl sleeper
	if pace != nil {
		// The connection's death ends the waits too.
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go func() {
			select {
			case <-c.dead:
				cancel()
			case <-ctx.Done():
			}
		}()
		sl = newSleeper(ctx)
		defer sl.close()
	}
	acquire := func() bool {
		select {
		case p.sem <- struct{}{}:
			return true
		default:
		}
		if err := c.flush(); err != nil {
			c.fail(err)
			return false
		}
		select {
		case p.sem <- struct{}{}:
			return true
		case <-c.dead:
		case <-ctx.Done():
		}
		return false
	}
	for seq := 0; seq < p.count; seq++ {
		if pace != nil {
			due := pace.start + pace.offset + int64(float64(seq)*pace.interval)
			if d := due - nowNanos(); d > 0 && !sl.sleep(time.Duration(d)) {
				return
			}
			if lag := nowNanos() - due; lag > p.lagMax.Load() {
				p.lagMax.Store(lag)
			}
			if nowNanos()-due > int64(time.Millisecond) {
				p.late.Add(1)
			}
		}
		if p.qos > 0 {
			if !acquire() {
				return
			}
			pk.PacketID = p.allocID()
		}
		putSeq(payload, uint32(seq), nowNanos())
		c.wmu.Lock()
		// Encode straight into the writer's free space: no copy when it fits.
		_, err := c.w.Write(pk.Append(c.w.AvailableBuffer(), c.version))
		if err == nil && (pace != nil || seq == p.count-1) {
			err = c.w.Flush()
		}
		if c.pending.Load() {
			c.drainLocked()
		}
		c.wmu.Unlock()
		c.kick()
		if err != nil {
			c.fail(err)
			return
		}
		p.sent.Add(1)
	}
	if p.qos > 0 {
		for range cap(p.sem) {
			if !acquire() {
				return
			}
		}
	}
}

// newRunID returns a random tag for topics and client ids, so that runs
// never see each other's messages, even on a shared broker.
func newRunID() (string, uint32) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b[:3]), binary.BigEndian.Uint32(b[4:]) | 1
}

// dialAll runs f for 0..n-1 with at most par at once and returns the
// first error.
func dialAll(ctx context.Context, n, par int, f func(i int) error) error {
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	sem := make(chan struct{}, par)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for i := 0; i < n; i++ {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := f(i); err != nil {
				once.Do(func() { first = err; cancel() })
			}
		}()
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		first = ctx.Err()
	}
	return first
}

// counters is what progress shows: messages sent and received, or for
// conns (expected 0) connections opened.
type counters struct {
	sent, planned, recv, expected uint64
}

// runMessages runs fanin, fanout, pairs or latency once against t.
func runMessages(ctx context.Context, c *config, t *target, rep int, prog *progress) (*result, error) {
	runID, magic := newRunID()
	pl := makePlan(c, c.topicPrefix+"/"+runID)
	if err := raiseNoFile(len(pl.pubs) + len(pl.subs)); err != nil {
		return nil, err
	}
	o := c.dialOptions(t.host)
	lat := newLatency()

	subs := make([]*subscriber, len(pl.subs))
	subConns := make([]*conn, len(pl.subs))
	pubs := make([]*publisher, len(pl.pubs))
	var all []*conn
	var allMu sync.Mutex
	closeAll := func() {
		allMu.Lock()
		defer allMu.Unlock()
		for _, cn := range all {
			cn.close()
		}
		for _, cn := range all {
			<-cn.readDone
		}
	}
	keep := func(cn *conn) {
		allMu.Lock()
		all = append(all, cn)
		allMu.Unlock()
		cn.start()
	}

	var downgraded atomic.Int64
	err := dialAll(ctx, len(pl.subs), c.connectParallel, func(i int) error {
		cn, err := dialMQTT(ctx, o, fmt.Sprintf("tb%s-s%d", runID, i), 4096)
		if err != nil {
			return fmt.Errorf("subscriber %d: connect to %s: %w", i, t.host, err)
		}
		granted, err := cn.subscribe(pl.subs[i].filter, byte(c.subQoS), c.connectTimeout)
		if err != nil {
			cn.nc.Close()
			return fmt.Errorf("subscriber %d: %w", i, err)
		}
		if int(granted) < c.subQoS {
			downgraded.Add(1)
		}
		s := newSubscriber(magic, len(pl.pubs), lat)
		for _, id := range pl.subs[i].from {
			s.expect(id, pl.pubs[id].count)
		}
		cn.sub = s
		subs[i], subConns[i] = s, cn
		keep(cn)
		return nil
	})
	if err == nil {
		err = dialAll(ctx, len(pl.pubs), c.connectParallel, func(i int) error {
			cn, err := dialMQTT(ctx, o, fmt.Sprintf("tb%s-p%d", runID, i), 64<<10)
			if err != nil {
				return fmt.Errorf("publisher %d: connect to %s: %w", i, t.host, err)
			}
			w := c.window
			if cn.info.receiveMax > 0 && cn.info.receiveMax < w {
				w = cn.info.receiveMax
			}
			p := &publisher{c: cn, id: uint32(i), topic: pl.pubs[i].topic, count: pl.pubs[i].count,
				qos: byte(c.qos), window: w, sem: make(chan struct{}, w)}
			cn.pub = p
			pubs[i] = p
			keep(cn)
			return nil
		})
	}
	if err != nil {
		closeAll()
		return nil, err
	}
	stopPing := startPinger(all)
	defer stopPing()

	var samp *sampler
	if t.pid > 0 {
		if samp, err = startSampler(t.pid); err != nil {
			closeAll()
			return nil, err
		}
	}
	res := &result{
		Scenario: c.scenario, Target: t.name, Label: t.label, Host: t.host, Rep: rep,
		Publishers: len(pubs), Subscribers: len(subs), QoS: c.qos, SubQoS: c.subQoS, Size: c.size, Version: c.version,
		Window: c.window, Rate: c.rate,
	}
	if c.qos > 0 {
		for _, p := range pubs {
			res.Window = min(res.Window, p.window)
		}
	} else {
		res.Window = 0
	}
	for _, p := range pubs {
		res.Planned += uint64(p.count)
	}
	for _, s := range subs {
		res.Expected += s.expected
	}
	count := func() counters {
		k := counters{planned: res.Planned, expected: res.Expected}
		for _, p := range pubs {
			k.sent += p.sent.Load()
		}
		for _, s := range subs {
			k.recv += s.unique.Load()
		}
		return k
	}
	prog.start(fmt.Sprintf("%s %s rep %d", c.scenario, t.label, rep), count)

	runCtx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	clock, mclock := startSelfClock(), startMachineClock()
	t0 := nowNanos()
	var pubWG sync.WaitGroup
	var pubEnd atomic.Int64
	for i, p := range pubs {
		var pc *pacing
		if c.rate > 0 {
			interval := float64(len(pubs)) * 1e9 / c.rate
			pc = &pacing{start: t0, offset: int64(float64(i) * 1e9 / c.rate), interval: interval}
		}
		pubWG.Add(1)
		go func() {
			defer pubWG.Done()
			p.run(runCtx, c.size, magic, pc)
			now := nowNanos()
			for {
				old := pubEnd.Load()
				if now <= old || pubEnd.CompareAndSwap(old, now) {
					break
				}
			}
		}()
	}
	pubsDone := make(chan struct{})
	go func() { pubWG.Wait(); close(pubsDone) }()

	// Wait: until everything arrived, or nothing arrived for --drain after
	// the publishers finished, or the run's timeout.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var lastRecv uint64
	lastChange := time.Now()
	finished := false
	for !finished {
		select {
		case <-runCtx.Done():
			if ctx.Err() != nil {
				res.Interrupted = true
			} else {
				res.TimedOut = true
			}
			finished = true
			continue
		case <-tick.C:
		}
		k := count()
		if k.recv != lastRecv {
			lastRecv, lastChange = k.recv, time.Now()
		}
		select {
		case <-pubsDone:
			if k.recv >= k.expected || time.Since(lastChange) >= c.drain || allDead(subConns) {
				finished = true
			}
		default:
		}
	}
	gen := clock.finish()
	busy, busyOK := mclock.share()
	end := nowNanos()
	if samp != nil {
		res.Broker = samp.finish()
	}
	prog.stop()
	cancel()
	closeAll()
	pubWG.Wait()

	// Everything has stopped: read the counters.
	res.Generator = gen
	var lastAt int64
	for _, p := range pubs {
		res.Published += p.sent.Load()
		res.Acked += p.acked.Load()
		res.Rejected += p.rejected.Load()
		if c.rate > 0 {
			res.SendLagMaxUs = max(res.SendLagMaxUs, float64(p.lagMax.Load())/1e3)
			res.LateSends += p.late.Load()
		}
	}
	for _, s := range subs {
		s.flush()
		res.Delivered += s.unique.Load()
		res.Duplicates += s.dups
		res.BadDuplicates += s.badDups
		res.OutOfOrder += s.ooo
		res.Unexpected += s.unexpected
		lastAt = max(lastAt, s.last)
	}
	res.Lost = res.Expected - res.Delivered
	res.LossPct = 100 * float64(res.Lost) / float64(res.Expected)
	if lastAt == 0 {
		lastAt = end
	}
	res.Seconds = float64(lastAt-t0) / 1e9
	if pe := pubEnd.Load(); pe > 0 {
		res.PublishSeconds = float64(pe-t0) / 1e9
	}
	if res.Seconds > 0 {
		res.DeliveryRate = float64(res.Delivered) / res.Seconds
	}
	if res.PublishSeconds > 0 {
		res.PublishRate = float64(res.Published) / res.PublishSeconds
	}
	res.Latency = lat.summary()
	res.hist = lat.snapshot()
	res.setMachine(busy, busyOK)
	for i, cn := range subConns {
		if err := cn.failure(); err != nil {
			res.Errors = append(res.Errors, fmt.Sprintf("subscriber %d: %v", i, err))
		}
		if n := cn.protoErr.Load(); n > 0 {
			res.Errors = append(res.Errors, fmt.Sprintf("subscriber %d: %d protocol errors", i, n))
		}
	}
	for i, p := range pubs {
		if err := p.c.failure(); err != nil {
			res.Errors = append(res.Errors, fmt.Sprintf("publisher %d: %v", i, err))
		}
		if n := p.c.protoErr.Load(); n > 0 {
			res.Errors = append(res.Errors, fmt.Sprintf("publisher %d: %d acknowledgements for packet ids not in flight", i, n))
		}
	}
	if n := downgraded.Load(); n > 0 {
		res.Warnings = append(res.Warnings, fmt.Sprintf("%d subscriptions were granted a QoS below %d", n, c.subQoS))
	}
	res.judge()
	return res, nil
}

func allDead(cs []*conn) bool {
	for _, c := range cs {
		select {
		case <-c.dead:
		default:
			return false
		}
	}
	return true
}

// startPinger sends PINGREQ on every connection each half keep alive (the
// shortest granted), so that a subscriber that only listens is not taken
// for dead on long runs.
func startPinger(cs []*conn) (stop func()) {
	var keepAlive uint16
	for _, c := range cs {
		if ka := c.info.keepAlive; ka > 0 && (keepAlive == 0 || ka < keepAlive) {
			keepAlive = ka
		}
	}
	if keepAlive == 0 {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Duration(keepAlive) * time.Second / 2)
		defer t.Stop()
		ping := []byte{byte(packet.PINGREQ) << 4, 0}
		for {
			select {
			case <-done:
				return
			case <-t.C:
				for _, c := range cs {
					c.send(ping)
				}
			}
		}
	}()
	return func() { close(done) }
}
