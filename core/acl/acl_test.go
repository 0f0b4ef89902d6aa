package acl

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The example of Mosquitto's documentation (mosquitto.conf(5), acl_file),
// with a deny and a user whose name holds a space.
const example = `# This affects access control for clients with no username.
topic read $SYS/#

# This only affects clients with username "roger".
user roger
topic foo/bar
topic deny foo/bar/secret
topic read public/#

user a b
topic write ab/+

# This affects all clients.
pattern write $SYS/broker/connection/%c/state
pattern readwrite home/%u/#
pattern read devices/%c/cmd
pattern deny home/%u/private/#
`

func parse(t testing.TB, text string) *File {
	t.Helper()
	f, err := Parse("test.acl", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestAllowed(t *testing.T) {
	f := parse(t, example)
	cases := []struct {
		client, user, topic string
		write, want         bool
	}{
		// No user name: the lines before the first user line.
		{"c1", "", "$SYS/broker/uptime", false, true},
		{"c1", "", "$SYS/broker/uptime", true, false},
		{"c1", "", "foo/bar", false, false},
		{"c1", "", "devices/c1/cmd", false, true}, // patterns apply to all
		{"c1", "", "devices/c2/cmd", false, false},
		{"c1", "", "home//x", false, false}, // %u patterns skip clients without a user
		// roger: readwrite when no access is named; a deny wins over a
		// wider grant; public read only.
		{"c2", "roger", "foo/bar", true, true},
		{"c2", "roger", "foo/bar", false, true},
		{"c2", "roger", "foo/bar/secret", false, false},
		{"c2", "roger", "public/news", false, true},
		{"c2", "roger", "public/news", true, false},
		{"c2", "roger", "$SYS/broker/uptime", false, false}, // the anonymous lines are not roger's
		{"c2", "roger", "home/roger/lights", true, true},
		{"c2", "roger", "home/roger/private/diary", false, false},
		{"c2", "roger", "home/other/lights", false, false},
		{"c2", "roger", "$SYS/broker/connection/c2/state", true, true},
		// A user name with a space; a user not in the file has the
		// patterns only.
		{"c3", "a b", "ab/x", true, true},
		{"c3", "a b", "ab/x", false, false},
		{"c4", "zoe", "foo/bar", false, false},
		{"c4", "zoe", "home/zoe/x", false, true},
		// A wildcard in the client id or user name could widen a pattern:
		// the patterns grant nothing then.
		{"c+", "zoe", "home/zoe/x", false, false},
		{"c5", "z#", "home/z#/x", false, false},
		{"c5", "roger", "foo/bar", false, true}, // topic lines still apply
	}
	for _, c := range cases {
		if got := f.For(c.client, c.user).Allowed(c.topic, c.write); got != c.want {
			t.Errorf("client %q user %q %s %s: %v, want %v", c.client, c.user, map[bool]string{true: "write", false: "read"}[c.write], c.topic, got, c.want)
		}
	}
}

// A $ topic is matched only by a filter that starts with $, and an empty
// file allows nothing.
func TestDollarAndEmpty(t *testing.T) {
	f := parse(t, "topic #\ntopic +/broker/#\n")
	if f.For("c", "").Allowed("$SYS/broker/uptime", false) {
		t.Error("# allowed a $SYS topic")
	}
	if !f.For("c", "").Allowed("a/b", true) {
		t.Error("# did not allow a/b")
	}
	if parse(t, "").For("c", "u").Allowed("a", false) {
		t.Error("an empty file allowed something")
	}
}

func TestParseErrors(t *testing.T) {
	text := strings.Join([]string{
		"topic read a/#",
		"topik read b",
		"user",
		"topic",
		"topic deny",
		"pattern read a/#/b",
		"topic write c/+",
		"topic rw d/#",
		"  # an indented comment",
	}, "\n")
	f, err := Parse("bad.acl", []byte(text))
	want := []string{
		`bad.acl:2: unknown line: want "topic", "pattern" or "user"`,
		`bad.acl:3: user without a user name`,
		`bad.acl:4: topic without a topic filter`,
		`bad.acl:5: topic deny without a topic filter`,
		`bad.acl:6: invalid topic filter "a/#/b"`,
		`bad.acl:8: unknown access "rw": want read, write, readwrite or deny`,
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
		t.Fatalf("errors:\n%s\nwant %d", strings.Join(got, "\n"), len(want))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("error %d: %s, want %s", i, got[i], want[i])
		}
	}
	// The good lines are kept.
	if r := f.For("c", ""); !r.Allowed("a/x", false) || !r.Allowed("c/x", true) {
		t.Error("the lines around the bad ones were lost")
	}
}

func TestParseFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "a.acl")
	if err := os.WriteFile(p, []byte(example), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ParseFile(p); err != nil {
		t.Fatal(err)
	}
	if _, err := ParseFile(p + ".missing"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

// A decision costs a few filter matches and allocates nothing (it runs for
// every delivery when an ACL file is set).
func BenchmarkAllowed(b *testing.B) {
	r := parse(b, example).For("c2", "roger")
	b.ReportAllocs()
	for b.Loop() {
		r.Allowed("home/roger/lights/kitchen", false)
	}
}
