package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tidemq/tide/conf"
	"github.com/tidemq/tide/core"
	"github.com/tidemq/tide/core/acl"
	"github.com/tidemq/tide/core/admin"
	"github.com/tidemq/tide/core/listener"
	"github.com/tidemq/tide/core/passwd"
	"github.com/tidemq/tide/core/persist"
	"github.com/tidemq/tide/datastore"
	"github.com/tidemq/tide/plugins"
	"github.com/tidemq/tide/scheduler"
	"github.com/tidemq/tide/scheduler/window"

	// The sink types, registered with conf and datastore by their init.
	_ "github.com/tidemq/tide/datastore/elasticsearch"
	_ "github.com/tidemq/tide/datastore/postgres"
	_ "github.com/tidemq/tide/datastore/sqlite"
)

// app is the running broker with everything wired to it.
type app struct {
	cfgPath string
	cfg     *conf.Config
	log     *slog.Logger
	srv     *core.Server
	journal *persist.Journal
	store   *datastore.Router
	plugins *plugins.Manager
	windows *window.Store
	sched   *scheduler.Scheduler
	lns     []*listener.Listener
	adm     *admin.Admin
}

// checkConfig does the checks that need more than the config file:
// listener certificates, scripts that must compile, job schedules and
// aggregate definitions.
func checkConfig(cfg *conf.Config) error {
	var errs []error
	for i, l := range cfg.Listeners {
		if err := listener.Check(l); err != nil {
			errs = append(errs, &conf.Error{File: cfg.File, Key: fmt.Sprintf("listener[%d]", i), Msg: err.Error()})
		}
	}
	if err := plugins.Check(cfg.Plugins); err != nil {
		errs = append(errs, err)
	}
	if err := scheduler.Check(cfg.Jobs); err != nil {
		errs = append(errs, err)
	}
	if _, err := window.New(cfg.Aggregates, window.Options{}); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// start builds the broker from cfg: the store is restored and the sinks,
// plugins and observers are ready before any listener accepts a client.
func start(cfgPath string, cfg *conf.Config, log *slog.Logger) (a *app, err error) {
	if err := checkConfig(cfg); err != nil {
		return nil, err
	}
	a = &app{cfgPath: cfgPath, cfg: cfg, log: log}
	defer func() {
		if err != nil {
			a.stop()
			a = nil
		}
	}()
	a.srv = core.New(coreOptions(cfg.MQTT), log.With("component", "broker"))
	users, err := builtinUsers(cfg.Auth)
	if err != nil {
		return a, err
	}
	a.srv.SetUsers(users)
	rules, err := aclFile(cfg.Auth)
	if err != nil {
		return a, err
	}
	a.srv.SetACL(rules)

	if p := cfg.Persistence; p.Enabled {
		be, err := persist.OpenBolt(p.Dir)
		if err != nil {
			return a, err
		}
		a.journal = persist.NewJournal(be, persist.SyncMode(p.Sync), p.SyncInterval.Duration, log.With("component", "persistence"))
		if err := a.srv.Restore(a.journal); err != nil {
			return a, err
		}
	} else {
		log.Info("persistence disabled: sessions and retained messages are kept in memory only")
	}

	if len(cfg.Sinks) > 0 {
		a.store, err = datastore.FromConfig(cfg, log.With("component", "datastore"))
		if err != nil {
			return a, err
		}
		a.store.Start(a.srv.Bus())
		a.srv.SetBackpressure(a.store)
		a.srv.AddSysSource(a.store.Sys)
	}

	a.plugins = plugins.New(plugins.Options{Logger: log, Bus: a.srv.Bus(), Broker: pluginBroker{a.srv}})
	if a.store != nil {
		a.plugins.SetSinkWriter(datastore.MapWriter{Router: a.store})
	}
	if err := a.plugins.Reload(cfg.Plugins); err != nil {
		return a, err
	}
	a.setGates(len(cfg.Plugins))
	a.srv.AddSysSource(a.plugins.SysValues)
	if a.journal != nil {
		a.srv.AddSysSource(journalSys(a.journal))
	}

	// The live windows take samples from the bus; jobs read them, query the
	// sinks and publish alerts. Job state lives beside the broker's store.
	a.windows, err = window.New(cfg.Aggregates, window.Options{Logger: log})
	if err != nil {
		return a, err
	}
	a.windows.Start(a.srv.Bus())
	so := scheduler.Options{Logger: log, Broker: schedBroker{pluginBroker{a.srv}}, Windows: a.windows,
		KV: a.plugins.KV(), Alert: cfg.Alert}
	if cfg.Persistence.Enabled {
		so.StateDir = cfg.Persistence.Dir
	}
	if a.store != nil {
		so.Stores = a.store
		so.Sinks = datastore.MapWriter{Router: a.store}
	}
	a.sched = scheduler.New(so)
	if err := a.sched.Reload(cfg.Jobs); err != nil {
		return a, err
	}
	a.srv.AddSysSource(a.sched.SysValues)

	a.adm = admin.New(adminBroker{a.srv}, admin.Options(cfg.Admin), log)
	a.adm.SetReload(a.reload)
	a.adm.SetJobs(func() any { return a.sched.Jobs() })
	if a.journal != nil {
		a.adm.SetBackup(a.srv.Backup)
	}
	if err := a.adm.RegisterFigures(a.figures); err != nil {
		return a, err
	}

	for _, lc := range cfg.Listeners {
		ln, err := listener.Listen(lc, listener.WithLogger(log))
		if err != nil {
			return a, fmt.Errorf("listener %s: %w", lc.Name, err)
		}
		a.lns = append(a.lns, ln)
		if err := a.srv.Serve(ln, core.ListenerOptions{Name: ln.Name(), AllowAnonymous: lc.AllowAnonymous,
			MaxConnections: lc.MaxConnections, UsernameFrom: lc.UsernameFrom}); err != nil {
			return a, err
		}
		a.srv.AddSysSource(ln.SysValues)
		if err := a.adm.Register(ln); err != nil {
			return a, err
		}
		log.Info("listening", "listener", ln.Name(), "type", lc.Type, "address", ln.Addr().String(), "allow_anonymous", lc.AllowAnonymous)
	}
	if err := a.adm.ListenAndServe(); err != nil {
		return a, fmt.Errorf("admin: %w", err)
	}
	if a.adm.Enabled() {
		log.Info("admin API listening", "address", a.adm.Addr().String())
	}
	return a, nil
}

// setGates puts the plugins on the broker's hot path only when there are
// some: without plugins the broker builds no gate requests at all.
func (a *app) setGates(n int) {
	if n > 0 {
		a.srv.SetGates(a.plugins, a.plugins, a.plugins)
	} else {
		a.srv.SetGates(nil, nil, nil)
	}
}

// builtinUsers is the user table of [[auth.user]] and the password file, or
// nil when there are none.
func builtinUsers(c conf.Auth) (*core.StaticUsers, error) {
	users := map[string]string{}
	if c.PasswordFile != "" {
		entries, err := passwd.ReadFile(c.PasswordFile)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			users[e.Username] = e.Hash
		}
	}
	for _, u := range c.Users {
		users[u.Username] = u.PasswordHash
	}
	if len(users) == 0 {
		return nil, nil
	}
	return core.NewStaticUsers(users), nil
}

