package scheduler

import (
	"errors"
	"fmt"
	"time"

	"github.com/tidemq/tide/conf"
)

// schedule says when a job is due.
type schedule interface {
	// Next returns the first time after t that the job is due.
	Next(t time.Time) time.Time
	String() string
}

// every is due at each multiple of d since the Unix epoch: every = "1m" runs
// at second 0 of each minute, "1h" on the hour, "1d" at midnight UTC. The
// times do not drift and do not depend on when the broker started.
type every struct{ d time.Duration }

func (e every) Next(t time.Time) time.Time {
	n := t.UnixNano()
	d := int64(e.d)
	k := n / d
	if n < 0 && n%d != 0 {
		k--
	}
	return time.Unix(0, (k+1)*d).In(t.Location())
}

func (e every) String() string {
	b, _ := conf.Duration{Duration: e.d}.MarshalText()
	return "every " + string(b)
}

// cronSchedule is a five-field cron expression, in the location of the
// times given to Next (the broker's local time zone).
type cronSchedule struct {
	spec string
	s    interface{ Next(time.Time) time.Time }
}

func (c cronSchedule) Next(t time.Time) time.Time { return c.s.Next(t) }
func (c cronSchedule) String() string             { return "cron " + c.spec }

// parseSchedule reads a job's every or cron.
func parseSchedule(j conf.Job) (schedule, error) {
	switch {
	case j.Every.Duration != 0 && j.Cron != "":
		return nil, errors.New("both every and cron are set: a job runs on one schedule")
	case j.Every.Duration < 0:
		return nil, fmt.Errorf("every %v must be positive", j.Every.Duration)
	case j.Every.Duration > 0:
		return every{j.Every.Duration}, nil
	case j.Cron != "":
		s, err := conf.ParseCron(j.Cron)
		if err != nil {
			return nil, fmt.Errorf("cron: %w", err)
		}
		return cronSchedule{spec: j.Cron, s: s}, nil
	}
	return nil, errors.New(`no schedule: set every (e.g. "1m") or cron (e.g. "*/5 * * * *")`)
}
