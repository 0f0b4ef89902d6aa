package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/tidemq/tide/conf"
	"github.com/tidemq/tide/core/ratelog"
	"github.com/tidemq/tide/datastore"
	"github.com/tidemq/tide/plugins/lualib/broker"
	httpmod "github.com/tidemq/tide/plugins/lualib/http"
	"github.com/tidemq/tide/plugins/lualib/kv"
	"github.com/tidemq/tide/plugins/lualib/sink"
	"github.com/tidemq/tide/scheduler/window"
)

// Broker is what jobs may do to the broker: the "broker" module's
// functions (publish, retained, client, disconnect), retained messages by
// filter, and the broker's counters. *core.Server has these with core
// types; cmd/tide wraps it in a small adapter.
type Broker interface {
	broker.Backend
	broker.RetainedMatcher
	broker.StatsSource
}

// Stores finds the datastore's sinks that jobs can query
// (*datastore.Router implements it).
type Stores interface {
	Querier(sink string) (datastore.Querier, bool)
	Searcher(sink string) (datastore.Searcher, bool)
}

// Options configure a Scheduler. Every field is optional.
type Options struct {
	// Logger receives the scheduler's and the scripts' log lines.
	Logger *slog.Logger
	// Clock times the runs, their timeouts and webhook back-off
	// (default RealClock).
	Clock Clock
	// Broker backs the "broker" module and publishes alert notices.
	Broker Broker
	// Stores backs store.query and store.search.
	Stores Stores
	// Windows backs the "window" module: the live [[aggregate]] windows.
	Windows *window.Store
	// Sinks backs the "sink" module.
	Sinks sink.Writer
	// KV is the store of the "kv" module; give the plugins' (Manager.KV)
	// to share it with them. Default: a store of the scheduler's own.
	KV *kv.Store
	// HTTP bounds the "http" module.
	HTTP httpmod.Options
	// StateDir is where job states (jobs/<name>.json) and firing alerts
	// (alerts.json) survive restarts: the persistence directory. Empty
	// keeps them in memory only.
	StateDir string
	// Alert is the [alert] section: topic prefix, resolved_retain and
	// webhooks. It is read once, by New.
	Alert conf.Alert
	// WebhookBackoff is the first wait before a webhook retry (default
	// 1s), doubling up to a minute.
	WebhookBackoff time.Duration
	// MaxStringBytes bounds string.rep, string.gsub and readfile results
	// (default 16 MiB).
	MaxStringBytes int
}

// Scheduler runs the configured jobs. Its methods are safe for concurrent
// use.
type Scheduler struct {
	opts       Options
	log        *slog.Logger
	clock      Clock
	limit      ratelog.Limiter
	http       *httpmod.Module
	httpClient *http.Client
	kv         *kv.Store
	ownKV      bool
	alerts     *alerts

	// stopping is closed, and stopCtx canceled, by Close: loops, runs and
	// webhook deliveries end.
	stopping   chan struct{}
	stopCtx    context.Context
	stopCancel context.CancelFunc
	wg         sync.WaitGroup

	// mu serialises Reload and Close, and guards jobs and order.
	mu     sync.Mutex
	closed bool
	jobs   map[string]*slot
	order  []string
}

// New returns a Scheduler with no jobs; load them with Reload. Alerts
// still firing before a restart are read back from StateDir.
func New(opts Options) *Scheduler {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Clock == nil {
		opts.Clock = RealClock()
	}
	if opts.WebhookBackoff <= 0 {
		opts.WebhookBackoff = time.Second
	}
	s := &Scheduler{
		opts:       opts,
		log:        opts.Logger.With("component", "scheduler"),
		clock:      opts.Clock,
		http:       httpmod.New(opts.HTTP),
		httpClient: &http.Client{},
		kv:         opts.KV,
		stopping:   make(chan struct{}),
		jobs:       map[string]*slot{},
	}
	if s.kv == nil {
		s.kv, s.ownKV = kv.NewStore(0, 0), true
	}
	s.stopCtx, s.stopCancel = context.WithCancel(context.Background())
	alertFile := ""
	if opts.StateDir != "" {
		alertFile = filepath.Join(opts.StateDir, "alerts.json")
	}
	s.alerts = newAlerts(s, opts.Alert, alertFile)
	return s
}

