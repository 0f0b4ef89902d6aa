package topic

import (
	"errors"
	"strings"
	"testing"
)

func TestValidName(t *testing.T) {
	cases := []struct {
		name string
		want error
	}{
		{"a", nil},
		{"a/b/c", nil},
		{"/", nil},
		{"/a", nil},
		{"a/", nil},
		{"a//b", nil},
		{"//", nil},
		{" ", nil},
		{"$SYS/broker/uptime", nil},
		{"sport/tennis/player1", nil},
		{"ünïcödé/日本語", nil},
		{"A/a", nil},
		{strings.Repeat("a", MaxLen), nil},
		{"", ErrEmpty}, // [MQTT-4.7.3-1]
		{strings.Repeat("a", MaxLen+1), ErrTooLong},   // [MQTT-4.7.3-3]
		{strings.Repeat("é", MaxLen/2+1), ErrTooLong}, // length is in bytes, not runes
		{"a\x00b", ErrNullChar},                       // [MQTT-4.7.3-2]
		{"a\xffb", ErrInvalidUTF8},                    // [MQTT-1.5.4-1]
		{"a\xed\xa0\x80", ErrInvalidUTF8},             // encoded surrogate U+D800
		{"a\xc0\x80", ErrInvalidUTF8},                 // overlong U+0000
		{"a/+", ErrWildcardInName},                    // [MQTT-4.7.0-1]
		{"a/#", ErrWildcardInName},                    //
		{"+", ErrWildcardInName},                      //
		{"#", ErrWildcardInName},                      //
		{"a+b", ErrWildcardInName},                    // wildcard chars anywhere, not just whole levels
		{"a#b", ErrWildcardInName},                    //
		{"$share/g/a", nil},                           // a name, not a filter: no share meaning
	}
	for _, c := range cases {
		if got := ValidName(c.name); !errors.Is(got, c.want) {
			t.Errorf("ValidName(%.20q) = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestValidFilter(t *testing.T) {
	cases := []struct {
		filter string
		want   error
	}{
		{"a", nil},
		{"a/b", nil},
		{"#", nil},
		{"+", nil},
		{"/", nil},
		{"/#", nil},
		{"+/+", nil},
		{"a/+/c", nil},
		{"a/#", nil},
		{"+/#", nil},
		{"a//#", nil},
		{"//+//", nil},
		{"$SYS/#", nil},
		{"sport/tennis/+/ranking", nil},
		{"ünïcödé/+", nil},
		{strings.Repeat("a", MaxLen), nil},
		{"", ErrEmpty}, // [MQTT-4.7.3-1]
		{strings.Repeat("a", MaxLen+1), ErrTooLong}, // [MQTT-4.7.3-3]
		{"a/\x00", ErrNullChar},                     // [MQTT-4.7.3-2]
		{"a/\xfe", ErrInvalidUTF8},                  // [MQTT-1.5.4-1]
		{"a/#/b", ErrHashNotLast},                   // [MQTT-4.7.1-1]
		{"#/a", ErrHashNotLast},                     //
		{"a#", ErrHashNotLast},                      //
		{"a/b#", ErrHashNotLast},                    //
		{"#a", ErrHashNotLast},                      //
		{"##", ErrHashNotLast},                      //
		{"#/", ErrHashNotLast},                      // '#' must be the last character
		{"a/#/", ErrHashNotLast},                    //
		{"a+", ErrPlusNotAlone},                     // [MQTT-4.7.1-2]
		{"a/+b", ErrPlusNotAlone},                   //
		{"a/b+/c", ErrPlusNotAlone},                 //
		{"++", ErrPlusNotAlone},                     //
		{"+#", ErrHashNotLast},                      // mixed: '#' reported first
	}
	for _, c := range cases {
		if got := ValidFilter(c.filter); !errors.Is(got, c.want) {
			t.Errorf("ValidFilter(%.20q) = %v, want %v", c.filter, got, c.want)
		}
	}
}

func TestParseShared(t *testing.T) {
	cases := []struct {
		in           string
		group, inner string
		shared       bool
		want         error
	}{
		{"a/b", "", "a/b", false, nil},
		{"$share", "", "$share", false, nil},           // no trailing '/': an ordinary filter
		{"$sharex/g/a", "", "$sharex/g/a", false, nil}, //
		{"$SHARE/g/a", "", "$SHARE/g/a", false, nil},   // case-sensitive
		{"$share/g/a/b", "g", "a/b", true, nil},
		{"$share/g/#", "g", "#", true, nil},
		{"$share/g/+/x", "g", "+/x", true, nil},
		{"$share/g//", "g", "/", true, nil},
		{"$share/g/$SYS/#", "g", "$SYS/#", true, nil},
		{"$share/grp-1.ü/x", "grp-1.ü", "x", true, nil},
		{"$share/", "", "", true, ErrShareName},     // [MQTT-4.8.2-1] ShareName at least one character
		{"$share//x", "", "", true, ErrShareName},   //
		{"$share/g", "", "", true, ErrShareName},    // [MQTT-4.8.2-2] followed by '/'
		{"$share/g+/x", "", "", true, ErrShareName}, // [MQTT-4.8.2-2] no '+'
		{"$share/+/x", "", "", true, ErrShareName},  //
		{"$share/g#/x", "", "", true, ErrShareName}, // no '#'
		{"$share/#", "", "", true, ErrShareName},    //
		{"$share/g/", "", "", true, ErrShareFilter}, // [MQTT-4.8.2-2] followed by a Topic Filter
		{"$share/g/a/#/b", "", "", true, ErrHashNotLast},
		{"$share/g/a+", "", "", true, ErrPlusNotAlone},
		{"$share/g\x00/a", "", "", true, ErrNullChar},
		{"$share/g/" + strings.Repeat("a", MaxLen), "", "", true, ErrTooLong},
	}
	for _, c := range cases {
		g, inner, shared, err := ParseShared(c.in)
		if g != c.group || inner != c.inner || shared != c.shared || !errors.Is(err, c.want) {
			t.Errorf("ParseShared(%.30q) = (%q, %.20q, %v, %v), want (%q, %.20q, %v, %v)",
				c.in, g, inner, shared, err, c.group, c.inner, c.shared, c.want)
		}
	}
}

// matchCases is shared by the Match, Trie and Retained tests.
var matchCases = []struct {
	filter, name string
	want         bool
}{
	// Literal levels, compared byte for byte [MQTT-4.7.3-4].
	{"a", "a", true},
	{"a", "b", false},
	{"a/b", "a/b", true},
	{"a/b", "a", false},
	{"a", "a/b", false},
	{"a/b", "a/b/c", false},
	{"A", "a", false}, // case-sensitive
	{"a/B", "a/b", false},
	{"ü", "ü", true},
	{"u\u0308", "ü", false}, // no Unicode normalisation
	{" a", "a", false},
	{"a ", "a", false},
	// Empty levels are levels.
	{"/a", "/a", true},
	{"/a", "a", false},
	{"a/", "a/", true},
	{"a/", "a", false},
	{"a", "a/", false},
	{"a//b", "a//b", true},
	{"a//b", "a/b", false},
	{"a/b", "a//b", false},
	{"/", "/", true},
	{"/", "//", false},
	{"//", "//", true},
	// '+' matches exactly one level, including an empty one.
	{"+", "a", true},
	{"+", "/", false},
	{"+", "a/b", false},
	{"+/+", "/", true},
	{"+/+", "a/b", true},
	{"+/+", "a", false},
	{"/+", "/", true},
	{"/+", "/a", true},
	{"/+", "a", false},
	{"+/", "a/", true},
	{"+/", "/", true},
	{"a/+", "a/b", true},
	{"a/+", "a/", true},
	{"a/+", "a", false},
	{"a/+", "a/b/c", false},
	{"a/+/c", "a/b/c", true},
	{"a/+/c", "a//c", true},
	{"a/+/c", "a/b/d", false},
	{"a/+/c", "a/c", false},
	{"a/+/c", "a/b/x/c", false},
	{"+/+/+", "a/b/c", true},
	{"+/b/+", "a/b/c", true},
	{"sport/tennis/+", "sport/tennis/player1", true},
	{"sport/tennis/+", "sport/tennis/player1/ranking", false},
	{"sport/+", "sport", false},
	{"sport/+", "sport/", true},
	// '#' matches the parent and any number of levels.
	{"#", "a", true},
	{"#", "a/b/c", true},
	{"#", "/", true},
	{"#", "/a", true},
	{"#", "a/", true},
	{"a/#", "a", true},
	{"a/#", "a/", true},
	{"a/#", "a/b", true},
	{"a/#", "a/b/c", true},
	{"a/#", "a//", true},
	{"a/#", "ab", false},
	{"a/#", "b/a", false},
	{"a/#", "/a", false},
	{"/#", "/", true},
	{"/#", "/a/b", true},
	{"/#", "a", false},
	{"a/b/#", "a", false},
	{"a/b/#", "a/b", true},
	{"+/#", "a", true},
	{"+/#", "a/b/c", true},
	{"+/#", "/", true},
	{"a/+/#", "a/b", true},
	{"a/+/#", "a", false},
	{"a//#", "a/", true},
	{"a//#", "a", false},
	{"sport/#", "sport", true},
	{"sport/tennis/player1/#", "sport/tennis/player1", true},
	{"sport/tennis/player1/#", "sport/tennis/player1/ranking", true},
	{"sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true},
	// [MQTT-4.7.2-1] wildcards at the first level never match $-topics.
	{"#", "$SYS/broker/uptime", false},
	{"#", "$SYS", false},
	{"#", "$", false},
	{"+", "$SYS", false},
	{"+/#", "$SYS/x", false},
	{"+/broker/uptime", "$SYS/broker/uptime", false},
	{"+/monitor/Clients", "$SYS/monitor/Clients", false},
	{"$SYS/#", "$SYS/broker/uptime", true},
	{"$SYS/#", "$SYS", true},
	{"$SYS/+/uptime", "$SYS/broker/uptime", true},
	{"$SYS/monitor/+", "$SYS/monitor/Clients", true},
	{"$SYS/#", "$sys/x", false},
	{"$+/#", "$SYS/x", false}, // not a valid filter; never a wildcard
	{"a/#", "a/$b", true},     // the rule is about the first level only
	{"a/+", "a/$b", true},
	{"+/$b", "a/$b", true},
	{"#", "a$/b", true},
	// Misplaced wildcards (invalid filters) match nothing.
	{"a/#/b", "a/x/b", false},
	{"a/#/b", "a/b", false},
	{"a+", "ab", false},
	{"#a", "a", false},
}

func TestMatch(t *testing.T) {
	for _, c := range matchCases {
		if got := Match(c.filter, c.name); got != c.want {
			t.Errorf("Match(%q, %q) = %v, want %v", c.filter, c.name, got, c.want)
		}
	}
}

func TestMatchDoesNotAllocate(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { Match("a/+/c/#", "a/b/c/d/e") }); n != 0 {
		t.Errorf("Match allocs = %v, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { _ = ValidFilter("a/+/c/#") }); n != 0 {
		t.Errorf("ValidFilter allocs = %v, want 0", n)
	}
}
