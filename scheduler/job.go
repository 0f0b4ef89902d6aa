package scheduler

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/tidemq/tide/conf"
	"github.com/tidemq/tide/plugins/lualib/broker"
	"github.com/tidemq/tide/plugins/lualib/crypto"
	httpmod "github.com/tidemq/tide/plugins/lualib/http"
	jsonmod "github.com/tidemq/tide/plugins/lualib/json"
	"github.com/tidemq/tide/plugins/lualib/kv"
	logmod "github.com/tidemq/tide/plugins/lualib/log"
	"github.com/tidemq/tide/plugins/lualib/luaconv"
	"github.com/tidemq/tide/plugins/lualib/sink"
	sqlmod "github.com/tidemq/tide/plugins/lualib/sql"
	"github.com/tidemq/tide/plugins/sandbox"
)

// Run outcomes, in JobStatus.LastOutcome.
const (
	OutcomeOK       = "ok"
	OutcomeError    = "error"
	OutcomeTimeout  = "timeout"
	OutcomeCanceled = "canceled" // the broker stopped during the run
)

// Modules lists the modules a job's script may require, in the order
// error messages give them: the plugins' modules, then store, window and
// alert.
var Modules = []string{jsonmod.Name, logmod.Name, crypto.Name, broker.Name, kv.Name, httpmod.Name, sqlmod.Name, sink.Name,
	storeName, windowName, alertName}

// maxMissed bounds the count of occurrences skipped at once (a cron job
// after the machine slept for a year), so that counting them stays cheap.
const maxMissed = 100000

// JobStatus is a job's state, for $SYS, the admin API and `tide jobs`.
type JobStatus struct {
	Name     string `json:"name"`
	Script   string `json:"script"`
	Schedule string `json:"schedule"` // "every 1m" or "cron */5 * * * *"
	// TimeoutSeconds is the longest a run may take.
	TimeoutSeconds float64 `json:"timeout_seconds"`
	// Running reports that a run is in progress.
	Running bool `json:"running"`
	// Runs counts the runs started, across restarts.
	Runs uint64 `json:"runs"`
	// Failures counts the runs that ended with an error or a timeout.
	Failures uint64 `json:"failures"`
	Timeouts uint64 `json:"timeouts"`
	// Skipped counts the due times that did not run: the previous run was
	// still running, or the broker was paused past them.
	Skipped uint64 `json:"skipped"`
	// LastScheduled is when the last run was due, LastRun when it started.
	LastScheduled       time.Time `json:"last_scheduled,omitzero"`
	LastRun             time.Time `json:"last_run,omitzero"`
	LastDurationSeconds float64   `json:"last_duration_seconds"`
	LastOutcome         string    `json:"last_outcome,omitempty"`
	// LastError is the last run's error, with the script's file and line.
	LastError   string    `json:"last_error,omitempty"`
	LastSuccess time.Time `json:"last_success,omitzero"`
	NextRun     time.Time `json:"next_run,omitzero"`
	// StateErrors counts the failed writes of the job's state file.
	StateErrors uint64 `json:"state_errors"`
	// ReloadError is set when the last reload could not load the job: the
	// previous version keeps running.
	ReloadError string `json:"reload_error,omitempty"`
}

// slot is one configured job across reloads: its status, its state table
// and the version currently scheduled.
type slot struct {
	s    *Scheduler
	name string
	log  *slog.Logger
	file string // "" keeps the state in memory

	// saveMu orders the writes of the state file: the runs of a job do
	// not overlap, but a run's save may still be going when the next run
	// ends, and the older snapshot must not land last.
	saveMu sync.Mutex

	mu      sync.Mutex
	cur     *version
	running bool
	pending time.Time // a due time waiting out its jitter
	status  JobStatus
	state   any    // the state table as plain Go values
	saved   []byte // the JSON last written
}

func (s *Scheduler) newSlot(name string) *slot {
	sl := &slot{s: s, name: name, log: s.log.With("job", name), status: JobStatus{Name: name}}
	if s.opts.StateDir == "" {
		return sl
	}
	sl.file = filepath.Join(s.opts.StateDir, "jobs", name+".json")
	var f jobFile
	ok, err := readJSON(sl.file, &f)
	switch {
	case err != nil:
		sl.log.Error("job state not restored: starting with an empty state", "err", err)
	case ok:
		sl.state, sl.status.Runs, sl.status.LastSuccess = f.State, f.Runs, f.LastSuccess
		sl.saved, _ = json.Marshal(f)
	}
	return sl
}

func (sl *slot) snapshot() JobStatus {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	st := sl.status
	st.Running = sl.running
	return st
}

func (sl *slot) setReloadError(err error) {
	sl.mu.Lock()
	sl.status.ReloadError = err.Error()
	sl.mu.Unlock()
}