// goFunc runs f in a goroutine that Close waits for.
func (s *Scheduler) goFunc(f func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}

// normalize applies the defaults of conf.Job that a caller building
// configurations in code may have left out.
func normalize(c conf.Job) (conf.Job, error) {
	if c.Name == "" {
		return c, errors.New("name is missing")
	}
	if c.Script == "" {
		return c, fmt.Errorf("job %s: script is missing", c.Name)
	}
	if c.Timeout.Duration == 0 {
		c.Timeout.Duration = 30 * time.Second
	}
	if c.Timeout.Duration < 0 {
		return c, fmt.Errorf("job %s: timeout %v must be positive", c.Name, c.Timeout.Duration)
	}
	if c.Jitter.Duration < 0 {
		return c, fmt.Errorf("job %s: jitter %v must not be negative", c.Name, c.Jitter.Duration)
	}
	return c, nil
}

// Reload loads cfgs in place of the running jobs (the first call starts
// them). Each job's script is compiled and its main chunk run in a fresh
// VM before it replaces the running version: a job that fails to load
// keeps its previous version running (and reports the error in its
// status), a new job that fails is not started. Jobs no longer configured
// stop (a run in progress ends first). The error joins every job's.
func (s *Scheduler) Reload(cfgs []conf.Job) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("scheduler: closed")
	}
	var errs []error
	seen := map[string]bool{}
	var order []string
	fresh := map[string]*version{}
	for i, c := range cfgs {
		c, err := normalize(c)
		if err != nil {
			errs = append(errs, fmt.Errorf("job[%d]: %w", i, err))
			continue
		}
		if seen[c.Name] {
			errs = append(errs, fmt.Errorf("job %s: configured twice", c.Name))
			continue
		}
		seen[c.Name] = true
		sl := s.jobs[c.Name]
		if sl == nil {
			sl = s.newSlot(c.Name)
		}
		v, err := s.newVersion(sl, c)
		if err != nil {
			err = fmt.Errorf("job %s: %w", c.Name, err)
			errs = append(errs, err)
			if s.jobs[c.Name] != nil {
				sl.setReloadError(err)
				order = append(order, c.Name)
			}
			continue
		}
		fresh[c.Name] = v
		order = append(order, c.Name)
	}
	for name, sl := range s.jobs {
		if !seen[name] {
			sl.retire()
			delete(s.jobs, name)
			s.log.Info("job removed", "job", name)
		}
	}
	for _, name := range order {
		v := fresh[name]
		if v == nil {
			continue
		}
		sl := v.slot
		s.jobs[name] = sl
		sl.replace(v)
		s.log.Info("job loaded", "job", name, "script", v.cfg.Script, "schedule", v.sched.String(), "timeout", v.cfg.Timeout.Duration)
	}
	s.order = order
	for _, err := range errs {
		s.log.Error("job not (re)loaded: a previous version keeps running", "err", err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("scheduler: %w", errors.Join(errs...))
	}
	return nil
}

// Jobs returns the status of each job, in configuration order (for GET
// /api/jobs and `tide jobs`).
func (s *Scheduler) Jobs() []JobStatus {
	s.mu.Lock()
	slots := make([]*slot, 0, len(s.order))
	for _, name := range s.order {
		if sl := s.jobs[name]; sl != nil {
			slots = append(slots, sl)
		}
	}
	s.mu.Unlock()
	out := make([]JobStatus, len(slots))
	for i, sl := range slots {
		out[i] = sl.snapshot()
	}
	return out
}

// Job returns one job's status.
func (s *Scheduler) Job(name string) (JobStatus, bool) {
	s.mu.Lock()
	sl := s.jobs[name]
	s.mu.Unlock()
	if sl == nil {
		return JobStatus{}, false
	}
	return sl.snapshot(), true
}

