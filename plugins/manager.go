package plugins

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/tidemq/tide/conf"
	"github.com/tidemq/tide/core/event"
	"github.com/tidemq/tide/core/ratelog"
	"github.com/tidemq/tide/plugins/lualib/broker"
	"github.com/tidemq/tide/plugins/lualib/crypto"
	httpmod "github.com/tidemq/tide/plugins/lualib/http"
	"github.com/tidemq/tide/plugins/lualib/json"
	"github.com/tidemq/tide/plugins/lualib/kv"
	logmod "github.com/tidemq/tide/plugins/lualib/log"
	"github.com/tidemq/tide/plugins/lualib/sink"
	sqlmod "github.com/tidemq/tide/plugins/lualib/sql"
	"github.com/tidemq/tide/plugins/sandbox"
)

// Broker is what scripts may do to the broker through the "broker" module.
// *core.Server does not implement it directly (its methods take core types);
// cmd/tide wraps the server in a small adapter (see the package doc).
type Broker = broker.Backend

// ClientInfo describes a connected client to the "broker" module.
type ClientInfo = broker.ClientInfo

// SinkWriter queues records for the datastore's sinks (the "sink" module).
type SinkWriter = sink.Writer

// builtinModules are the names require accepts besides files.
var builtinModules = []string{json.Name, logmod.Name, crypto.Name, broker.Name, kv.Name, httpmod.Name, sqlmod.Name, sink.Name}

// DefaultMaxString is the default of Options.MaxStringBytes.
const DefaultMaxString = sandbox.DefaultMaxString

// Options configure a Manager. Every field is optional.
type Options struct {
	// Logger receives the runtime's and the scripts' log lines.
	Logger *slog.Logger
	// Bus feeds on_message and on_disconnect. Without it, scripts that
	// define them load with a warning and those hooks never run.
	Bus *event.Bus
	// Broker backs the "broker" module; without it its functions raise.
	Broker Broker
	// Sinks backs the "sink" module; SetSinkWriter may set it later.
	Sinks SinkWriter
	// KVMaxKeys and KVMaxBytes bound the shared "kv" store.
	KVMaxKeys, KVMaxBytes int
	// HTTP bounds the "http" module.
	HTTP httpmod.Options
	// InitTimeout bounds loading one VM: the script's main chunk and its
	// init() (default 10s), which may connect to services.
	InitTimeout time.Duration
	// MaxStringBytes bounds the strings string.rep, string.gsub and
	// readfile may make (default 16 MiB).
	MaxStringBytes int
}

// Manager runs the configured plugins. It implements event.ConnectGate,
// event.SubscribeGate and event.PublishGate by calling each plugin's hook
// in configuration order, and feeds on_message and on_disconnect from the
// event bus. Its methods are safe for concurrent use.
type Manager struct {
	opts  Options
	log   *slog.Logger
	kv    *kv.Store
	http  *httpmod.Module
	sinkW atomic.Pointer[sinkHolder]

	cur atomic.Pointer[set]

	// mu serialises Reload and Close.
	mu     sync.Mutex
	closed bool
	// obsMu guards observers (Stats reads them while a reload runs).
	obsMu     sync.Mutex
	observers map[string]*observer

	statsMu sync.Mutex
	stats   map[string]*pluginStats
	order   []string // plugin names in configuration order, for Stats

	limiter ratelog.Limiter // repeated failures, one line per key every ten seconds
	watch   *watchdog
	wg      sync.WaitGroup // background work: replacements, retiring sets, the watchdog
}

type sinkHolder struct{ w SinkWriter }

var (
	_ event.ConnectGate   = (*Manager)(nil)
	_ event.SubscribeGate = (*Manager)(nil)
	_ event.PublishGate   = (*Manager)(nil)
)

