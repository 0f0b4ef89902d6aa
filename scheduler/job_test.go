package scheduler

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidemq/tide/conf"
)

// TestADayOfRuns drives a job every minute for a whole day on the fake
// clock: every run happens, in order, with the context a script expects,
// and state carries from run to run.
func TestADayOfRuns(t *testing.T) {
	e := newEnv(t)
	e.load(job("count", e.script("count.lua", `
function run(ctx)
  state.n = (state.n or 0) + 1
  assert(ctx.job == "count", "job " .. tostring(ctx.job))
  assert(ctx.run == state.n, "run " .. ctx.run .. " but state.n " .. state.n)
  assert(ctx.scheduled == ctx.started, "started late")
  assert(ctx.deadline == ctx.started + ctx.timeout)
  if ctx.run > 1 then assert(ctx.last_success == ctx.scheduled - 60, "last_success") end
  state.last = ctx.scheduled
end`), time.Minute))
	start := time.Now()
	const day = 24 * 60
	for i := 1; i <= day; i++ {
		st := e.next("count")
		if st.LastOutcome != OutcomeOK || st.Runs != uint64(i) {
			t.Fatalf("run %d: %+v", i, st)
		}
		if want := t0.Add(time.Duration(i) * time.Minute); !st.LastScheduled.Equal(want) {
			t.Fatalf("run %d was due at %v, want %v", i, st.LastScheduled, want)
		}
	}
	t.Logf("a day of runs every minute took %v", time.Since(start))
	st := e.status("count")
	if st.Skipped != 0 || st.Failures != 0 {
		t.Errorf("skipped, failures = %d, %d; want 0, 0", st.Skipped, st.Failures)
	}
	if want := t0.Add((day + 1) * time.Minute); !st.NextRun.Equal(want) {
		t.Errorf("next run = %v, want %v", st.NextRun, want)
	}
	if st.Schedule != "every 1m" || st.TimeoutSeconds != 10 {
		t.Errorf("schedule, timeout = %q, %v", st.Schedule, st.TimeoutSeconds)
	}
}

// TestCronJobRuns runs a cron job over a week on the fake clock.
func TestCronJobRuns(t *testing.T) {
	e := newEnv(t)
	j := job("office", e.script("office.lua", `function run(ctx) end`), 0)
	j.Cron = "0 9,17 * * mon-fri"
	e.load(j)
	var due []string
	for range 10 {
		st := e.next("office")
		due = append(due, st.LastScheduled.Format("Mon 15:04"))
	}
	want := "Mon 09:00,Mon 17:00,Tue 09:00,Tue 17:00,Wed 09:00,Wed 17:00,Thu 09:00,Thu 17:00,Fri 09:00,Fri 17:00"
	if got := strings.Join(due, ","); got != want {
		t.Errorf("runs:\n%s\nwant:\n%s", got, want)
	}
	monday := time.Date(2026, 1, 12, 9, 0, 0, 0, time.UTC)
	eventually(t, "the next run to be next Monday 09:00", func() bool { return e.status("office").NextRun.Equal(monday) })
}

// blocker is an HTTP server whose requests wait until released: a job
// calling it stays in its run as long as the test wants.
type blocker struct {
	srv     *httptest.Server
	release chan struct{}
	calls   atomic.Int32
}

func newBlocker(t *testing.T) *blocker {
	b := &blocker{release: make(chan struct{})}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.calls.Add(1)
		select {
		case <-b.release:
		case <-r.Context().Done():
		}
		w.Write([]byte("done"))
	}))
	t.Cleanup(func() {
		select {
		case <-b.release:
		default:
			close(b.release)
		}
		b.srv.Close()
	})
	return b
}

