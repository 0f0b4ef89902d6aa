package estest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// obj is a JSON object written with its keys in the order Elasticsearch writes them.
type obj []kv

type kv struct {
	k string
	v any
}

// o builds an obj from alternating keys and values.
func o(pairs ...any) obj {
	out := make(obj, 0, len(pairs)/2)
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, kv{pairs[i].(string), pairs[i+1]})
	}
	return out
}

// dbl is a Java double, written as Jackson writes one (Double.toString): 3.0, 21.5, 1.7040672E12.
type dbl float64

func javaDouble(f float64) string {
	switch {
	case math.IsNaN(f) || math.IsInf(f, 0):
		return "null"
	case f == 0:
		return "0.0"
	}
	a := math.Abs(f)
	if a >= 1e-3 && a < 1e7 {
		s := strconv.FormatFloat(f, 'f', -1, 64)
		if !strings.Contains(s, ".") {
			s += ".0"
		}
		return s
	}
	s := strconv.FormatFloat(f, 'E', -1, 64)
	mant, exp, _ := strings.Cut(s, "E")
	if !strings.Contains(mant, ".") {
		mant += ".0"
	}
	e, _ := strconv.Atoi(exp)
	return mant + "E" + strconv.Itoa(e)
}

// encode writes v as JSON without HTML escaping and without re-compacting stored sources.
func encode(b *bytes.Buffer, v any) {
	switch x := v.(type) {
	case nil:
		b.WriteString("null")
	case obj:
		b.WriteByte('{')
		for i, p := range x {
			if i > 0 {
				b.WriteByte(',')
			}
			encodeString(b, p.k)
			b.WriteByte(':')
			encode(b, p.v)
		}
		b.WriteByte('}')
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			encodeString(b, k)
			b.WriteByte(':')
			encode(b, x[k])
		}
		b.WriteByte('}')
	case []any:
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteByte(',')
			}
			encode(b, e)
		}
		b.WriteByte(']')
	case []obj:
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteByte(',')
			}
			encode(b, e)
		}
		b.WriteByte(']')
	case []string:
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteByte(',')
			}
			encodeString(b, e)
		}
		b.WriteByte(']')
	case string:
		encodeString(b, x)
	case bool:
		b.WriteString(strconv.FormatBool(x))
	case int:
		b.WriteString(strconv.Itoa(x))
	case int64:
		b.WriteString(strconv.FormatInt(x, 10))
	case dbl:
		b.WriteString(javaDouble(float64(x)))
	case float64:
		b.WriteString(javaDouble(x))
	case json.Number:
		b.WriteString(string(x))
	case json.RawMessage:
		b.Write(x)
	default:
		j, err := json.Marshal(x)
		if err != nil {
			panic(err)
		}
		b.Write(j)
	}
}

func encodeString(b *bytes.Buffer, s string) {
	var t bytes.Buffer
	e := json.NewEncoder(&t)
	e.SetEscapeHTML(false)
	_ = e.Encode(s)
	b.Write(bytes.TrimSuffix(t.Bytes(), []byte("\n")))
}

// jv is a parsed JSON value that remembers where it started, so errors can carry
// Elasticsearch's "[line:col]" locations.
type jv struct {
	off   int
	kind  byte // 'o' object, 'a' array, 's' string, 'n' number, 'b' bool, 'z' null
	keys  []string
	vals  []*jv
	items []*jv
	s     string // string value, or number literal
	b     bool
}

func (v *jv) field(k string) *jv {
	for i, key := range v.keys {
		if key == k {
			return v.vals[i]
		}
	}
	return nil
}

// any converts to the plain Go form used for evaluation: map[string]any, []any, json.Number, string, bool, nil.
func (v *jv) any() any {
	switch v.kind {
	case 'o':
		m := make(map[string]any, len(v.keys))
		for i, k := range v.keys {
			m[k] = v.vals[i].any()
		}
		return m
	case 'a':
		a := make([]any, len(v.items))
		for i, e := range v.items {
			a[i] = e.any()
		}
		return a
	case 's':
		return v.s
	case 'n':
		return json.Number(v.s)
	case 'b':
		return v.b
	}
	return nil
}

// ordered converts to the ordered output form, for filter_path.
func (v *jv) ordered() any {
	switch v.kind {
	case 'o':
		out := make(obj, len(v.keys))
		for i, k := range v.keys {
			out[i] = kv{k, v.vals[i].ordered()}
		}
		return out
	case 'a':
		a := make([]any, len(v.items))
		for i, e := range v.items {
			a[i] = e.ordered()
		}
		return a
	}
	return v.any()
}

// jsonErr is a syntax error at a byte offset.
type jsonErr struct {
	off int
	msg string
	eof bool
}

func (e *jsonErr) Error() string { return e.msg }

type jparser struct {
	d []byte
	i int
}

