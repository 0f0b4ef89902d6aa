// Package scheduler runs Lua jobs on a schedule ([[job]] in tide.toml):
// periodic aggregation, reports and alert rules, with the plugins' sandbox
// and modules plus three of their own: store (SQL and search over the
// datastore's sinks), window (the live [[aggregate]] windows of package
// scheduler/window) and alert (alerts with state, notices on MQTT and
// webhooks). scripts/README.md is the contract for script authors.
//
// Each job runs every interval (aligned on multiples of it since the Unix
// epoch) or on a five-field cron expression, plus an optional random
// jitter. A run never overlaps the previous run of the same job: a due
// time that finds a run in progress is skipped (counted, logged). Each run
// is cut at the job's timeout (the Lua state's context is canceled). Due
// times that passed while the broker was down, paused or busy are not
// replayed. The script's run(ctx) gets a table with the job's name, the
// run number and the due, start and deadline times; its global state table
// is saved after each successful run (to <persistence.dir>/jobs/<name>.json)
// and given back to the next, across restarts.
//
// Time comes from a Clock, so that tests drive a day of schedule, run
// timeouts and webhook back-off with a fake clock.
//
// Wiring in cmd/tide:
//
//	win, err := window.New(cfg.Aggregates, window.Options{Logger: log})
//	win.Start(srv.Bus())
//	s := scheduler.New(scheduler.Options{Logger: log, Broker: adapter, Stores: router, Windows: win,
//	    StateDir: cfg.Persistence.Dir, Alert: cfg.Alert, KV: plugins.KV()})
//	err = s.Reload(cfg.Jobs)                       // also on SIGHUP
//	srv.AddSysSource(s.SysValues)                  // $SYS/broker/jobs/..., alerts/..., window/...
//	adm.SetJobs(func() any { return s.Jobs() })    // GET /api/jobs
//	defer s.Close(ctx)                             // before srv.Shutdown: jobs publish
//
// and `tide check` calls scheduler.Check(cfg.Jobs).
package scheduler