// TestRunsNeverOverlap holds a run for three due times: they are skipped
// and counted, and the job runs again at the first due time after it ended.
func TestRunsNeverOverlap(t *testing.T) {
	b := newBlocker(t)
	e := newEnv(t)
	j := job("slow", e.script("slow.lua", `
local http = require("http")
function run(ctx)
  if ctx.run == 1 then
    local resp, err = http.get(config.url, {timeout = 30})
    assert(resp, err)
  end
end`), time.Minute)
	j.Timeout.Duration = 10 * time.Minute
	j.Settings = map[string]any{"url": b.srv.URL}
	e.load(j)
	e.armed("slow")
	e.clk.AdvanceTo(t0.Add(time.Minute))
	eventually(t, "the first run to call the server", func() bool { return b.calls.Load() == 1 })
	for i := 2; i <= 4; i++ {
		e.clk.AdvanceTo(t0.Add(time.Duration(i) * time.Minute))
		eventually(t, "a skipped run", func() bool { return e.status("slow").Skipped == uint64(i-1) })
	}
	if st := e.status("slow"); !st.Running || st.Runs != 1 {
		t.Fatalf("while held: %+v, want run 1 still running", st)
	}
	close(b.release)
	eventually(t, "the first run to end", func() bool { return !e.status("slow").Running })
	st := e.next("slow")
	if st.Runs != 2 || st.Skipped != 3 || st.LastOutcome != OutcomeOK || !st.LastScheduled.Equal(t0.Add(5*time.Minute)) {
		t.Errorf("after the slow run: %+v, want run 2 at 00:05 with 3 skipped", st)
	}
	if n := strings.Count(e.logs.String(), "job run skipped: the previous run is still running"); n != 3 {
		t.Errorf("%d skip log lines, want 3", n)
	}
}

// TestTimeout cuts an endless loop at the job's timeout, on the fake clock.
func TestTimeout(t *testing.T) {
	e := newEnv(t)
	path := e.script("loop.lua", `
count = (count or 0) + 1  -- a global of the VM: 1 again after a failed run
function run(ctx)
  state.count = count
  if ctx.run == 1 then
    while true do end
  end
end`)
	j := job("loop", path, time.Minute)
	j.Timeout.Duration = 5 * time.Second
	e.load(j)
	e.armed("loop")
	e.clk.AdvanceTo(t0.Add(time.Minute))
	eventually(t, "the run to start", func() bool { return e.status("loop").Running && e.clk.Timers() == 2 })
	e.clk.Advance(5 * time.Second)
	eventually(t, "the run to be cut", func() bool { return !e.status("loop").Running })
	st := e.status("loop")
	if st.LastOutcome != OutcomeTimeout || st.Timeouts != 1 || st.Failures != 1 {
		t.Errorf("status = %+v, want a timeout", st)
	}
	// The line is where the run was when cut: in the loop, or just before.
	if !regexp.MustCompile(`^timed out after 5s at ` + regexp.QuoteMeta(path) + `:[4-6]$`).MatchString(st.LastError) {
		t.Errorf("error = %q, want \"timed out after 5s at %s:6\" (or line 4 or 5)", st.LastError, path)
	}
	if st.LastDurationSeconds != 5 {
		t.Errorf("duration = %v, want 5 (by the fake clock)", st.LastDurationSeconds)
	}
	// The next run gets a fresh VM and succeeds.
	st = e.next("loop")
	if st.LastOutcome != OutcomeOK || st.Failures != 1 {
		t.Errorf("next run: %+v", st)
	}
}