// parseJSON parses exactly one JSON value (surrounded by optional whitespace) with
// Jackson's strictness as Elasticsearch configures it: duplicate keys are errors.
func parseJSON(d []byte) (*jv, error) {
	p := &jparser{d: d}
	v, err := p.value()
	if err != nil {
		return nil, err
	}
	p.ws()
	if p.i < len(p.d) {
		return nil, p.unexpected("expected end of input")
	}
	return v, nil
}

func (p *jparser) ws() {
	for p.i < len(p.d) {
		switch p.d[p.i] {
		case ' ', '\t', '\r', '\n':
			p.i++
		default:
			return
		}
	}
}

func (p *jparser) eof(what string) error {
	return &jsonErr{off: p.i, msg: "Unexpected end-of-input: " + what, eof: true}
}

func (p *jparser) unexpected(what string) error {
	r, _ := utf8.DecodeRune(p.d[p.i:])
	return &jsonErr{off: p.i, msg: fmt.Sprintf("Unexpected character ('%c' (code %d)): %s", r, r, what)}
}

func (p *jparser) value() (*jv, error) {
	p.ws()
	if p.i >= len(p.d) {
		return nil, p.eof("expected a value")
	}
	start := p.i
	switch c := p.d[p.i]; {
	case c == '{':
		p.i++
		v := &jv{off: start, kind: 'o'}
		p.ws()
		if p.i < len(p.d) && p.d[p.i] == '}' {
			p.i++
			return v, nil
		}
		for {
			p.ws()
			if p.i >= len(p.d) {
				return nil, p.eof("expected close marker for Object")
			}
			if p.d[p.i] != '"' {
				return nil, p.unexpected("was expecting double-quote to start field name")
			}
			k, err := p.str()
			if err != nil {
				return nil, err
			}
			if v.field(k) != nil {
				return nil, &jsonErr{off: p.i, msg: fmt.Sprintf("Duplicate field '%s'", k)}
			}
			p.ws()
			if p.i >= len(p.d) {
				return nil, p.eof("expected a colon to separate field name and value")
			}
			if p.d[p.i] != ':' {
				return nil, p.unexpected("was expecting a colon to separate field name and value")
			}
			p.i++
			e, err := p.value()
			if err != nil {
				return nil, err
			}
			v.keys, v.vals = append(v.keys, k), append(v.vals, e)
			p.ws()
			if p.i >= len(p.d) {
				return nil, p.eof("expected close marker for Object")
			}
			if p.d[p.i] == '}' {
				p.i++
				return v, nil
			}
			if p.d[p.i] != ',' {
				return nil, p.unexpected("was expecting comma to separate Object entries")
			}
			p.i++
		}
	case c == '[':
		p.i++
		v := &jv{off: start, kind: 'a'}
		p.ws()
		if p.i < len(p.d) && p.d[p.i] == ']' {
			p.i++
			return v, nil
		}
		for {
			e, err := p.value()
			if err != nil {
				return nil, err
			}
			v.items = append(v.items, e)
			p.ws()
			if p.i >= len(p.d) {
				return nil, p.eof("expected close marker for Array")
			}
			if p.d[p.i] == ']' {
				p.i++
				return v, nil
			}
			if p.d[p.i] != ',' {
				return nil, p.unexpected("was expecting comma to separate Array entries")
			}
			p.i++
		}
	case c == '"':
		s, err := p.str()
		if err != nil {
			return nil, err
		}
		return &jv{off: start, kind: 's', s: s}, nil
	case c == '-' || (c >= '0' && c <= '9'):
		return p.num()
	default:
		for _, lit := range []string{"true", "false", "null"} {
			if bytes.HasPrefix(p.d[p.i:], []byte(lit)) {
				p.i += len(lit)
				v := &jv{off: start, kind: 'b', b: lit == "true"}
				if lit == "null" {
					v.kind = 'z'
				}
				return v, nil
			}
		}
		return nil, p.unexpected("expected a valid value (JSON String, Number, Array, Object or token 'null', 'true' or 'false')")
	}
}

func (p *jparser) num() (*jv, error) {
	start := p.i
	digits := func() int {
		n := 0
		for p.i < len(p.d) && p.d[p.i] >= '0' && p.d[p.i] <= '9' {
			p.i++
			n++
		}
		return n
	}
	if p.d[p.i] == '-' {
		p.i++
	}
	intStart := p.i
	if digits() == 0 {
		if p.i >= len(p.d) {
			return nil, p.eof("expected digit after minus sign")
		}
		return nil, p.unexpected("expected digit (0-9) to follow minus sign, for valid numeric value")
	}
	if p.d[intStart] == '0' && p.i-intStart > 1 {
		return nil, &jsonErr{off: intStart, msg: "Invalid numeric value: Leading zeroes not allowed"}
	}
	if p.i < len(p.d) && p.d[p.i] == '.' {
		p.i++
		if digits() == 0 {
			return nil, &jsonErr{off: p.i, msg: "Unexpected character: Decimal point not followed by a digit"}
		}
	}
	if p.i < len(p.d) && (p.d[p.i] == 'e' || p.d[p.i] == 'E') {
		p.i++
		if p.i < len(p.d) && (p.d[p.i] == '+' || p.d[p.i] == '-') {
			p.i++
		}
		if digits() == 0 {
			return nil, &jsonErr{off: p.i, msg: "Unexpected character: Exponent indicator not followed by a digit"}
		}
	}
	return &jv{off: start, kind: 'n', s: string(p.d[start:p.i])}, nil
}

