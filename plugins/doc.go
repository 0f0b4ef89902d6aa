// Package plugins is Tide's Lua plugin runtime: scripts that authenticate,
// authorise, rewrite and route on the broker's events.
//
// A Manager holds the configured plugins ([[plugin]] in tide.toml). It is the
// broker's connect, subscribe and publish gate: each decision calls the
// plugins' hook (on_connect, on_subscribe, on_publish) in configuration
// order, on the client's goroutine, until one answers; nil passes to the
// next plugin and, after the last, to the listener's default. It is also
// the auth gate (event.AuthGate) of MQTT 5 enhanced authentication: on_auth
// answers each step of a client's exchange (auth.go). on_message and
// on_disconnect observe the event bus off the hot path. scripts/README.md
// is the contract for script authors.
//
// Each plugin compiles its script once and keeps a pool of Lua VMs created
// at load and reused by every call (no VM per call). A call takes a VM
// (waiting at most the plugin's timeout), runs the hook under that timeout,
// and returns the VM. The hot path is kept lean: a watchdog goroutine ends
// overdue calls (arming a call is an atomic store), a connection's client
// table is built once per VM, the payload becomes a Lua string once for all
// plugins, arguments a hook does not declare are not built, and
// on_publish's message table is reused when the hook's bytecode shows that
// it only reads the table's fields. A timeout, a Lua error, a panic or an empty pool
// applies the plugin's fail policy (closed: deny; open: allow), is counted
// (Stats, SysValues) and logged, rate-limited, with the script's file and
// line; a VM that failed mid-call is discarded and replaced.
//
// Scripts run in a sandbox: base (without file access, except dofile,
// loadfile and readfile inside the script's folder), table, string, math and
// os.time/clock/date/difftime; require gives the modules of
// plugins/lualib (json, log, crypto, broker, kv, http, sql, sink) and the
// .lua files of the script's folder. The sandbox is package plugins/sandbox,
// shared with the scheduler's jobs. The call stack and the registry are
// bounded, and string.rep, string.format and string.gsub refuse results
// beyond a limit, so runaway recursion or a string bomb is an error;
// an endless loop is cut by the timeout. Memory that a script allocates in
// a loop before its timeout is not otherwise bounded, and a single
// long-running Go builtin (a pathological string.find pattern, an HTTP call
// that ignores its context) runs to its end before the timeout is seen.
//
// Wiring in cmd/tide:
//
//	m := plugins.New(plugins.Options{Logger: log, Bus: srv.Bus(), Broker: brokerAdapter{srv}})
//	if err := m.Reload(cfg.Plugins); err != nil { ... }   // also on SIGHUP and POST /api/reload
//	srv.SetGates(m, m, m)                                     // before Serve
//	srv.AddSysSource(m.SysValues)                             // $SYS/broker/plugins/...; m.Stats() for /metrics
//	m.SetSinkWriter(datastore.MapWriter{Router: rt})          // the "sink" module
//	defer m.Close(ctx)                                        // after srv.Shutdown
//
// and `tide check` calls plugins.Check(cfg.Plugins). *core.Server has the
// broker's methods with core types, so the Broker interface is met by an
// adapter in cmd/tide (the one in this package's tests, adapter_test.go,
// can be copied as is).
package plugins