// aclFile is the [auth] acl_file, or nil when there is none.
func aclFile(c conf.Auth) (*acl.File, error) {
	if c.ACLFile == "" {
		return nil, nil
	}
	return acl.ParseFile(c.ACLFile)
}

// reload is SIGHUP and POST /api/reload: the config file is read again;
// plugins, jobs and aggregates are reloaded from it (a script that fails to
// compile keeps the old version running), and TLS certificates are read
// again. Other sections need a restart.
func (a *app) reload() error {
	var errs []error
	cfg := a.cfg
	if a.cfgPath != "" {
		next, err := conf.Load(a.cfgPath)
		if err != nil {
			a.log.Error("reload refused: the config has errors, nothing reloaded", "err", err)
			return fmt.Errorf("reload: %w (nothing reloaded)", err)
		}
		cfg = next
	}
	if users, err := builtinUsers(cfg.Auth); err != nil {
		errs = append(errs, fmt.Errorf("users: %w", err))
	} else {
		a.srv.SetUsers(users)
	}
	if rules, err := aclFile(cfg.Auth); err != nil {
		errs = append(errs, fmt.Errorf("acl_file: %w", err))
	} else {
		a.srv.SetACL(rules)
	}
	if err := a.plugins.Reload(cfg.Plugins); err != nil {
		errs = append(errs, fmt.Errorf("plugins: %w", err))
	} else {
		a.setGates(len(cfg.Plugins))
	}
	if err := a.windows.Reload(cfg.Aggregates); err != nil {
		errs = append(errs, err)
	} else {
		a.windows.Start(a.srv.Bus())
	}
	if err := a.sched.Reload(cfg.Jobs); err != nil {
		errs = append(errs, err)
	}
	for _, ln := range a.lns {
		if err := ln.Reload(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		a.log.Error("reload incomplete", "err", err)
		return err
	}
	a.log.Info("reloaded", "plugins", len(cfg.Plugins), "jobs", len(cfg.Jobs), "aggregates", len(cfg.Aggregates), "listeners", len(a.lns))
	return nil
}

// stop ends everything in the reverse order of start: the admin API, the
// jobs (they publish), the broker (clients get DISCONNECT 0x8B), the
// plugins, the sinks (flushing or spooling what they hold), and the store.
func (a *app) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if a.adm != nil {
		_ = a.adm.Shutdown(ctx)
	}
	if a.sched != nil {
		if err := a.sched.Close(ctx); err != nil {
			a.log.Error("scheduler shutdown incomplete", "err", err)
		}
	}
	if a.windows != nil {
		a.windows.Close()
	}
	if a.srv != nil {
		if err := a.srv.Shutdown(ctx); err != nil {
			a.log.Error("broker shutdown incomplete", "err", err)
		}
	}
	for _, ln := range a.lns {
		ln.Close()
	}
	if a.plugins != nil {
		if err := a.plugins.Close(ctx); err != nil {
			a.log.Error("plugins shutdown incomplete", "err", err)
		}
	}
	if a.store != nil {
		if err := a.store.Close(ctx); err != nil {
			a.log.Error("datastore shutdown incomplete", "err", err)
		}
	}
	if a.journal != nil {
		if err := a.journal.Close(); err != nil {
			a.log.Error("persistence close failed", "err", err)
		}
	}
}

func serve(cfgPath string, cfg *conf.Config, logOut io.Writer) error {
	log := newLogger(cfg.Log, logOut)
	src := cfg.File
	if src == "" {
		src = "built-in default"
	}
	log.Info("starting", "version", versionString(), "config", src)
	if cfg.DefaultListener {
		log.Info("no [[listener]] configured: listening on 127.0.0.1:1883 with anonymous access, reachable from this machine only")
	}
	// Signals are caught from the start, so that one arriving while the
	// store is restored still stops the broker cleanly.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	a, err := start(cfgPath, cfg, log)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go newIdleCollector().run(ctx, idleCollectEvery)
	for sig := range sigs {
		if sig == syscall.SIGHUP {
			_ = a.reload()
			continue
		}
		log.Info("stopping", "signal", sig.String())
		break
	}
	a.stop()
	log.Info("stopped")
	return nil
}