// replace makes v the job's scheduled version: the old one stops
// scheduling (a run in progress finishes on its own VM) and v starts.
func (sl *slot) replace(v *version) {
	sl.mu.Lock()
	old := sl.cur
	sl.cur = v
	sl.status.Script = v.cfg.Script
	sl.status.Schedule = v.sched.String()
	sl.status.TimeoutSeconds = v.cfg.Timeout.Seconds()
	sl.status.ReloadError = ""
	sl.mu.Unlock()
	if old != nil {
		old.retire()
	}
	sl.mu.Lock()
	pending := sl.pending
	sl.mu.Unlock()
	v.start(pending)
}

func (sl *slot) stopLoop() {
	sl.mu.Lock()
	v := sl.cur
	sl.mu.Unlock()
	if v != nil {
		v.stopLoop()
	}
}

func (sl *slot) retire() {
	sl.mu.Lock()
	v := sl.cur
	sl.mu.Unlock()
	if v != nil {
		v.retire()
	}
}

// version is one loaded form of a job: its configuration, compiled script,
// schedule and VM. A reload makes a new version.
type version struct {
	slot   *slot
	cfg    conf.Job
	script *sandbox.Script
	sched  schedule
	env    *sandbox.Env
	sql    *sqlmod.Pools

	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
	started  atomic.Bool

	mu      sync.Mutex
	idle    *lua.LState // the VM between runs
	busy    bool        // a run holds the VM
	retired bool
}

// newVersion compiles a job's script and loads its first VM: the main
// chunk runs, and must define run(ctx).
func (s *Scheduler) newVersion(sl *slot, c conf.Job) (*version, error) {
	sched, err := parseSchedule(c)
	if err != nil {
		return nil, err
	}
	script, err := sandbox.Load(c.Script)
	if err != nil {
		return nil, err
	}
	v := &version{slot: sl, cfg: c, script: script, sched: sched, sql: sqlmod.NewPools(),
		stop: make(chan struct{}), done: make(chan struct{})}
	lm := logmod.New(s.opts.Logger.With("job", c.Name, "script", c.Script))
	v.env = &sandbox.Env{
		Script: script,
		Kind:   "job",
		Names:  Modules,
		Print:  lm.Print,
		Modules: map[string]lua.LGFunction{
			jsonmod.Name: jsonmod.Loader,
			logmod.Name:  lm.Loader,
			crypto.Name:  crypto.Loader,
			broker.Name:  broker.New(s.brokerBackend()).Loader,
			kv.Name:      s.kv.Loader,
			httpmod.Name: s.http.Loader,
			sqlmod.Name:  v.sql.Loader,
			sink.Name:    sink.New(func() sink.Writer { return s.opts.Sinks }).Loader,
			storeName:    s.storeLoader,
			windowName:   s.windowLoader,
			alertName:    s.alertLoader(c.Name),
		},
		MaxString: s.opts.MaxStringBytes,
	}
	L, err := v.newVM()
	if err != nil {
		v.sql.Close()
		return nil, err
	}
	v.idle = L
	return v, nil
}

// brokerBackend keeps a nil Broker a nil Backend (not a typed nil).
func (s *Scheduler) brokerBackend() broker.Backend {
	if s.opts.Broker == nil {
		return nil
	}
	return s.opts.Broker
}

// newVM creates a VM and runs the script's main chunk in it, under the
// job's timeout.
func (v *version) newVM() (*lua.LState, error) {
	s := v.slot.s
	L := sandbox.NewState()
	v.env.Install(L)
	settings := v.cfg.Settings
	if settings == nil {
		settings = map[string]any{}
	}
	L.SetGlobal("config", luaconv.ToLua(L, settings))
	err, timedOut := s.withTimeout(L, v.cfg.Timeout.Duration, func() error {
		L.Push(L.NewFunctionFromProto(v.script.Proto))
		return L.PCall(0, 0, nil)
	})
	if err != nil {
		L.Close()
		if timedOut {
			return nil, fmt.Errorf("%s: loading took longer than the timeout (%v)", v.script.Path, v.cfg.Timeout.Duration)
		}
		return nil, errors.New(luaMessage(err))
	}
	if _, ok := L.GetGlobal("run").(*lua.LFunction); !ok {
		L.Close()
		return nil, fmt.Errorf("%s: the script defines no function run(ctx)", v.script.Path)
	}
	return L, nil
}

