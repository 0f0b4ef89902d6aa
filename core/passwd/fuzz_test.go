package passwd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// Hashes come from files people edit: no input may panic, a hash that
// fails Check matches no password, and every line ReadFile returns passes
// Check.
func FuzzPasswordFile(f *testing.F) {
	seed, err := os.ReadFile("testdata/mosquitto.pw")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(seed), "s3cret")
	for _, l := range strings.Split(string(seed), "\n") {
		f.Add(l, "hunter2")
	}
	f.Add("u:$7$1$AA==$"+strings.Repeat("A", 86)+"==", "")
	f.Add("u:$6$$", "x")
	f.Add("u:$2y$04$", "x")
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, text, password string) {
		p := filepath.Join(dir, "f.pw")
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		entries, _ := ReadFile(p)
		for _, e := range entries {
			if err := Check(e.Hash); err != nil {
				t.Fatalf("line %d: ReadFile returned %q, which Check refuses: %v", e.Line, e.Hash, err)
			}
		}
		// The whole input as one hash; costly ones (allowed up to seconds
		// per check) are left out, or the fuzzer calls them hangs.
		if p, err := parse(text); err == nil && (p.iterations > 10000 || (p.bcrypt != nil && !cheap(p.bcrypt))) {
			return
		}
		if Check(text) != nil && Verify(text, []byte(password)) {
			t.Fatalf("malformed hash %q matched", text)
		}
		_ = Decoy(text)
	})
}

func cheap(h []byte) bool {
	cost, err := bcrypt.Cost(h)
	return err == nil && cost <= 6
}
