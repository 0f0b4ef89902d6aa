package plugins

import (
	"sync"
	"time"
)

// pool holds a plugin's VMs, created at load and reused by every call. A
// VM that failed mid-call is discarded and replaced in the background, so
// the pool may be short of a VM for the time it takes to load one.
type pool struct {
	in   *instance
	kind string // "gate" or "observer", for logs
	ch   chan *vm

	mu     sync.Mutex
	closed bool
	done   chan struct{}
}

func newPool(in *instance, kind string, size int) *pool {
	return &pool{in: in, kind: kind, ch: make(chan *vm, size), done: make(chan struct{})}
}

// fill creates the pool's VMs; the first error stops it.
func (p *pool) fill() error {
	for len(p.ch) < cap(p.ch) {
		v, err := p.in.newVM()
		if err != nil {
			return err
		}
		p.ch <- v
	}
	return nil
}

// get takes a VM, waiting until deadline (since epoch) at most.
func (p *pool) get(deadline int64) (*vm, error) {
	select {
	case v := <-p.ch:
		return v, nil
	default:
	}
	wait := time.Duration(deadline - now())
	if wait <= 0 {
		return nil, errBusy
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case v := <-p.ch:
		return v, nil
	case <-t.C:
		return nil, errBusy
	case <-p.done:
		return nil, errClosed
	}
}

// put returns a healthy VM. The channel has room for every VM of the pool,
// so it never blocks. Calls end before the pool closes (the manager waits
// for them), so only replacements can race with close: they use add.
func (p *pool) put(v *vm) { p.ch <- v }

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
			p.add(v)
			return
		}
		p.in.m.logLimited(p.in.cfg.Name+"/reload-vm", p.in.log, "cannot replace a discarded Lua VM; retrying", "pool", p.kind, "err", err, "retry_in", backoff)
		select {
		case <-time.After(backoff):
		case <-p.done:
			return
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

// add puts a new VM in, or closes it if the pool was closed meanwhile.
func (p *pool) add(v *vm) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		v.close()
		return
	}
	p.ch <- v
}

// close closes the idle VMs; VMs added later are closed by add.
func (p *pool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.closed = true
	close(p.done)
	for {
		select {
		case v := <-p.ch:
			v.close()
		default:
			return
		}
	}
}
