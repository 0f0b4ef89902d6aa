// Package textfile reads the small text files that the configuration names
// (password files, ACL files) and reports their problems by line.
package textfile

import (
	"fmt"
	"io"
	"os"
)

// Read reads the file at path, refusing one larger than max bytes (so that
// a path such as /dev/zero is an error, not a hang).
func Read(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%s: larger than %d MiB", path, max>>20)
	}
	return data, nil
}

// LineError is a problem on one line of a file.
type LineError struct {
	File string
	Line int
	Msg  string
}

// Error renders e as "file:line: msg".
func (e *LineError) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }
