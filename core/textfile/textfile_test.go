package textfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRead(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte("12345"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := Read(p, 5); err != nil || string(b) != "12345" {
		t.Errorf("Read at the limit: %q %v", b, err)
	}
	if _, err := Read(p, 4); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("Read over the limit: %v", err)
	}
	if _, err := Read(p+".missing", 5); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := os.Stat("/dev/zero"); err == nil {
		if _, err := Read("/dev/zero", 1<<20); err == nil {
			t.Error("/dev/zero read without an error")
		}
	}
	if e := (&LineError{File: "a.pw", Line: 3, Msg: "bad"}); e.Error() != "a.pw:3: bad" {
		t.Errorf("LineError = %q", e.Error())
	}
}
