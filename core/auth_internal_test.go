package core

import (
	"testing"

	"github.com/tidemq/tide/core/passwd"
)

// An unknown user's password is checked against a decoy of the kind most
// users have, so that a file of fast Mosquitto hashes does not answer an
// unknown name 1,000 times faster than a known one (or the reverse).
func TestDecoyFollowsMostUsers(t *testing.T) {
	entries, err := passwd.ReadFile("passwd/testdata/mosquitto.pw")
	if err != nil {
		t.Fatal(err)
	}
	hashes := map[string]string{}
	for _, e := range entries {
		hashes[e.Username] = e.Hash // two $7$101$, one $6$, one bcrypt
	}
	for range 20 { // map order varies
		u := NewStaticUsers(hashes)
		if k := passwd.Kind(u.decoy); k != "$7$101$" {
			t.Fatalf("decoy of kind %q, want $7$101$", k)
		}
		if err := u.Check("nobody", []byte("s3cret")); err != errUnknownUser {
			t.Fatalf("unknown user: %v", err)
		}
	}
}