// withTimeout runs f with L's context canceled when timeout passes on the
// scheduler's clock or the scheduler closes; timedOut reports the former.
// A panic in a Go function called by the script is an error.
func (s *Scheduler) withTimeout(L *lua.LState, timeout time.Duration, f func() error) (err error, timedOut bool) {
	ctx, cancel := context.WithCancel(s.stopCtx)
	var expired atomic.Bool
	t := s.clock.NewTimer(timeout)
	done := make(chan struct{})
	go func() {
		select {
		case <-t.C():
			expired.Store(true)
			cancel()
		case <-done:
		}
	}()
	L.SetContext(ctx)
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
		close(done)
		t.Stop()
		cancel()
		L.RemoveContext()
		timedOut = err != nil && expired.Load()
	}()
	return f(), false
}

// luaMessage turns a PCall error into one line: "file:line: message".
func luaMessage(err error) string {
	msg := err.Error()
	var ae *lua.ApiError
	if errors.As(err, &ae) && ae.Object != nil {
		msg = ae.Object.String()
	}
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i]
	}
	return msg
}

// start runs the version's loop; pending is a due time the previous
// version had not run yet (it was waiting out its jitter).
func (v *version) start(pending time.Time) {
	v.started.Store(true)
	v.slot.s.goFunc(func() { v.loop(pending) })
}

func (v *version) stopLoop() {
	v.stopOnce.Do(func() { close(v.stop) })
	if v.started.Load() {
		<-v.done
	}
}

// retire stops the loop and closes the VM, now or when the run in
// progress ends.
func (v *version) retire() {
	v.stopLoop()
	v.mu.Lock()
	v.retired = true
	idle, busy := v.idle, v.busy
	v.idle = nil
	v.mu.Unlock()
	if idle != nil {
		idle.Close()
	}
	if !busy {
		v.sql.Close()
	}
}

// loop waits for each due time (plus jitter) and starts a run, or counts a
// skip when the previous run is still going. Due times that passed while
// the loop was not waiting for them (the broker was paused, the clock
// jumped) are skipped, never replayed.
func (v *version) loop(pending time.Time) {
	defer close(v.done)
	sl, s := v.slot, v.slot.s
	now := s.clock.Now()
	next := v.sched.Next(now)
	if !pending.IsZero() && !pending.After(now) {
		next = pending
	}
	for {
		if next.IsZero() {
			sl.log.Error("job never due again: its cron expression matches no date in the next five years", "schedule", v.sched.String())
			<-v.stop
			return
		}
		sl.mu.Lock()
		sl.status.NextRun, sl.pending = next, next
		sl.mu.Unlock()
		fire := next
		if j := v.cfg.Jitter.Duration; j > 0 {
			fire = fire.Add(time.Duration(rand.Int64N(int64(j))))
		}
		if !sleep(s.clock, fire.Sub(s.clock.Now()), v.stop) {
			return
		}
		now = s.clock.Now()
		n, missed := v.sched.Next(next), uint64(0)
		for !n.IsZero() && !n.After(now) && missed < maxMissed {
			missed++
			n = v.sched.Next(n)
		}
		if !n.IsZero() && !n.After(now) {
			n = v.sched.Next(now)
		}
		sl.begin(v, next, n, missed)
		if missed > 0 {
			sl.log.Warn("job runs skipped: their time passed while the scheduler was not running them (paused, or the clock jumped)",
				"skipped", missed, "next_run", n)
		}
		next = n
	}
}

// begin starts a run of v due at scheduled, unless one is in progress. The
// status shows the next due time and the due times missed before the run
// starts, so that a run's end is never seen with the previous next run.
func (sl *slot) begin(v *version, scheduled, next time.Time, missed uint64) {
	sl.mu.Lock()
	sl.pending = time.Time{}
	sl.status.Skipped += missed
	sl.status.NextRun = next
	if sl.running {
		sl.status.Skipped++
		skipped := sl.status.Skipped
		sl.mu.Unlock()
		sl.log.Warn("job run skipped: the previous run is still running", "scheduled", scheduled, "skipped_total", skipped)
		return
	}
	sl.running = true
	sl.status.Runs++
	n := sl.status.Runs
	sl.mu.Unlock()
	sl.s.goFunc(func() { v.run(scheduled, n) })
}

// run executes one run and records its outcome.
func (v *version) run(scheduled time.Time, n uint64) {
	sl, s := v.slot, v.slot.s
	start := s.clock.Now()
	outcome, msg := v.execute(scheduled, start, n)
	end := s.clock.Now()
	d := end.Sub(start)

	sl.mu.Lock()
	sl.running = false
	st := &sl.status
	st.LastScheduled, st.LastRun, st.LastDurationSeconds = scheduled, start, d.Seconds()
	st.LastOutcome, st.LastError = outcome, msg
	switch outcome {
	case OutcomeOK:
		st.LastSuccess = end
	case OutcomeTimeout:
		st.Timeouts++
		st.Failures++
	case OutcomeError:
		st.Failures++
	}
	sl.mu.Unlock()

	switch outcome {
	case OutcomeOK:
		sl.log.Debug("job run", "run", n, "took", d)
		sl.save()
	case OutcomeCanceled:
		sl.log.Info("job run canceled: the broker is stopping", "run", n)
	default:
		sl.log.Error("job run failed", "run", n, "outcome", outcome, "err", msg, "took", d)
	}
}

