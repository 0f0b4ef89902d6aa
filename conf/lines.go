package conf

import (
	"fmt"
	"strconv"
	"strings"
)

// lineIndex maps key paths such as "listener[1].tls.cert_file" to the line
// (1-based) where the key is written; a table maps to its header line. It
// exists because BurntSushi/toml does not export key positions.
type lineIndex map[string]int

// line returns the line of path, or of its nearest ancestor that is written
// in the file (so a missing key points at its table's header), or 0.
func (ix lineIndex) line(path string) int {
	for path != "" {
		if n, ok := ix[path]; ok {
			return n
		}
		path = parentKey(path)
	}
	return 0
}

// parentKey strips the last ".key" or "[i]" from path.
func parentKey(path string) string {
	cut, quoted := 0, false
	for i := 0; i < len(path); i++ {
		switch c := path[i]; {
		case quoted && c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case !quoted && (c == '.' || c == '['):
			cut = i
		}
	}
	return path[:cut]
}

// joinKey appends key to the path prefix, quoting key unless it is bare.
func joinKey(prefix, key string) string {
	if !isBareKey(key) {
		key = strconv.Quote(key)
	}
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

func isBareKey(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isBareChar(s[i]) {
			return false
		}
	}
	return s != ""
}

func isBareChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// indexLines indexes the keys of a TOML document that has already been
// parsed successfully; on malformed input it still terminates but may miss keys.
func indexLines(src string) lineIndex {
	s := &lineScanner{src: src, line: 1, ix: lineIndex{}, arrays: map[string]int{}}
	for s.skipSpace(true); s.pos < len(s.src); s.skipSpace(true) {
		start := s.pos
		if s.src[s.pos] == '[' {
			s.header()
		} else if keys := s.keys(); s.skipSpace(false) && s.peek() == '=' {
			s.pos++
			s.skipSpace(false)
			s.value(s.record(s.table, keys))
		}
		for s.pos < len(s.src) && s.src[s.pos] != '\n' { // the rest is a comment
			s.pos++
		}
		if s.pos == start {
			s.pos++
		}
	}
	return s.ix
}

type lineScanner struct {
	src    string
	pos    int
	line   int
	ix     lineIndex
	arrays map[string]int // path of an array of tables -> elements seen so far
	table  string         // path of the current table, with array indexes
}

func (s *lineScanner) peek() byte {
	if s.pos < len(s.src) {
		return s.src[s.pos]
	}
	return 0
}

func (s *lineScanner) set(path string) {
	if _, ok := s.ix[path]; !ok {
		s.ix[path] = s.line
	}
}

// skipSpace skips blanks and, if newlines, line breaks and comments too. It
// always returns true so that it can be used in a condition.
func (s *lineScanner) skipSpace(newlines bool) bool {
	for s.pos < len(s.src) {
		switch s.src[s.pos] {
		case ' ', '\t', '\r':
		case '\n':
			if !newlines {
				return true
			}
			s.line++
		case '#':
			if !newlines {
				return true
			}
			for s.pos < len(s.src) && s.src[s.pos] != '\n' {
				s.pos++
			}
			continue
		default:
			return true
		}
		s.pos++
	}
	return true
}

// header reads "[a.b]" or "[[a.b]]", counting array elements so that the
// table path gets the index of the element being defined.
func (s *lineScanner) header() {
	s.pos++
	array := s.peek() == '['
	if array {
		s.pos++
	}
	keys := s.keys()
	path := ""
	for i, k := range keys {
		path = joinKey(path, k)
		if array && i == len(keys)-1 {
			s.arrays[path]++
		}
		s.set(path)
		if n := s.arrays[path]; n > 0 {
			path = fmt.Sprintf("%s[%d]", path, n-1)
			s.set(path)
		}
	}
	s.table = path
}

// record sets the line of each prefix of the dotted key under table.
func (s *lineScanner) record(table string, keys []string) string {
	for _, k := range keys {
		table = joinKey(table, k)
		s.set(table)
	}
	return table
}

// keys reads a dotted key such as `a."b.c".d`.
func (s *lineScanner) keys() []string {
	var keys []string
	for {
		s.skipSpace(false)
		start := s.pos
		switch s.peek() {
		case '"', '\'':
			raw := s.str()
			k, err := strconv.Unquote(raw)
			if (raw[0] == '\'' || err != nil) && len(raw) >= 2 { // 'literal', or an escape Go lacks
				k = raw[1 : len(raw)-1]
			}
			keys = append(keys, k)
		default:
			for s.pos < len(s.src) && isBareChar(s.src[s.pos]) {
				s.pos++
			}
			if s.pos == start {
				return keys
			}
			keys = append(keys, s.src[start:s.pos])
		}
		s.skipSpace(false)
		if s.peek() != '.' {
			return keys
		}
		s.pos++
	}
}

// value skips a value, recording the lines of array elements (path[i]) and
// of inline table keys.
func (s *lineScanner) value(path string) {
	switch s.peek() {
	case '"', '\'':
		s.str()
	case '[', '{':
		closing := byte(']')
		if s.peek() == '{' {
			closing = '}'
		}
		s.pos++
		for i := 0; ; i++ {
			start := s.pos
			s.skipSpace(true)
			if s.pos >= len(s.src) || s.src[s.pos] == closing {
				s.pos++
				return
			}
			if closing == ']' {
				el := fmt.Sprintf("%s[%d]", path, i)
				s.set(el)
				s.value(el)
			} else if keys := s.keys(); s.skipSpace(false) && s.peek() == '=' {
				s.pos++
				s.skipSpace(false)
				s.value(s.record(path, keys))
			}
			s.skipSpace(true)
			if s.peek() == ',' {
				s.pos++
			}
			if s.pos == start {
				return
			}
		}
	default: // number, boolean or datetime
		for s.pos < len(s.src) && !strings.ContainsRune(",]}\n#", rune(s.src[s.pos])) {
			s.pos++
		}
	}
}

// str skips a basic, literal or multi-line string and returns its raw text
// with the quotes.
func (s *lineScanner) str() string {
	start, q := s.pos, s.src[s.pos]
	triple := strings.Repeat(string(q), 3)
	multi := strings.HasPrefix(s.src[s.pos:], triple)
	if multi {
		s.pos += 3
	} else {
		s.pos++
	}
	for s.pos < len(s.src) {
		switch c := s.src[s.pos]; {
		case c == '\\' && q == '"':
			if s.pos+1 < len(s.src) && s.src[s.pos+1] == '\n' {
				s.line++
			}
			s.pos += 2
			continue
		case c == '\n':
			if !multi {
				return s.src[start:s.pos]
			}
			s.line++
		case multi && strings.HasPrefix(s.src[s.pos:], triple):
			s.pos += 3
			for s.peek() == q { // up to two quotes may end the content
				s.pos++
			}
			return s.src[start:s.pos]
		case !multi && c == q:
			s.pos++
			return s.src[start:s.pos]
		}
		s.pos++
	}
	return s.src[start:s.pos]
}
