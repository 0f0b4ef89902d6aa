// Package topic holds MQTT topic names and filters: their validation, the
// subscription trie the publish path matches every message against, shared
// subscription groups, and the index of retained messages.
//
// The rules are those of the OASIS MQTT 3.1.1 and 5.0 specifications, sections
// 4.7 (Topic Names and Topic Filters), 4.8.2 (Shared Subscriptions) and the
// retain rules of 3.3.1 and 3.8.3. Clause tags such as [MQTT-4.7.2-1] use the
// MQTT 5.0 numbering; where MQTT 3.1.1 numbers the same statement differently
// the 3.1.1 tag follows in parentheses.
//
// Names and filters are compared byte for byte: levels are case-sensitive,
// empty levels are levels, and nothing is normalised [MQTT-4.7.3-4].
//
// The package depends on the standard library only.
package topic

import (
	"errors"
	"strings"
	"unicode/utf8"
)

// MaxLen is the longest topic name or filter in bytes: UTF-8 strings in MQTT
// carry a two-byte length prefix [MQTT-4.7.3-3].
const MaxLen = 65535

// SharePrefix starts the topic filter of a shared subscription [MQTT-4.8.2-1].
const SharePrefix = "$share/"

// Validation errors. They are plain values, compared with errors.Is, so the
// broker can map them to reason codes: typically 0x8F (Topic Filter invalid) in
// a SUBACK and 0x90 (Topic Name invalid) for a PUBLISH, except ErrInvalidUTF8
// and ErrNullChar, which make the packet malformed (0x81) [MQTT-1.5.4-1]
// [MQTT-1.5.4-2].
var (
	// ErrEmpty reports a zero-length name or filter [MQTT-4.7.3-1].
	ErrEmpty = errors.New("topic: empty")
	// ErrTooLong reports a name or filter longer than MaxLen bytes [MQTT-4.7.3-3].
	ErrTooLong = errors.New("topic: longer than 65535 bytes")
	// ErrInvalidUTF8 reports ill-formed UTF-8, including encoded surrogates
	// [MQTT-1.5.4-1] (3.1.1: [MQTT-1.5.3-1]).
	ErrInvalidUTF8 = errors.New("topic: invalid UTF-8")
	// ErrNullChar reports a U+0000 character [MQTT-4.7.3-2] [MQTT-1.5.4-2].
	ErrNullChar = errors.New("topic: contains U+0000")
	// ErrWildcardInName reports '+' or '#' in a topic name [MQTT-4.7.0-1]
	// [MQTT-3.3.2-2] (3.1.1: [MQTT-4.7.1-1]).
	ErrWildcardInName = errors.New("topic: wildcard in topic name")
	// ErrHashNotLast reports a '#' that is not the whole last level of a filter
	// [MQTT-4.7.1-1] (3.1.1: [MQTT-4.7.1-2]).
	ErrHashNotLast = errors.New("topic: '#' must be alone in the last level")
	// ErrPlusNotAlone reports a '+' sharing its level with other characters
	// [MQTT-4.7.1-2] (3.1.1: [MQTT-4.7.1-3]).
	ErrPlusNotAlone = errors.New("topic: '+' must occupy a whole level")
	// ErrShareName reports a shared subscription whose ShareName is empty,
	// contains '+' or '#', or is not followed by '/' [MQTT-4.8.2-1] [MQTT-4.8.2-2].
	ErrShareName = errors.New("topic: invalid share name")
	// ErrShareFilter reports a shared subscription with no topic filter after
	// the ShareName [MQTT-4.8.2-2].
	ErrShareFilter = errors.New("topic: shared subscription without a topic filter")
)

// checkString applies the rules common to names and filters: length, UTF-8
// well-formedness and U+0000.
func checkString(s string) error {
	if len(s) == 0 {
		return ErrEmpty // [MQTT-4.7.3-1]
	}
	if len(s) > MaxLen {
		return ErrTooLong // [MQTT-4.7.3-3]
	}
	// utf8.ValidString rejects overlong forms (so U+0000 can only appear as a
	// 0x00 byte) and encoded surrogates U+D800..U+DFFF [MQTT-1.5.4-1].
	if !utf8.ValidString(s) {
		return ErrInvalidUTF8
	}
	if strings.IndexByte(s, 0) >= 0 {
		return ErrNullChar // [MQTT-4.7.3-2]
	}
	return nil
}