// AlertStats are the alerts' figures.
type AlertStats struct {
	// Firing is the number of alerts firing now.
	Firing int `json:"firing"`
	// Notifications counts the notices made (firing, repeats, resolved).
	Notifications uint64 `json:"notifications"`
	// PublishErrors counts the notices the broker refused.
	PublishErrors uint64 `json:"publish_errors"`
	// StateErrors counts failed writes of the alert file.
	StateErrors uint64         `json:"state_errors"`
	Webhooks    []WebhookStats `json:"webhooks,omitempty"`
	Alerts      []FiringAlert  `json:"alerts"`
}

// FiringAlert describes an alert that fires now.
type FiringAlert struct {
	Name          string            `json:"name"`
	Severity      string            `json:"severity"`
	Message       string            `json:"message,omitempty"`
	Labels        map[string]string `json:"labels,omitempty"`
	Job           string            `json:"job,omitempty"`
	Since         time.Time         `json:"since"`
	LastNotified  time.Time         `json:"last_notified"`
	Notifications int               `json:"notifications"`
}

// Alerts returns the alerts' figures and the alerts firing now.
func (s *Scheduler) Alerts() AlertStats {
	a := s.alerts
	st := AlertStats{Notifications: a.notifications.Load(), PublishErrors: a.publishErrors.Load(), StateErrors: a.stateErrors.Load()}
	for _, al := range a.list() {
		st.Alerts = append(st.Alerts, FiringAlert{Name: al.Name, Severity: al.Severity, Message: al.Message, Labels: al.Labels,
			Job: al.Job, Since: al.Since, LastNotified: al.LastNotified, Notifications: al.Notifications})
	}
	st.Firing = len(st.Alerts)
	for _, h := range a.hooks {
		st.Webhooks = append(st.Webhooks, h.stats())
	}
	return st
}

// SysValues publishes the jobs' and alerts' figures under
// $SYS/broker/jobs/<name>/... and $SYS/broker/alerts/...
func (s *Scheduler) SysValues(emit func(topic, value string)) {
	u := func(v uint64) string { return strconv.FormatUint(v, 10) }
	ts := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339)
	}
	for _, j := range s.Jobs() {
		p := "jobs/" + j.Name + "/"
		emit(p+"runs", u(j.Runs))
		emit(p+"failures", u(j.Failures))
		emit(p+"timeouts", u(j.Timeouts))
		emit(p+"skipped", u(j.Skipped))
		emit(p+"last_run", ts(j.LastRun))
		emit(p+"last_duration", strconv.FormatFloat(j.LastDurationSeconds, 'f', 3, 64))
		emit(p+"last_outcome", j.LastOutcome)
		emit(p+"last_error", j.LastError)
		emit(p+"next_run", ts(j.NextRun))
	}
	a := s.Alerts()
	emit("alerts/firing", strconv.Itoa(a.Firing))
	emit("alerts/notifications", u(a.Notifications))
	emit("alerts/publish_errors", u(a.PublishErrors))
	var failed, dropped uint64
	for _, w := range a.Webhooks {
		failed += w.Failed
		dropped += w.Dropped
	}
	emit("alerts/webhooks/failed", u(failed))
	emit("alerts/webhooks/dropped", u(dropped))
	if w := s.opts.Windows; w != nil {
		for _, f := range w.Figures() {
			p := "window/" + f.Aggregate + "/"
			emit(p+"topics", strconv.Itoa(f.Topics))
			emit(p+"samples", u(f.Samples))
			emit(p+"invalid", u(f.Invalid))
			emit(p+"dropped", u(f.Dropped))
		}
		emit("window/bus_dropped", u(w.BusDropped()))
	}
}

// Close stops the jobs: no run starts any more, the runs in progress are
// canceled (their outcome is "canceled" and their state is not saved),
// notices still queued for webhooks are dropped (counted). It waits for the
// runs to end until ctx is done.
func (s *Scheduler) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	slots := make([]*slot, 0, len(s.jobs))
	for _, sl := range s.jobs {
		slots = append(slots, sl)
	}
	s.mu.Unlock()
	for _, sl := range slots {
		sl.stopLoop()
	}
	close(s.stopping)
	s.stopCancel()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("scheduler: close: %w", ctx.Err())
	}
	for _, sl := range slots {
		sl.retire()
	}
	s.http.Close()
	s.httpClient.CloseIdleConnections()
	if s.ownKV {
		s.kv.Close()
	}
	return err
}
