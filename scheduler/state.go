package scheduler

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// jobFile is what survives a restart of one job: the script's state table
// and the run counters, in <persistence.dir>/jobs/<name>.json.
type jobFile struct {
	Version     int       `json:"version"`
	State       any       `json:"state"`
	Runs        uint64    `json:"runs"`
	LastSuccess time.Time `json:"last_success,omitzero"`
}

// alertFile holds the alerts firing, in <persistence.dir>/alerts.json, so
// that a restart does not notify again about an alert that still fires.
type alertFile struct {
	Version int                    `json:"version"`
	Alerts  map[string]*alertState `json:"alerts"`
}

const fileVersion = 1

// writeJSON writes v to path atomically: to a temporary file in the same
// folder, synced, then renamed over path, and the folder synced, so that a
// crash leaves either the old file or the new one.
func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(append(data, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // the rename itself is durable once the folder is
		d.Close()
	}
	return nil
}

// readJSON reads path into v. A missing file is (false, nil). A file that
// does not decode is renamed to path.bad, so that the next write does not
// destroy what an operator may want to look at, and reported.
func readJSON(path string, v any) (bool, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(data, v); err != nil {
		bad := path + ".bad"
		if rerr := os.Rename(path, bad); rerr != nil {
			return false, fmt.Errorf("%s is not valid JSON (%v), and could not be set aside: %v", path, err, rerr)
		}
		return false, fmt.Errorf("%s is not valid JSON (%v): starting afresh, the file is kept as %s", path, err, bad)
	}
	return true, nil
}