// ValidName reports whether name may be the Topic Name of a PUBLISH: 1 to
// 65535 bytes of well-formed UTF-8 without U+0000 and without the wildcard
// characters '+' and '#'. It returns nil or one of the Err values. An MQTT 5.0
// PUBLISH may carry an empty Topic Name and a Topic Alias: resolve the alias
// before calling ValidName.
func ValidName(name string) error {
	if err := checkString(name); err != nil {
		return err
	}
	// [MQTT-4.7.0-1] [MQTT-3.3.2-2] (3.1.1: [MQTT-4.7.1-1] [MQTT-3.3.2-2])
	if strings.ContainsAny(name, "+#") {
		return ErrWildcardInName
	}
	return nil
}

// ValidFilter reports whether filter is a valid Topic Filter: 1 to 65535 bytes
// of well-formed UTF-8 without U+0000, where '#' appears only as the whole last
// level and '+' only as a whole level. It does not treat "$share/" specially;
// use ParseShared first. It returns nil or one of the Err values.
func ValidFilter(filter string) error {
	if err := checkString(filter); err != nil {
		return err
	}
	rest := filter
	for {
		level, tail, more := strings.Cut(rest, "/")
		if strings.IndexByte(level, '#') >= 0 {
			// [MQTT-4.7.1-1] (3.1.1: [MQTT-4.7.1-2]): on its own or after a
			// separator, and the last character of the filter.
			if level != "#" || more {
				return ErrHashNotLast
			}
		}
		if strings.IndexByte(level, '+') >= 0 && level != "+" {
			return ErrPlusNotAlone // [MQTT-4.7.1-2] (3.1.1: [MQTT-4.7.1-3])
		}
		if !more {
			return nil
		}
		rest = tail
	}
}

// ParseShared splits a shared subscription filter "$share/{group}/{filter}"
// into its ShareName and inner Topic Filter. For a filter that does not start
// with "$share/" it returns shared=false, inner=filter and no error, leaving
// validation to ValidFilter. A malformed shared filter ("$share/", "$share/g",
// "$share//x", a ShareName containing '+' or '#', an empty or invalid inner
// filter) returns shared=true and an error. Shared subscriptions are an
// MQTT 5.0 feature; whether "$share/" means the same for 3.1.1 clients is the
// broker's choice.
func ParseShared(filter string) (group, inner string, shared bool, err error) {
	rest, ok := strings.CutPrefix(filter, SharePrefix)
	if !ok {
		return "", filter, false, nil
	}
	group, inner, ok = strings.Cut(rest, "/")
	// [MQTT-4.8.2-1] a ShareName at least one character long; [MQTT-4.8.2-2]
	// without '/', '+' or '#' (the Cut excludes '/'), followed by '/'.
	if group == "" || !ok || strings.ContainsAny(group, "+#") {
		return "", "", true, ErrShareName
	}
	if inner == "" {
		return "", "", true, ErrShareFilter // [MQTT-4.8.2-2] '/' followed by a Topic Filter
	}
	if err := ValidFilter(filter); err != nil {
		// Checks the whole string so length, UTF-8 and U+0000 cover the group too.
		return "", "", true, err
	}
	return group, inner, true, nil
}

// Match reports whether the topic filter matches the topic name. '+' matches
// exactly one level, possibly empty; a final '#' matches the parent level and
// any number of levels below it; a filter starting with a wildcard never matches
// a name starting with '$'. Both arguments are expected to be valid (ValidFilter,
// ValidName); a misplaced wildcard is compared literally and so matches no
// valid name. Match does not allocate.
func Match(filter, name string) bool {
	// [MQTT-4.7.2-1] wildcards at the first level do not match $-topics such as
	// $SYS; "$SYS/#" does, because its first level is literal.
	if len(name) > 0 && name[0] == '$' && len(filter) > 0 && (filter[0] == '+' || filter[0] == '#') {
		return false
	}
	for {
		flevel, ftail, fmore := strings.Cut(filter, "/")
		if flevel == "#" && !fmore {
			// [MQTT-4.7.1-1] (3.1.1: [MQTT-4.7.1-2]) matches the parent and every
			// level below; we only get here with at least one name level left.
			return true
		}
		nlevel, ntail, nmore := strings.Cut(name, "/")
		if flevel != "+" && flevel != nlevel { // [MQTT-4.7.3-4] byte comparison
			return false
		}
		switch {
		case fmore && nmore:
			filter, name = ftail, ntail
		case !fmore && !nmore:
			return true
		case fmore && !nmore:
			// The name ran out: only a trailing "/#" still matches ("a/#" matches "a").
			return ftail == "#"
		default:
			return false
		}
	}
}