// New returns a Manager with no plugins (every gate passes); load them with
// Reload.
func New(opts Options) *Manager {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.InitTimeout <= 0 {
		opts.InitTimeout = 10 * time.Second
	}
	if opts.MaxStringBytes <= 0 {
		opts.MaxStringBytes = DefaultMaxString
	}
	m := &Manager{
		opts:      opts,
		log:       opts.Logger.With("component", "plugins"),
		kv:        kv.NewStore(opts.KVMaxKeys, opts.KVMaxBytes),
		http:      httpmod.New(opts.HTTP),
		observers: map[string]*observer{},
		stats:     map[string]*pluginStats{},
		watch:     newWatchdog(),
	}
	m.sinkW.Store(&sinkHolder{w: opts.Sinks})
	m.cur.Store(&set{})
	m.goFunc(m.watch.run)
	return m
}

// SetSinkWriter wires the datastore into the "sink" module (nil unwires it:
// sink.write then raises "no datastore configured").
func (m *Manager) SetSinkWriter(w SinkWriter) { m.sinkW.Store(&sinkHolder{w: w}) }

func (m *Manager) sinkWriter() SinkWriter { return m.sinkW.Load().w }

// KV returns the store shared by the scripts (for metrics).
func (m *Manager) KV() *kv.Store { return m.kv }

// goFunc runs f in a goroutine that Close waits for.
func (m *Manager) goFunc(f func()) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		f()
	}()
}

// set is one generation of loaded plugins. Calls hold a reference while
// they run, so that a reload closes a generation's VMs only after its last
// call ended.
type set struct {
	refs      atomic.Int64
	all       []*instance
	byName    map[string]*instance
	hooks     [numHooks][]*instance // the instances defining each hook, in order
	retired   atomic.Bool
	retiredCh chan struct{}
}

// acquire returns the current set with a reference held; release it.
func (m *Manager) acquire() *set {
	for {
		s := m.cur.Load()
		s.refs.Add(1)
		// A reload that swapped the set after our load may have seen no
		// reference and started closing it: then take the new one.
		if m.cur.Load() == s {
			return s
		}
		s.release()
	}
}

func (s *set) release() {
	if s.refs.Add(-1) == 0 && s.retired.Load() {
		select {
		case s.retiredCh <- struct{}{}:
		default:
		}
	}
}

// retire waits for the set's calls to end, then closes its plugins.
func (s *set) retire() {
	s.retiredCh = make(chan struct{}, 1)
	s.retired.Store(true)
	for s.refs.Load() != 0 {
		select {
		case <-s.retiredCh:
		case <-time.After(10 * time.Millisecond):
		}
	}
	for _, in := range s.all {
		in.close()
	}
}

// normalize applies the defaults of conf.Plugin that a caller building
// configurations in code may have left out, and checks the values.
func normalize(c conf.Plugin) (conf.Plugin, error) {
	if c.Name == "" {
		return c, errors.New("name is missing")
	}
	if c.Script == "" {
		return c, fmt.Errorf("plugin %s: script is missing", c.Name)
	}
	if c.Timeout.Duration == 0 {
		c.Timeout.Duration = 100 * time.Millisecond
	}
	if c.Timeout.Duration < 0 {
		return c, fmt.Errorf("plugin %s: timeout %v must be positive", c.Name, c.Timeout.Duration)
	}
	if c.Pool < 0 {
		return c, fmt.Errorf("plugin %s: pool %d must be 0 (GOMAXPROCS) or more", c.Name, c.Pool)
	}
	if c.Pool == 0 {
		c.Pool = runtime.GOMAXPROCS(0)
	}
	switch c.Fail {
	case "":
		c.Fail = "closed"
	case "closed", "open":
	default:
		return c, fmt.Errorf("plugin %s: fail %q must be \"closed\" or \"open\"", c.Name, c.Fail)
	}
	if c.CacheTTL.Duration < 0 {
		return c, fmt.Errorf("plugin %s: cache_ttl %v must not be negative", c.Name, c.CacheTTL.Duration)
	}
	if c.QueueSize < 0 {
		return c, fmt.Errorf("plugin %s: queue_size %d must be positive", c.Name, c.QueueSize)
	}
	if c.QueueSize == 0 {
		c.QueueSize = 10000
	}
	return c, nil
}

