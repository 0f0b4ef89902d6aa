package passwd

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The committed file was written by mosquitto_passwd 2.0.11 (and bcrypt):
// every user's password matches, and nothing else does.
func TestVerifyMosquittoFile(t *testing.T) {
	entries, err := ReadFile("testdata/mosquitto.pw")
	if err != nil {
		t.Fatal(err)
	}
	passwords := map[string]string{"alice": "s3cret", "carol": "pä:ss w0rd", "bob": "hunter2", "dave": "tr0ub4dor"}
	if len(entries) != len(passwords) {
		t.Fatalf("%d entries, want %d: %+v", len(entries), len(passwords), entries)
	}
	for _, e := range entries {
		pw, ok := passwords[e.Username]
		if !ok {
			t.Fatalf("unexpected user %q", e.Username)
		}
		if !Verify(e.Hash, []byte(pw)) {
			t.Errorf("%s (line %d): the right password does not match", e.Username, e.Line)
		}
		for _, wrong := range []string{"", pw + "x", strings.ToUpper(pw), pw[:len(pw)-1]} {
			if Verify(e.Hash, []byte(wrong)) {
				t.Errorf("%s: %q matches", e.Username, wrong)
			}
		}
		if d := Decoy(e.Hash); d == "" || Check(d) != nil || Verify(d, []byte(pw)) || Verify(d, nil) {
			t.Errorf("%s: decoy %q is not a well-formed hash that nothing matches", e.Username, d)
		}
	}
	if entries[0].Line != 4 {
		t.Errorf("alice on line %d, want 4 (after the comments and the blank line)", entries[0].Line)
	}
}

// mosquittoPasswd runs the real mosquitto_passwd; without it the test
// skips, unless TIDE_REQUIRE_SERVICES=1.
func mosquittoPasswd(t *testing.T, args ...string) {
	t.Helper()
	if _, err := exec.LookPath("mosquitto_passwd"); err != nil {
		if os.Getenv("TIDE_REQUIRE_SERVICES") == "1" {
			t.Fatal("TIDE_REQUIRE_SERVICES=1 but mosquitto_passwd is not installed (apt-get install mosquitto)")
		}
		t.Skip("mosquitto_passwd not installed (apt-get install mosquitto)")
	}
	if out, err := exec.Command("mosquitto_passwd", args...).CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd %v: %v\n%s", args, err, out)
	}
}

// Files made now by the installed mosquitto_passwd, both of its formats.
func TestVerifyLiveMosquittoPasswd(t *testing.T) {
	f := filepath.Join(t.TempDir(), "users.pw")
	users := map[string]string{"u1": "first", "u2": "zwëite:pass", "u3": strings.Repeat("long", 60)}
	mosquittoPasswd(t, "-c", "-b", f, "u1", users["u1"])
	mosquittoPasswd(t, "-H", "sha512", "-b", f, "u2", users["u2"])
	mosquittoPasswd(t, "-H", "sha512-pbkdf2", "-b", f, "u3", users["u3"])
	entries, err := ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 3 {
		t.Fatalf("%d entries, want 3", len(entries))
	}
	for _, e := range entries {
		if !Verify(e.Hash, []byte(users[e.Username])) {
			t.Errorf("%s: %s does not verify", e.Username, e.Hash)
		}
		if Verify(e.Hash, []byte("first")) && e.Username != "u1" {
			t.Errorf("%s: another user's password matches", e.Username)
		}
	}
	if !strings.HasPrefix(entries[1].Hash, "$6$") || !strings.HasPrefix(entries[2].Hash, "$7$") {
		t.Errorf("formats %q, %q: want $6$ and $7$", entries[1].Hash[:3], entries[2].Hash[:3])
	}
}

