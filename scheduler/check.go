package scheduler

import (
	"errors"
	"fmt"

	"github.com/tidemq/tide/conf"
	"github.com/tidemq/tide/plugins/sandbox"
)

// Check compiles every job's script and parses its schedule, as `tide
// check` does, without running anything: it reports every missing file,
// syntax error and bad schedule at once (joined), each with its file and
// line.
func Check(cfgs []conf.Job) error {
	var errs []error
	for i, c := range cfgs {
		c, err := normalize(c)
		if err != nil {
			errs = append(errs, fmt.Errorf("job[%d]: %w", i, err))
			continue
		}
		if _, err := parseSchedule(c); err != nil {
			errs = append(errs, fmt.Errorf("job %s: %w", c.Name, err))
		}
		if _, err := sandbox.Load(c.Script); err != nil {
			errs = append(errs, fmt.Errorf("job %s: %w", c.Name, err))
		}
	}
	return errors.Join(errs...)
}