// Reload loads cfgs in place of the running plugins (the first call loads
// them). Every script is compiled, and every VM created and initialised,
// before anything changes: if any of that fails, the running plugins stay
// as they were, the reasons are logged (with file and line) and returned.
// Otherwise the new plugins take every new call at once, and the old ones
// are closed when their in-flight calls have ended.
func (m *Manager) Reload(cfgs []conf.Plugin) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errors.New("plugins: manager is closed")
	}
	start := time.Now()
	var errs []error
	cfgs = append([]conf.Plugin(nil), cfgs...)
	names := map[string]bool{}
	scripts := make([]*script, len(cfgs))
	for i := range cfgs {
		c, err := normalize(cfgs[i])
		if err == nil && names[c.Name] {
			err = fmt.Errorf("plugin %s: configured twice", c.Name)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		names[c.Name] = true
		cfgs[i] = c
		if scripts[i], err = loadScript(c.Script); err != nil {
			errs = append(errs, fmt.Errorf("plugin %s: %w", c.Name, err))
		}
	}
	if err := m.refuse(errs); err != nil {
		return err
	}

	next := &set{byName: map[string]*instance{}}
	for i, c := range cfgs {
		in, err := m.newInstance(c, scripts[i])
		if err != nil {
			errs = append(errs, fmt.Errorf("plugin %s: %w", c.Name, err))
			break
		}
		next.all = append(next.all, in)
		next.byName[c.Name] = in
		for h := range numHooks {
			if in.has(h) {
				next.hooks[h] = append(next.hooks[h], in)
			}
		}
	}
	if err := m.refuse(errs); err != nil {
		for _, in := range next.all {
			in.close()
		}
		return err
	}

	order := make([]string, len(cfgs))
	for i, c := range cfgs {
		order[i] = c.Name
	}
	m.statsMu.Lock()
	m.order = order
	m.statsMu.Unlock()

	shortest := m.opts.InitTimeout
	for _, c := range cfgs {
		shortest = min(shortest, c.Timeout.Duration)
	}
	m.watch.setTimeout(shortest)
	old := m.cur.Swap(next)
	m.updateObservers(next)
	m.goFunc(old.retire)
	for _, in := range next.all {
		in.log.Info("plugin loaded", "script", in.cfg.Script, "hooks", in.hookList(), "pool", in.cfg.Pool,
			"timeout", in.cfg.Timeout.Duration, "fail", in.cfg.Fail)
	}
	m.log.Info("plugins loaded", "count", len(next.all), "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// refuse logs and joins the errors that stop a reload.
func (m *Manager) refuse(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	for _, err := range errs {
		m.log.Error("plugins not reloaded: the running plugins are kept", "err", err)
	}
	return fmt.Errorf("plugins: %w", errors.Join(errs...))
}

// Close stops the observers, unloads every plugin (after in-flight calls)
// and waits for background work until ctx is done.
func (m *Manager) Close(ctx context.Context) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	m.mu.Unlock()
	m.obsMu.Lock()
	obs := m.observers
	m.observers = map[string]*observer{}
	for _, o := range obs {
		o.close()
	}
	m.obsMu.Unlock()
	// The observers finish their queued events with the plugins still
	// loaded, unless ctx ends first; the rest count as dropped.
	drained := make(chan struct{})
	go func() {
		for _, o := range obs {
			o.wait()
		}
		close(drained)
	}()
	var err error
	select {
	case <-drained:
	case <-ctx.Done():
		err = fmt.Errorf("plugins: close: %w", ctx.Err())
	}
	old := m.cur.Swap(&set{})
	m.goFunc(func() {
		old.retire()
		// The last VMs are closed: nothing left to watch.
		close(m.watch.stop)
	})
	done := make(chan struct{})
	go func() {
		<-drained
		m.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		if err == nil {
			err = fmt.Errorf("plugins: close: %w", ctx.Err())
		}
	}
	m.kv.Close()
	m.http.Close()
	return err
}

// instance is one loaded plugin: its configuration, compiled script, VM
// pools, modules and answer cache.
type instance struct {
	m       *Manager
	cfg     conf.Plugin
	script  *script
	log     *slog.Logger
	stats   *pluginStats
	timeout time.Duration
	open    bool // fail open
	hooks   [numHooks]bool
	gates   *pool
	obs     *pool
	cache   *cache
	sql     *sqlmod.Pools
	logmod  *logmod.Module
	env     *sandbox.Env
}

func (m *Manager) newInstance(c conf.Plugin, s *script) (*instance, error) {
	lg := m.opts.Logger.With("component", "plugins", "plugin", c.Name)
	in := &instance{
		m:       m,
		cfg:     c,
		script:  s,
		log:     lg,
		stats:   m.pluginStats(c.Name),
		timeout: c.Timeout.Duration,
		open:    c.Fail == "open",
		sql:     sqlmod.NewPools(),
		logmod:  logmod.New(m.opts.Logger.With("plugin", c.Name, "script", c.Script)),
	}
	modules := map[string]lua.LGFunction{
		json.Name:    json.Loader,
		crypto.Name:  crypto.Loader,
		logmod.Name:  in.logmod.Loader,
		kv.Name:      m.kv.Loader,
		httpmod.Name: m.http.Loader,
		sqlmod.Name:  in.sql.Loader,
		sink.Name:    sink.New(m.sinkWriter).Loader,
		broker.Name:  broker.New(m.opts.Broker).Loader,
	}
	in.env = &sandbox.Env{Script: s, Modules: modules, Names: builtinModules, Kind: "plugin",
		MaxString: m.opts.MaxStringBytes, Print: in.logmod.Print}
	if c.CacheTTL.Duration > 0 {
		in.cache = newCache(c.CacheTTL.Duration)
	}
	// The first VM tells which hooks the script defines, and so which
	// pools it needs.
	first, err := in.newVM()
	if err != nil {
		in.sql.Close()
		return nil, err
	}
	for h := range numHooks {
		in.hooks[h] = first.fns[h] != nil
	}
	if !in.has(hookConnect) && !in.has(hookSubscribe) && !in.has(hookPublish) && !in.has(hookAuth) && !in.has(hookMessage) && !in.has(hookDisconnect) {
		lg.Warn("plugin defines no hook: it will never be called", "script", c.Script, "hooks", hookNames)
	}
	if (in.has(hookMessage) || in.has(hookDisconnect)) && m.opts.Bus == nil {
		lg.Warn("plugin defines observers but the runtime has no event bus: on_message and on_disconnect will not run")
		in.hooks[hookMessage], in.hooks[hookDisconnect] = false, false
	}
	if in.has(hookConnect) || in.has(hookSubscribe) || in.has(hookPublish) || in.has(hookAuth) {
		in.gates = newPool(in, "gate", c.Pool)
		in.gates.put(first)
		first = nil
		if err := in.gates.fill(); err != nil {
			in.close()
			return nil, err
		}
	}
	if in.has(hookMessage) || in.has(hookDisconnect) {
		in.obs = newPool(in, "observer", c.Pool)
		if first != nil {
			in.obs.put(first)
			first = nil
		}
		if err := in.obs.fill(); err != nil {
			in.close()
			return nil, err
		}
	}
	if first != nil {
		first.close()
	}
	return in, nil
}

func (in *instance) has(h hook) bool { return in.hooks[h] }

func (in *instance) hookList() []string {
	var out []string
	for h := range numHooks {
		if in.hooks[h] {
			out = append(out, hookNames[h])
		}
	}
	return out
}

func (in *instance) close() {
	if in.gates != nil {
		in.gates.close()
	}
	if in.obs != nil {
		in.obs.close()
	}
	in.sql.Close()
}
