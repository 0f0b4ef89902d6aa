package plugins

import (
	"errors"
	"fmt"

	"github.com/tidemq/tide/conf"
	"github.com/tidemq/tide/plugins/sandbox"
)

// script is a compiled plugin script: the proto is shared by every VM of
// the plugin, so each VM only instantiates it. The sandbox package owns
// compiling and the confinement to the script's folder, shared with the
// scheduler's jobs.
type script = sandbox.Script

// loadScript reads and compiles a plugin's script. Its errors name the file
// and, for syntax errors, the line and column.
func loadScript(path string) (*script, error) { return sandbox.Load(path) }

// Check compiles every configured script, as `tide check` does, without
// running any of them: it reports every missing file and syntax error at
// once (joined), each with its file and line.
func Check(cfgs []conf.Plugin) error {
	var errs []error
	for i, c := range cfgs {
		cfg, err := normalize(c)
		if err != nil {
			errs = append(errs, fmt.Errorf("plugin[%d]: %w", i, err))
			continue
		}
		if _, err := loadScript(cfg.Script); err != nil {
			errs = append(errs, fmt.Errorf("plugin %s: %w", cfg.Name, err))
		}
	}
	return errors.Join(errs...)
}