// execute runs the script's run(ctx) on the version's VM (a new VM when
// the last run failed) and keeps the state table when it succeeds.
func (v *version) execute(scheduled, start time.Time, n uint64) (outcome, msg string) {
	sl, s := v.slot, v.slot.s
	L, err := v.take()
	if err != nil {
		return OutcomeError, err.Error()
	}
	healthy := false
	defer func() { v.give(L, healthy) }()

	sl.mu.Lock()
	state, lastSuccess := sl.state, sl.status.LastSuccess
	sl.mu.Unlock()
	timeout := v.cfg.Timeout.Duration
	err, timedOut := s.withTimeout(L, timeout, func() error {
		if state == nil {
			state = map[string]any{}
		}
		L.SetGlobal("state", luaconv.ToLua(L, state))
		ctx := L.CreateTable(0, 8)
		ctx.RawSetString("job", lua.LString(v.cfg.Name))
		ctx.RawSetString("run", lua.LNumber(n))
		ctx.RawSetString("scheduled", unixSeconds(scheduled))
		ctx.RawSetString("started", unixSeconds(start))
		ctx.RawSetString("timeout", lua.LNumber(timeout.Seconds()))
		ctx.RawSetString("deadline", unixSeconds(start.Add(timeout)))
		if !lastSuccess.IsZero() {
			ctx.RawSetString("last_success", unixSeconds(lastSuccess))
		}
		return L.CallByParam(lua.P{Fn: L.GetGlobal("run"), NRet: 0, Protect: true}, ctx)
	})
	switch {
	case err != nil && timedOut:
		where := ""
		if m := luaMessage(err); strings.HasSuffix(m, ": "+context.Canceled.Error()) {
			where = " at " + strings.TrimSuffix(m, ": "+context.Canceled.Error())
		}
		return OutcomeTimeout, fmt.Sprintf("timed out after %v%s", timeout, where)
	case err != nil && s.stopCtx.Err() != nil:
		return OutcomeCanceled, "canceled: the broker is stopping"
	case err != nil:
		return OutcomeError, luaMessage(err)
	}
	healthy = true
	next, err := luaconv.ToGo(L.GetGlobal("state"), true)
	if err == nil {
		_, err = json.Marshal(next)
	}
	if err != nil {
		return OutcomeError, fmt.Sprintf("%s: state: %v (state keeps strings, numbers, booleans and tables of them)", v.script.Path, err)
	}
	sl.mu.Lock()
	sl.state = next
	sl.mu.Unlock()
	return OutcomeOK, ""
}

func unixSeconds(t time.Time) lua.LNumber { return lua.LNumber(float64(t.UnixNano()) / 1e9) }

// take returns the idle VM, or a new one.
func (v *version) take() (*lua.LState, error) {
	v.mu.Lock()
	v.busy = true
	L := v.idle
	v.idle = nil
	v.mu.Unlock()
	if L != nil {
		return L, nil
	}
	L, err := v.newVM()
	if err != nil {
		v.give(nil, false)
		return nil, err
	}
	return L, nil
}

// give returns a VM after a run: kept when healthy, closed otherwise (its
// globals may be half-updated) and when the version was retired meanwhile.
func (v *version) give(L *lua.LState, healthy bool) {
	v.mu.Lock()
	v.busy = false
	if L != nil && healthy && !v.retired && v.idle == nil {
		v.idle, L = L, nil
	}
	retired := v.retired
	v.mu.Unlock()
	if L != nil {
		L.Close()
	}
	if retired {
		v.sql.Close()
	}
}

// save writes the job's state file when it changed.
func (sl *slot) save() {
	if sl.file == "" {
		return
	}
	sl.saveMu.Lock()
	defer sl.saveMu.Unlock()
	sl.mu.Lock()
	f := jobFile{Version: fileVersion, State: sl.state, Runs: sl.status.Runs, LastSuccess: sl.status.LastSuccess}
	data, err := json.Marshal(f)
	if err == nil && bytes.Equal(data, sl.saved) {
		sl.mu.Unlock()
		return
	}
	sl.mu.Unlock()
	if err == nil {
		err = writeJSON(sl.file, f)
	}
	sl.mu.Lock()
	defer sl.mu.Unlock()
	if err != nil {
		sl.status.StateErrors++
		sl.s.limit.Warn(sl.log, "state:"+sl.name, "job state not saved: a restart would start from the last saved state", "file", sl.file, "err", err)
		return
	}
	sl.saved = data
}