// Every bad line is reported with its number, and the good lines still
// come back.
func TestReadFileErrors(t *testing.T) {
	good := "$7$101$0TArXXNeae+K+/lU$rQWECzWL4IjhSKMAoxeJNh1yCKauJeny8OOZ6wVrIn2AF2+mgFiLOPs7bxdu13a9IWbcV85fmJvaEx3mb0jOog=="
	text := strings.Join([]string{
		"# comment",
		"alice:" + good,
		"no colon here",
		":" + good,
		"plain:s3cret",
		"md5:$1$abc$def",
		"short:$7$101$0TArXXNeae+K+/lU$AAAA",
		"salt:$7$101$not*base64$" + good[len("$7$101$0TArXXNeae+K+/lU$"):],
		"iter:$7$0$0TArXXNeae+K+/lU$" + good[len("$7$101$0TArXXNeae+K+/lU$"):],
		"many:$7$99999999$0TArXXNeae+K+/lU$" + good[len("$7$101$0TArXXNeae+K+/lU$"):],
		"fields:$6$onlysalt",
		"crypt:$2b$10$tooshort",
		"slow:$2a$17$V4icbocLmpVZTRQOkwo3hekvpQqLuzMSI.lfG2Ejdn6QWqpl8x/MS",
		"alice:" + good,
		"   ",
		" crlf :" + good + " \r",
	}, "\n")
	f := filepath.Join(t.TempDir(), "bad.pw")
	if err := os.WriteFile(f, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	entries, err := ReadFile(f)
	if len(entries) != 2 || entries[0].Username != "alice" || entries[1].Username != "crlf" || entries[1].Line != 16 {
		t.Errorf("entries %+v, want alice (line 2) and crlf (line 16)", entries)
	}
	want := []string{
		f + `:3: want "username:hash"`,
		f + `:4: empty user name`,
		f + `:5: user "plain": the password is not hashed (mosquitto_passwd -U hashes a file of plain passwords)`,
		f + `:6: user "md5": unknown hash format`,
		f + `:7: user "short": not a valid Mosquitto sha512-pbkdf2 hash: the hash is not 64 bytes in base64`,
		f + `:8: user "salt": not a valid Mosquitto sha512-pbkdf2 hash: the salt is not base64`,
		f + `:9: user "iter": not a valid Mosquitto sha512-pbkdf2 hash: iterations "0"`,
		f + `:10: user "many": not a valid Mosquitto sha512-pbkdf2 hash: iterations "99999999"`,
		f + `:11: user "fields": not a valid Mosquitto sha512 hash: want "$6$salt$hash"`,
		f + `:12: user "crypt": not a valid bcrypt hash`,
		f + `:13: user "slow": bcrypt cost 17: at most 16`,
		f + `:14: user "alice" again (also on line 2)`,
	}
	var got []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var le *LineError
		if !errors.As(e, &le) {
			t.Errorf("%v is not a *LineError", e)
		}
		got = append(got, e.Error())
	}
	if len(got) != len(want) {
		t.Fatalf("%d errors, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("error %d:\n got %s\nwant %s…", i, got[i], want[i])
		}
	}
}

// The file is read through core/textfile, which bounds its size.
func TestReadFileMissing(t *testing.T) {
	if _, err := ReadFile(filepath.Join(t.TempDir(), "missing.pw")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestKind(t *testing.T) {
	entries, err := ReadFile("testdata/mosquitto.pw")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"alice": "$7$101$", "carol": "$7$101$", "bob": "$6$", "dave": "$2a$04$"}
	for _, e := range entries {
		if k := Kind(e.Hash); k != want[e.Username] {
			t.Errorf("Kind(%s's hash) = %q, want %q", e.Username, k, want[e.Username])
		}
		if k := Kind(Decoy(e.Hash)); k != want[e.Username] {
			t.Errorf("the decoy for %s is of kind %q, want %q", e.Username, k, want[e.Username])
		}
	}
}

func TestCheckAndVerifyMalformed(t *testing.T) {
	for _, h := range []string{"", "secret", "$", "$7$", "$7$101$$", "$6$$", "$2a$"} {
		if Check(h) == nil {
			t.Errorf("Check(%q) accepted", h)
		}
		if Verify(h, []byte("secret")) || Verify(h, nil) {
			t.Errorf("Verify(%q) matched", h)
		}
		if Decoy(h) != "" {
			t.Errorf("Decoy(%q) = %q", h, Decoy(h))
		}
	}
}

// The check of a password costs what the hash's format and cost say; a
// benchmark per format (the connect path pays it once per CONNECT).
func BenchmarkVerify(b *testing.B) {
	entries, err := ReadFile("testdata/mosquitto.pw")
	if err != nil {
		b.Fatal(err)
	}
	for _, e := range entries {
		b.Run(e.Username+"/"+e.Hash[:3], func(b *testing.B) {
			for b.Loop() {
				Verify(e.Hash, []byte("wrong"))
			}
		})
	}
}
