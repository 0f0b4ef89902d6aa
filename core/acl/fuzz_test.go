package acl

import (
	"strings"
	"testing"
)

// ACL files are edited by hand: no text may panic the parser, and no rules
// it keeps may panic a decision, whatever the client id, user name or topic.
func FuzzParse(f *testing.F) {
	f.Add(example, "c1", "roger", "home/roger/x")
	for _, l := range strings.Split(example, "\n") {
		f.Add(l, "c+", "", "$SYS/x")
	}
	f.Add("topic deny #\npattern %u/%c/#", "%u", "%c", "/")
	f.Add("pattern %c", "", "", "$x")
	f.Fuzz(func(t *testing.T, text, client, user, name string) {
		file, _ := Parse("fuzz.acl", []byte(text))
		r := file.For(client, user)
		r.Allowed(name, false)
		r.Allowed(name, true)
	})
}