// TestErrorsNameFileAndLine checks that a failed run records the script's
// file and line, logs it, and keeps the previous state.
func TestErrorsNameFileAndLine(t *testing.T) {
	e := newEnv(t)
	path := e.script("jobs/fail.lua", `local window = require("window")
function run(ctx)
  state.runs = ctx.run
  if ctx.run == 2 then error("disk full") end
  if ctx.run == 3 then local t = nil; return t.x end
  if ctx.run == 4 then window.stats("#", "5m") end
  if ctx.run == 5 then state.f = print end
end`)
	e.load(job("fail", path, time.Minute))
	cases := []struct{ outcome, err string }{
		{OutcomeOK, ""},
		{OutcomeError, path + ":4: disk full"},
		{OutcomeError, path + ":5: attempt to index a non-table object(nil) with key 'x'"},
		{OutcomeError, path + ":6: window module: no [[aggregate]] configured"},
		{OutcomeError, path + ": state: cannot convert a function (state keeps strings, numbers, booleans and tables of them)"},
		{OutcomeOK, ""},
	}
	for i, tc := range cases {
		st := e.next("fail")
		if st.LastOutcome != tc.outcome || st.LastError != tc.err {
			t.Errorf("run %d: outcome %q, error %q; want %q, %q", i+1, st.LastOutcome, st.LastError, tc.outcome, tc.err)
		}
	}
	if st := e.status("fail"); st.Failures != 4 || st.Runs != 6 {
		t.Errorf("failures, runs = %d, %d; want 4, 6", st.Failures, st.Runs)
	}
	if !strings.Contains(e.logs.String(), `msg="job run failed" component=scheduler job=fail run=2 outcome=error err="`+path+`:4: disk full"`) {
		t.Errorf("log lacks the failure with file and line:\n%s", e.logs.String())
	}
}

// TestLoadErrors checks that a job that cannot load is refused with a clear
// error, and the others start.
func TestLoadErrors(t *testing.T) {
	e := newEnv(t)
	good := job("good", e.script("good.lua", `function run() end`), time.Minute)
	cases := []struct {
		job  conf.Job
		want string
	}{
		{job("syntax", e.script("syntax.lua", "function run(\n"), time.Minute), "syntax.lua: at end of file"},
		{job("norun", e.script("norun.lua", "x = 1"), time.Minute), "norun.lua: the script defines no function run(ctx)"},
		{job("main", e.script("main.lua", "error('no config')\nfunction run() end"), time.Minute), "main.lua:1: no config"},
		{job("missing", filepath.Join(e.dir, "none.lua"), time.Minute), "none.lua: no such file or directory"},
		{conf.Job{Name: "nosched", Script: e.script("ns.lua", "function run() end")}, "job nosched: no schedule"},
	}
	jobs := []conf.Job{good}
	for _, tc := range cases {
		jobs = append(jobs, tc.job)
	}
	err := e.s.Reload(jobs)
	if err == nil {
		t.Fatal("Reload accepted broken jobs")
	}
	for _, tc := range cases {
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("error lacks %q:\n%v", tc.want, err)
		}
	}
	if got := e.s.Jobs(); len(got) != 1 || got[0].Name != "good" {
		t.Errorf("jobs = %+v, want only good", got)
	}
	if st := e.next("good"); st.LastOutcome != OutcomeOK {
		t.Errorf("good: %+v", st)
	}
}

// TestStatePersistsAcrossRestart runs a job, restarts the scheduler on the
// same folder, and finds the state and run count again. A failed run does
// not save its changes.
func TestStatePersistsAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	e := newEnv(t, func(o *Options) { o.StateDir = dir })
	j := job("persist", e.script("persist.lua", `
function run(ctx)
  state.n = (state.n or 0) + 1
  state.history = state.history or {}
  table.insert(state.history, ctx.run)
  state.nested = {name = "x", flags = {a = true}}
  if config.fail then error("failing on purpose") end
end`), time.Minute)
	e.load(j)
	e.next("persist")
	e.next("persist")
	e.stop()

	data, err := os.ReadFile(filepath.Join(dir, "jobs", "persist.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f jobFile
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatalf("state file: %v\n%s", err, data)
	}
	if f.Runs != 2 || f.LastSuccess.IsZero() {
		t.Errorf("state file = %s, want 2 runs and a last success", data)
	}
	if !strings.Contains(string(data), `"history": [`) || !strings.Contains(string(data), `"n": 2`) {
		t.Errorf("state file = %s, want n = 2 and the history", data)
	}

	// Restart, 10 minutes later: the runs missed meanwhile are not
	// replayed; the state and the run count carry on.
	e.clk.Advance(10 * time.Minute)
	e.start()
	j.Settings = map[string]any{"fail": true}
	e.load(j)
	st := e.next("persist")
	if st.Runs != 3 || st.LastOutcome != OutcomeError || st.Skipped != 0 {
		t.Errorf("after the restart: %+v, want run 3 (failing), nothing skipped", st)
	}
	if !st.LastScheduled.Equal(t0.Add(13 * time.Minute)) {
		t.Errorf("first run after the restart was due at %v, want 00:13", st.LastScheduled)
	}
	j.Settings = nil
	e.load(j)
	e.next("persist")
	e.stop()
	data, _ = os.ReadFile(filepath.Join(dir, "jobs", "persist.json"))
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	state := f.State.(map[string]any)
	if state["n"] != 3.0 || len(state["history"].([]any)) != 3 || f.Runs != 4 {
		t.Errorf("state file = %s, want n = 3 (the failed run saved nothing), history of 3, 4 runs", data)
	}
}

