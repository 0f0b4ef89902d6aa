package plugins

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// pool holds a plugin's VMs, created at load and reused by every call. A
// VM that failed mid-call is discarded and replaced in the background, so
// the pool may be short of a VM for the time it takes to load one.
//
// A returned VM goes back on a free list that any caller may take from,
// rather than being handed to a caller parked on a channel: a parked
// goroutine holds the VM it was handed until the scheduler runs it, and the
// callers that are running meanwhile find the pool empty and park too. With
// more connections than VMs, that convoy cut the broker's throughput by
// four. Callers that find the pool empty first yield (a hook holds its VM
// for microseconds), then sleep until a VM is returned or their deadline.
type pool struct {
	in   *instance
	kind string // "gate" or "observer", for logs
	size int

	mu      sync.Mutex
	free    []*vm
	closed  bool
	waiters atomic.Int32
	wake    chan struct{} // a token: a VM was returned
	done    chan struct{} // closed by close
}

func newPool(in *instance, kind string, size int) *pool {
	return &pool{in: in, kind: kind, size: size, free: make([]*vm, 0, size), wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// fill creates the pool's VMs; the first error stops it.
func (p *pool) fill() error {
	for p.idle() < p.size {
		v, err := p.in.newVM()
		if err != nil {
			return err
		}
		p.put(v)
	}
	return nil
}

// idle returns the number of free VMs.
func (p *pool) idle() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.free)
}

// tryGet takes a free VM, or returns nil.
func (p *pool) tryGet() *vm {
	p.mu.Lock()
	n := len(p.free)
	if n == 0 {
		p.mu.Unlock()
		return nil
	}
	v := p.free[n-1]
	p.free[n-1] = nil
	p.free = p.free[:n-1]
	more := n > 1
	p.mu.Unlock()
	// Pass the wake-up on: a put that found the token already taken did
	// not wake anyone for its VM.
	if more && p.waiters.Load() > 0 {
		p.signal()
	}
	return v
}

const yields = 3

// get takes a VM, waiting until deadline (since epoch) at most.
func (p *pool) get(deadline int64) (*vm, error) {
	if v := p.tryGet(); v != nil {
		return v, nil
	}
	for range yields {
		runtime.Gosched()
		if v := p.tryGet(); v != nil {
			return v, nil
		}
	}
	p.waiters.Add(1)
	defer p.waiters.Add(-1)
	var t *time.Timer
	for {
		if v := p.tryGet(); v != nil {
			return v, nil
		}
		wait := time.Duration(deadline - now())
		if wait <= 0 {
			return nil, errBusy
		}
		if t == nil {
			t = time.NewTimer(wait)
			defer t.Stop()
		} else {
			t.Reset(wait)
		}
		select {
		case <-p.wake:
		case <-t.C:
		case <-p.done:
			return nil, errClosed
		}
	}
}

func (p *pool) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// put returns a healthy VM, or closes it if the pool was closed (only a
// replacement can come back that late: calls end before the pool closes).
func (p *pool) put(v *vm) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		v.close()
		return
	}
	p.free = append(p.free, v)
	p.mu.Unlock()
	if p.waiters.Load() > 0 {
		p.signal()
	}
}

// discard closes a VM whose state may be inconsistent and loads another.
func (p *pool) discard(v *vm) {
	v.close()
	p.in.stats.replaced.Add(1)
	p.in.m.goFunc(p.replace)
}

func (p *pool) replace() {
	backoff := 100 * time.Millisecond
	for {
		v, err := p.in.newVM()
		if err == nil {
			p.put(v)
			return
		}
		p.in.m.limiter.Warn(p.in.log, p.in.cfg.Name+"/reload-vm", "cannot replace a discarded Lua VM; retrying", "pool", p.kind, "err", err, "retry_in", backoff)
		select {
		case <-time.After(backoff):
		case <-p.done:
			return
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

// close closes the idle VMs; VMs put back later are closed by put.
func (p *pool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.closed = true
	close(p.done)
	for _, v := range p.free {
		v.close()
	}
	p.free = nil
}
