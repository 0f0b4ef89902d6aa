package scheduler

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tidemq/tide/conf"
)

func TestEverySchedule(t *testing.T) {
	cases := []struct {
		every    time.Duration
		from     time.Time
		want     time.Time
		describe string
	}{
		{time.Minute, t0, t0.Add(time.Minute), "every 1m"},
		{time.Minute, t0.Add(30 * time.Second), t0.Add(time.Minute), "every 1m"},
		{time.Minute, t0.Add(time.Minute - time.Nanosecond), t0.Add(time.Minute), "every 1m"},
		{time.Hour, t0.Add(90 * time.Minute), t0.Add(2 * time.Hour), "every 1h"},
		{24 * time.Hour, t0.Add(time.Hour), t0.Add(24 * time.Hour), "every 1d"},
		{90 * time.Second, t0, t0.Add(90 * time.Second), "every 1m30s"}, // t0 is a multiple of 90s since the epoch
	}
	for _, tc := range cases {
		s := every{tc.every}
		if got := s.Next(tc.from); !got.Equal(tc.want) {
			t.Errorf("%s from %v: got %v, want %v", s, tc.from, got, tc.want)
		}
		if s.String() != tc.describe {
			t.Errorf("String() = %q, want %q", s.String(), tc.describe)
		}
	}
}

func TestCronSchedule(t *testing.T) {
	s, err := parseSchedule(conf.Job{Cron: "*/15 9-17 * * mon-fri"})
	if err != nil {
		t.Fatal(err)
	}
	if s.String() != "cron */15 9-17 * * mon-fri" {
		t.Errorf("String() = %q", s.String())
	}
	// A week from Monday 00:00: 5 days, 9 hours (9:00 to 17:45), 4 times an hour.
	n := 0
	last := t0
	for at := s.Next(t0); at.Before(t0.Add(7 * 24 * time.Hour)); at = s.Next(at) {
		n++
		last = at
	}
	if n != 5*9*4 {
		t.Errorf("runs in a week = %d, want %d", n, 5*9*4)
	}
	if want := time.Date(2026, 1, 9, 17, 45, 0, 0, time.UTC); !last.Equal(want) {
		t.Errorf("last run of the week = %v, want Friday 17:45 (%v)", last, want)
	}
	if first := s.Next(t0); !first.Equal(t0.Add(9 * time.Hour)) {
		t.Errorf("first run = %v, want Monday 09:00", first)
	}
}

func TestBadSchedules(t *testing.T) {
	for _, tc := range []struct {
		job  conf.Job
		want string
	}{
		{conf.Job{}, "no schedule"},
		{conf.Job{Cron: "* * * * *", Every: conf.Duration{Duration: time.Minute}}, "both every and cron"},
		{conf.Job{Every: conf.Duration{Duration: -time.Minute}}, "must be positive"},
		{conf.Job{Cron: "* * * *"}, "must have 5 space-separated fields"},
		{conf.Job{Cron: "60 * * * *"}, `invalid cron expression "60 * * * *": end of range (60) above maximum (59)`},
		{conf.Job{Cron: "0 0 31 2 *"}, "never matches"},
		{conf.Job{Cron: "@daily"}, "must have 5 space-separated fields"},
	} {
		if _, err := parseSchedule(tc.job); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseSchedule(%+v) = %v, want an error containing %q", tc.job, err, tc.want)
		}
	}
}

// TestCronConfigErrors checks that the config names the key and line of a
// bad cron expression.
func TestCronConfigErrors(t *testing.T) {
	src := `[[job]]
name = "ok"
script = "a.lua"
cron = "*/5 * * * *"

[[job]]
name = "bad"
script = "b.lua"
cron = "0 25 * * *"
`
	_, err := conf.Parse("jobs.toml", []byte(src))
	want := `jobs.toml:9: job[1].cron: invalid cron expression "0 25 * * *": end of range (25) above maximum (23): 25`
	if err == nil || err.Error() != want {
		t.Errorf("errors:\n%v\nwant:\n%s", err, want)
	}
}

func ExampleCheck() {
	err := Check([]conf.Job{{Name: "j", Script: "missing.lua", Cron: "* * * * * *"}})
	fmt.Println(err)
	// Output:
	// job j: cron: must have 5 space-separated fields (minute hour day-of-month month day-of-week), got "* * * * * *"
	// job j: script missing.lua: no such file or directory
}