// TestCorruptStateFile starts afresh, keeping the bad file aside.
func TestCorruptStateFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "jobs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "jobs", "j.json"), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(o *Options) { o.StateDir = dir })
	e.load(job("j", e.script("j.lua", `function run() state.ok = true end`), time.Minute))
	if st := e.next("j"); st.LastOutcome != OutcomeOK || st.Runs != 1 {
		t.Errorf("status = %+v", st)
	}
	if _, err := os.Stat(filepath.Join(dir, "jobs", "j.json.bad")); err != nil {
		t.Errorf("the corrupt file was not kept aside: %v", err)
	}
	if !strings.Contains(e.logs.String(), "is not valid JSON") {
		t.Errorf("log lacks the corrupt file:\n%s", e.logs.String())
	}
}

// TestMissedRunsAreSkipped jumps the clock over many due times: they are
// counted as skipped, not replayed.
func TestMissedRunsAreSkipped(t *testing.T) {
	e := newEnv(t)
	e.load(job("j", e.script("j.lua", `function run() end`), time.Minute))
	e.armed("j")
	e.clk.AdvanceTo(t0.Add(time.Hour + 30*time.Second))
	eventually(t, "the late run", func() bool { st := e.status("j"); return st.Runs == 1 && !st.Running && st.Skipped > 0 })
	st := e.status("j")
	if st.Skipped != 59 || !st.LastScheduled.Equal(t0.Add(time.Minute)) || !st.NextRun.Equal(t0.Add(61*time.Minute)) {
		t.Errorf("status = %+v, want the 00:01 run late, 59 skipped, next at 01:01", st)
	}
}

// TestJitter delays each run by less than the jitter, by a different
// amount each time.
func TestJitter(t *testing.T) {
	e := newEnv(t)
	j := job("j", e.script("j.lua", `function run() end`), time.Minute)
	j.Jitter.Duration = 30 * time.Second
	e.load(j)
	delays := map[time.Duration]bool{}
	for i := 1; i <= 20; i++ {
		due := t0.Add(time.Duration(i) * time.Minute)
		eventually(t, "the loop to wait", func() bool { return e.status("j").NextRun.Equal(due) && e.clk.Timers() == 1 })
		fire := e.clk.Earliest()
		if fire.Before(due) || !fire.Before(due.Add(30*time.Second)) {
			t.Fatalf("run %d due %v is set to start at %v: want within 30s after", i, due, fire)
		}
		e.clk.AdvanceTo(fire)
		eventually(t, "the run", func() bool { st := e.status("j"); return st.Runs == uint64(i) && !st.Running })
		st := e.status("j")
		if !st.LastRun.Equal(fire) || !st.LastScheduled.Equal(due) {
			t.Fatalf("run %d due %v started %v: want due %v, started %v", i, st.LastScheduled, st.LastRun, due, fire)
		}
		delays[fire.Sub(due)] = true
	}
	if len(delays) < 10 {
		t.Errorf("20 runs had %d different delays, want random ones", len(delays))
	}
}
