package plugins

import (
	"sync"
	"sync/atomic"
	"time"
)

// watchdog ends the Lua calls that pass their deadline. One goroutine scans
// the VMs every tick (a tenth of the shortest plugin timeout, between 1ms
// and 10ms), so that a call costs an atomic store instead of arming and
// stopping a timer; a timeout is seen within a tick. It sleeps while no VM
// exists.
type watchdog struct {
	mu   sync.Mutex
	vms  map[*vm]struct{}
	tick atomic.Int64
	wake chan struct{}
	stop chan struct{}
}

const (
	minTick = time.Millisecond
	maxTick = 10 * time.Millisecond
)

func newWatchdog() *watchdog {
	w := &watchdog{vms: map[*vm]struct{}{}, wake: make(chan struct{}, 1), stop: make(chan struct{})}
	w.tick.Store(int64(maxTick))
	return w
}

// setTimeout adapts the tick to the shortest timeout in use.
func (w *watchdog) setTimeout(shortest time.Duration) {
	w.tick.Store(int64(min(max(shortest/10, minTick), maxTick)))
}

func (w *watchdog) add(v *vm) {
	w.mu.Lock()
	w.vms[v] = struct{}{}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *watchdog) remove(v *vm) {
	w.mu.Lock()
	delete(w.vms, v)
	w.mu.Unlock()
}

func (w *watchdog) run() {
	t := time.NewTimer(maxTick)
	defer t.Stop()
	for {
		w.mu.Lock()
		n := len(w.vms)
		w.mu.Unlock()
		if n == 0 {
			select {
			case <-w.wake:
				continue
			case <-w.stop:
				return
			}
		}
		t.Reset(time.Duration(w.tick.Load()))
		select {
		case <-t.C:
		case <-w.stop:
			return
		}
		at := now()
		w.mu.Lock()
		for v := range w.vms {
			v.ctx.expireIfPast(at)
		}
		w.mu.Unlock()
	}
}