func (p *jparser) str() (string, error) {
	p.i++ // opening quote
	var sb strings.Builder
	for {
		if p.i >= len(p.d) {
			return "", p.eof("was expecting closing quote for a string value")
		}
		c := p.d[p.i]
		switch {
		case c == '"':
			p.i++
			return sb.String(), nil
		case c < 0x20:
			return "", &jsonErr{off: p.i, msg: fmt.Sprintf("Illegal unquoted character ((CTRL-CHAR, code %d)): has to be escaped using backslash to be included in string value", c)}
		case c == '\\':
			if p.i+1 >= len(p.d) {
				return "", p.eof("was expecting closing quote for a string value")
			}
			e := p.d[p.i+1]
			p.i += 2
			switch e {
			case '"', '\\', '/':
				sb.WriteByte(e)
			case 'b':
				sb.WriteByte('\b')
			case 'f':
				sb.WriteByte('\f')
			case 'n':
				sb.WriteByte('\n')
			case 'r':
				sb.WriteByte('\r')
			case 't':
				sb.WriteByte('\t')
			case 'u':
				r, ok := p.hex4()
				if !ok {
					return "", &jsonErr{off: p.i, msg: "Unexpected character: expected a hex-digit for character escape sequence"}
				}
				if utf16.IsSurrogate(r) && bytes.HasPrefix(p.d[p.i:], []byte(`\u`)) {
					p.i += 2
					r2, ok := p.hex4()
					if ok {
						r = utf16.DecodeRune(r, r2)
					}
				}
				sb.WriteRune(r)
			default:
				return "", &jsonErr{off: p.i - 1, msg: fmt.Sprintf("Unrecognized character escape '%c' (code %d)", e, e)}
			}
		default:
			sb.WriteByte(c)
			p.i++
		}
	}
}

func (p *jparser) hex4() (rune, bool) {
	if p.i+4 > len(p.d) {
		return 0, false
	}
	n, err := strconv.ParseUint(string(p.d[p.i:p.i+4]), 16, 32)
	if err != nil {
		return 0, false
	}
	p.i += 4
	return rune(n), true
}

// loc renders a byte offset as Elasticsearch's 1-based "[line:col]".
func loc(d []byte, off int) string {
	if off > len(d) {
		off = len(d)
	}
	line, col := 1, 1
	for _, c := range d[:off] {
		if c == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
	}
	return fmt.Sprintf("[%d:%d]", line, col)
}

// filterPath applies Elasticsearch's filter_path: dotted include patterns with * and **.
// Objects and arrays left empty disappear, as they do in Elasticsearch.
func filterPath(v any, patterns [][]string) (any, bool) {
	for _, p := range patterns {
		if len(p) == 0 {
			return v, true
		}
	}
	switch x := v.(type) {
	case json.RawMessage:
		j, err := parseJSON(x)
		if err != nil {
			return nil, false
		}
		return filterPath(j.ordered(), patterns)
	case obj:
		var out obj
		for _, e := range x {
			var next [][]string
			for _, p := range patterns {
				next = append(next, advance(p, e.k)...)
			}
			if len(next) == 0 {
				continue
			}
			if fv, ok := filterPath(e.v, next); ok {
				out = append(out, kv{e.k, fv})
			}
		}
		return out, len(out) > 0
	case map[string]any:
		var ordered obj
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			ordered = append(ordered, kv{k, x[k]})
		}
		return filterPath(ordered, patterns)
	case []any:
		var out []any
		for _, e := range x {
			if fv, ok := filterPath(e, patterns); ok {
				out = append(out, fv)
			}
		}
		return out, len(out) > 0
	case []obj:
		a := make([]any, len(x))
		for i, e := range x {
			a[i] = e
		}
		return filterPath(a, patterns)
	}
	return nil, false
}

func advance(p []string, key string) [][]string {
	if p[0] == "**" {
		if len(p) == 1 {
			return [][]string{{}}
		}
		return append(advance(p[1:], key), p)
	}
	if glob(p[0], key) {
		return [][]string{p[1:]}
	}
	return nil
}
