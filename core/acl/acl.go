// Package acl reads Mosquitto ACL files (acl_file) and answers, for one
// client, whether it may publish to a topic and receive messages on it,
// with Mosquitto 2's rules:
//
//	# comment
//	topic [read|write|readwrite|deny] <filter>     (readwrite when no access is named)
//	user <username>
//	pattern [read|write|readwrite|deny] <filter>   (%c: client id, %u: user name)
//
// topic lines before the first user line are for clients without a user
// name; those after a user line for that user. pattern lines are for every
// client. A client is checked against its topic lines, then the patterns:
// a matching deny refuses (denies are checked first), the first matching
// line that grants the access allows, and anything else is refused.
// Subscribing is always allowed: what a client may read is decided message
// by message.
package acl

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/tidemq/tide/core/textfile"
	"github.com/tidemq/tide/core/topic"
)

// Access is what a line grants.
type Access uint8

// The accesses; Deny is a line that refuses.
const (
	Deny      Access = 0
	Read      Access = 1
	Write     Access = 2
	ReadWrite Access = Read | Write
)

// rule is one topic or pattern line.
type rule struct {
	filter string
	access Access
}

// File is a parsed ACL file. It is immutable.
type File struct {
	anon     []rule
	users    map[string][]rule
	patterns []rule
}

// LineError is a problem on one line of an ACL file.
type LineError = textfile.LineError

// maxFileSize bounds an ACL file.
const maxFileSize = 64 << 20

// ParseFile reads and parses an ACL file.
func ParseFile(path string) (*File, error) {
	data, err := textfile.Read(path, maxFileSize)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// Parse parses an ACL file's text; name is for the errors, which are all
// returned (a *LineError each, joined), with the file parsed from the
// lines that were right.
func Parse(name string, data []byte) (*File, error) {
	f := &File{users: map[string][]rule{}}
	var errs []error
	user, inUser := "", false
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		bad := func(format string, args ...any) {
			errs = append(errs, &LineError{File: name, Line: n, Msg: fmt.Sprintf(format, args...)})
		}
		kw, rest, _ := strings.Cut(line, " ")
		rest = strings.TrimSpace(rest)
		switch kw {
		case "user":
			if rest == "" {
				bad("user without a user name")
				continue
			}
			user, inUser = rest, true
			if _, ok := f.users[user]; !ok {
				f.users[user] = nil
			}
		case "topic", "pattern":
			if rest == "" {
				bad("%s without a topic filter", kw)
				continue
			}
			// "topic FILTER", or "topic ACCESS FILTER" (as in Mosquitto,
			// two words are always an access and a filter).
			first, filter, two := strings.Cut(rest, " ")
			filter = strings.TrimSpace(filter)
			access, known := accessWords[first]
			switch {
			case !two && known:
				bad("%s %s without a topic filter", kw, first)
				continue
			case !two:
				access, filter = ReadWrite, rest
			case !known:
				bad("unknown access %q: want read, write, readwrite or deny", first)
				continue
			}
			if err := topic.ValidFilter(filter); err != nil {
				bad("invalid topic filter %q: %v", filter, err)
				continue
			}
			r := rule{filter: filter, access: access}
			switch {
			case kw == "pattern":
				f.patterns = addRule(f.patterns, r)
			case inUser:
				f.users[user] = addRule(f.users[user], r)
			default:
				f.anon = addRule(f.anon, r)
			}
		default:
			bad(`unknown line: want "topic", "pattern" or "user"`)
		}
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", name, err))
	}
	return f, errors.Join(errs...)
}

var accessWords = map[string]Access{"read": Read, "write": Write, "readwrite": ReadWrite, "deny": Deny}

// addRule appends r, or puts it first if it denies (Mosquitto checks every
// deny before any grant).
func addRule(rs []rule, r rule) []rule {
	if r.access == Deny {
		return append([]rule{r}, rs...)
	}
	return append(rs, r)
}

// Rules are the lines that apply to one client, patterns filled in.
type Rules struct {
	topics   []rule
	patterns []rule
	// refused: patterns exist and the client id or user name holds + or #,
	// which could widen them: everything the topic lines do not allow is
	// refused.
	refused bool
}

// For returns the rules of a client: its user's topic lines (those before
// any user line when it has no user name), and the patterns with %c and
// %u replaced (a pattern with %u is left out for a client without one).
func (f *File) For(clientID, username string) *Rules {
	r := &Rules{}
	if username == "" {
		r.topics = f.anon
	} else {
		r.topics = f.users[username]
	}
	if len(f.patterns) == 0 {
		return r
	}
	if strings.ContainsAny(clientID, "+#") || strings.ContainsAny(username, "+#") {
		r.refused = true
		return r
	}
	for _, p := range f.patterns {
		if username == "" && strings.Contains(p.filter, "%u") {
			continue
		}
		filter := strings.ReplaceAll(p.filter, "%c", clientID)
		filter = strings.ReplaceAll(filter, "%u", username)
		r.patterns = append(r.patterns, rule{filter: filter, access: p.access})
	}
	return r
}

// Allowed reports whether the client may publish to (write) or receive a
// message on (read) the topic name.
func (r *Rules) Allowed(name string, write bool) bool {
	want := Read
	if write {
		want = Write
	}
	if ok, decided := decide(r.topics, name, want); decided {
		return ok
	}
	if r.refused {
		return false
	}
	ok, _ := decide(r.patterns, name, want)
	return ok
}

// decide walks rs (denies first): a matching deny refuses, the first
// matching grant of want allows; decided is false when neither matched.
func decide(rs []rule, name string, want Access) (ok, decided bool) {
	for _, rl := range rs {
		// A $ topic is only matched by a filter that starts with $. (A
		// pattern can come out empty: "%c" for an empty client id.)
		if rl.filter == "" || name != "" && name[0] == '$' && rl.filter[0] != '$' {
			continue
		}
		if !topic.Match(rl.filter, name) {
			continue
		}
		if rl.access == Deny {
			return false, true
		}
		if rl.access&want != 0 {
			return true, true
		}
	}
	return false, false
}
