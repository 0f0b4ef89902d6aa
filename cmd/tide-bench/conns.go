package main

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidemq/tide/core/packet"
)

// connsResult is the outcome of the conns scenario.
type connsResult struct {
	Wanted  int `json:"wanted"`
	Opened  int `json:"opened"`
	Failed  int `json:"failed"`
	Dropped int `json:"dropped_while_idle"`
	// Seconds is the time from the first dial to the last CONNACK.
	Seconds float64         `json:"seconds"`
	Rate    float64         `json:"connects_per_second"`
	Connack *latencySummary `json:"connack_latency,omitempty"`
	// RSS of the broker before the first dial and after --hold, and the
	// difference per opened connection. The difference is taken from
	// RSSBaseline, the RSS before the first conns run of the invocation:
	// the connections of a previous repetition leave memory the broker
	// reuses, and a later run's own "before" would hide it.
	RSSBaseline  int64   `json:"rss_baseline_kb,omitempty"`
	RSSBefore    int64   `json:"rss_before_kb,omitempty"`
	RSSAfter     int64   `json:"rss_after_kb,omitempty"`
	BytesPerConn float64 `json:"bytes_per_conn,omitempty"`
}

// idleConn is a connection that only keeps alive: no buffers, one small
// read loop, so that ten thousand of them cost the generator little.
type idleConn struct {
	nc     net.Conn
	closed atomic.Bool
	done   chan struct{}
}

// runConns opens --clients connections at --rate, holds them idle, and
// measures what they cost the broker.
func runConns(ctx context.Context, c *config, t *target, rep int, prog *progress) (*result, error) {
	if err := raiseNoFile(c.clients); err != nil {
		return nil, err
	}
	runID, _ := newRunID()
	o := c.dialOptions(t.host)
	res := &result{Scenario: scConns, Target: t.name, Label: t.label, Host: t.host, Rep: rep, Version: c.version, Rate: c.rate}
	cr := &connsResult{Wanted: c.clients}
	res.Conns = cr

	var samp *sampler
	if t.pid > 0 {
		var err error
		if samp, err = startSampler(t.pid); err != nil {
			return nil, err
		}
		cr.RSSBefore = samp.rss0
		if t.rssBase == 0 {
			t.rssBase = samp.rss0
		}
		cr.RSSBaseline = t.rssBase
	}

	var (
		mu      sync.Mutex
		conns   []*idleConn
		errs    = map[string]int{}
		opened  atomic.Uint64
		lastAck atomic.Int64
	)
	lat := newLatency()
	prog.start(fmt.Sprintf("conns %s rep %d", t.label, rep), func() counters {
		return counters{sent: opened.Load(), planned: uint64(c.clients)}
	})
	runCtx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	clock, mclock := startSelfClock(), startMachineClock()
	t0 := nowNanos()

	work := make(chan int)
	var wg sync.WaitGroup
	par := c.connectParallel
	if c.rate == 0 || c.rate > 1000 {
		par = max(par, 256)
	}
	for range par {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]int64, 0, 1)
			for i := range work {
				start := nowNanos()
				nc, err := dialNet(runCtx, o)
				if err == nil {
					_, err = handshake(nc, packet.NewReader(nc), o, fmt.Sprintf("tb%s-c%d", runID, i))
					if err != nil {
						nc.Close()
					}
				}
				if err != nil {
					mu.Lock()
					errs[err.Error()]++
					mu.Unlock()
					continue
				}
				now := nowNanos()
				lat.record(append(buf[:0], now-start))
				for {
					old := lastAck.Load()
					if now <= old || lastAck.CompareAndSwap(old, now) {
						break
					}
				}
				ic := &idleConn{nc: nc, done: make(chan struct{})}
				go ic.readLoop()
				mu.Lock()
				conns = append(conns, ic)
				mu.Unlock()
				opened.Add(1)
			}
		}()
	}
	// Dispatch on the pacing schedule.
	timer := time.NewTimer(time.Hour)
	interrupted := false
dispatch:
	for i := 0; i < c.clients; i++ {
		if c.rate > 0 {
			due := t0 + int64(float64(i)*1e9/c.rate)
			if d := due - nowNanos(); d > 0 {
				timer.Reset(time.Duration(d))
				select {
				case <-timer.C:
				case <-runCtx.Done():
					interrupted = true
					break dispatch
				}
			}
		}
		select {
		case work <- i:
		case <-runCtx.Done():
			interrupted = true
			break dispatch
		}
	}
	timer.Stop()
	close(work)
	wg.Wait()
	if la := lastAck.Load(); la > 0 {
		cr.Seconds = float64(la-t0) / 1e9
	}
	cr.Opened = int(opened.Load())
	for _, n := range errs {
		cr.Failed += n
	}
	if interrupted {
		res.Errors = append(res.Errors, fmt.Sprintf("stopped after %d of %d connections", cr.Opened, c.clients))
	}
	if cr.Seconds > 0 {
		cr.Rate = float64(cr.Opened) / cr.Seconds
	}
	cr.Connack = lat.summary()

	// Hold them idle (keeping them alive), then see what the broker holds.
	stopPing := pingIdle(conns, o.keepAlive)
	if !interrupted && c.hold > 0 {
		select {
		case <-time.After(c.hold):
		case <-runCtx.Done():
			if ctx.Err() != nil {
				res.Interrupted = true
			} else {
				res.TimedOut = true
			}
		}
	}
	res.Generator = clock.finish()
	busy, busyOK := mclock.share()
	if samp != nil {
		cr.RSSAfter = samp.rss()
		res.Broker = samp.finish()
		if cr.Opened > 0 {
			cr.BytesPerConn = float64(cr.RSSAfter-cr.RSSBaseline) * 1024 / float64(cr.Opened)
		}
	}
	res.setMachine(busy, busyOK)
	stopPing()
	prog.stop()
	for _, ic := range conns {
		if ic.closed.Load() {
			cr.Dropped++
		}
	}
	// Reset rather than close: ten thousand sockets in TIME_WAIT would
	// exhaust the ephemeral ports of the next repetition.
	for _, ic := range conns {
		if tc := tcpOf(ic.nc); tc != nil {
			tc.SetLinger(0)
		}
		ic.nc.Close()
	}
	for _, ic := range conns {
		<-ic.done
	}
	for msg, n := range errs {
		res.Errors = append(res.Errors, fmt.Sprintf("%d connections failed: %s", n, msg))
	}
	if cr.Dropped > 0 {
		res.Errors = append(res.Errors, fmt.Sprintf("%d connections were closed by the broker while idle", cr.Dropped))
	}
	res.Seconds = cr.Seconds
	res.judge()
	return res, nil
}

// readLoop discards PINGRESPs and notices when the broker closes.
func (ic *idleConn) readLoop() {
	defer close(ic.done)
	var b [64]byte
	for {
		if _, err := ic.nc.Read(b[:]); err != nil {
			ic.closed.Store(true)
			return
		}
	}
}

// pingIdle keeps idle connections alive from one goroutine.
func pingIdle(conns []*idleConn, keepAlive uint16) (stop func()) {
	if keepAlive == 0 {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(time.Duration(keepAlive) * time.Second / 2)
		defer t.Stop()
		ping := []byte{byte(packet.PINGREQ) << 4, 0}
		for {
			select {
			case <-done:
				return
			case <-t.C:
				for _, ic := range conns {
					ic.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
					ic.nc.Write(ping)
				}
			}
		}
	}()
	return func() { close(done); <-finished }
}
