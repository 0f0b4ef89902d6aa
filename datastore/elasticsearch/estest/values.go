package estest

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// glob matches Elasticsearch's simple wildcard patterns, where only * is special.
func glob(pattern, s string) bool {
	star := strings.IndexByte(pattern, '*')
	if star < 0 {
		return pattern == s
	}
	if !strings.HasPrefix(s, pattern[:star]) {
		return false
	}
	s, pattern = s[star:], pattern[star+1:]
	if pattern == "" {
		return true
	}
	for i := 0; i <= len(s); i++ {
		if glob(pattern, s[i:]) {
			return true
		}
	}
	return false
}

// globsOverlap reports whether some name matches both patterns.
func globsOverlap(p, q string) bool {
	switch {
	case p == "" && q == "":
		return true
	case p != "" && p[0] == '*':
		return globsOverlap(p[1:], q) || (q != "" && globsOverlap(p, q[1:]))
	case q != "" && q[0] == '*':
		return globsOverlap(q, p)
	case p == "" || q == "":
		return false
	}
	return p[0] == q[0] && globsOverlap(p[1:], q[1:])
}

// Date formats. Elasticsearch's default for date fields is "strict_date_optional_time||epoch_millis".
const defaultDateFormat = "strict_date_optional_time||epoch_millis"

var isoDate = regexp.MustCompile(`^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2})(?::(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?(Z|[+-]\d{2}(?::?\d{2})?)?)?)?)?$`)

var epochNum = regexp.MustCompile(`^-?\d+(\.\d+)?$`)

// knownDateFormats are the named formats estest can parse and print.
var knownDateFormats = map[string]bool{
	"strict_date_optional_time": true, "date_optional_time": true, "strict_date_optional_time_nanos": true,
	"strict_date_time": true, "date_time": true, "strict_date_time_no_millis": true, "date_time_no_millis": true,
	"epoch_millis": true, "epoch_second": true, "strict_date": true, "date": true, "yyyy-MM-dd": true,
}

func checkDateFormat(format string) error {
	for _, f := range strings.Split(format, "||") {
		if !knownDateFormats[f] {
			return fmt.Errorf("date format [%s]", f)
		}
	}
	return nil
}

// parseDate parses s with any of the "||"-separated formats, returning epoch milliseconds.
func parseDate(s, format string) (int64, bool) {
	for _, f := range strings.Split(format, "||") {
		switch f {
		case "epoch_millis", "epoch_second":
			if !epochNum.MatchString(s) {
				continue
			}
			x, err := strconv.ParseFloat(s, 64)
			if err != nil {
				continue
			}
			if f == "epoch_second" {
				x *= 1000
			}
			return int64(math.Floor(x)), true
		case "strict_date", "date", "yyyy-MM-dd":
			if len(s) == 10 {
				if t, err := time.Parse("2006-01-02", s); err == nil {
					return t.UnixMilli(), true
				}
			}
		default:
			m := isoDate.FindStringSubmatch(s)
			if m == nil {
				continue
			}
			if strings.HasPrefix(f, "strict_date_time") || strings.HasPrefix(f, "date_time") {
				if m[6] == "" || m[8] == "" || (strings.Contains(f, "no_millis") != (m[7] == "")) {
					continue
				}
			}
			if t, ok := isoTime(m); ok {
				return t.UnixMilli(), true
			}
		}
	}
	return 0, false
}

func isoTime(m []string) (time.Time, bool) {
	n := func(s string, def int) int {
		if s == "" {
			return def
		}
		v, _ := strconv.Atoi(s)
		return v
	}
	year, mon, day, hh, mm, ss := n(m[1], 0), n(m[2], 1), n(m[3], 1), n(m[4], 0), n(m[5], 0), n(m[6], 0)
	if mon < 1 || mon > 12 || day < 1 || day > 31 || hh > 23 || mm > 59 || ss > 59 {
		return time.Time{}, false
	}
	nanos := 0
	if m[7] != "" {
		nanos = n((m[7] + "000000000")[:9], 0)
	}
	loc := time.UTC
	if z := m[8]; z != "" && z != "Z" {
		sign := 1
		if z[0] == '-' {
			sign = -1
		}
		z = strings.ReplaceAll(z[1:], ":", "")
		off := n(z[:2], 0) * 3600
		if len(z) == 4 {
			off += n(z[2:], 0) * 60
		}
		loc = time.FixedZone("", sign*off)
	}
	t := time.Date(year, time.Month(mon), day, hh, mm, ss, nanos, loc)
	if t.Day() != day { // 2024-02-30 and the like
		return time.Time{}, false
	}
	return t, true
}

// formatDate prints epoch milliseconds with the first of the "||"-separated formats.
func formatDate(ms int64, format string) string {
	f, _, _ := strings.Cut(format, "||")
	t := time.UnixMilli(ms).UTC()
	switch f {
	case "epoch_millis":
		return strconv.FormatInt(ms, 10)
	case "epoch_second":
		return strconv.FormatInt(ms/1000, 10)
	case "strict_date", "date", "yyyy-MM-dd":
		return t.Format("2006-01-02")
	case "strict_date_time_no_millis", "date_time_no_millis":
		return t.Format("2006-01-02T15:04:05Z")
	case "strict_date_optional_time_nanos":
		return t.Format("2006-01-02T15:04:05.000000000Z")
	}
	return t.Format("2006-01-02T15:04:05.000Z")
}

var mathOp = regexp.MustCompile(`^([+-]\d+[yMwdhHms]|/[yMwdhHms])`)

// parseDateMath evaluates "now-5m", "now/d", "2024-01-01||+1M/d" and plain dates, in UTC.
// roundUp selects the end of a rounded unit, as gt and lte do.
func parseDateMath(s, format string, now time.Time, roundUp bool) (int64, error) {
	var t time.Time
	var rest string
	switch {
	case strings.HasPrefix(s, "now"):
		t, rest = now.UTC(), s[3:]
	default:
		base, math, found := strings.Cut(s, "||")
		ms, ok := parseDate(base, format)
		if !ok {
			return 0, fmt.Errorf("failed to parse date field [%s] with format [%s]", s, format)
		}
		t = time.UnixMilli(ms).UTC()
		if found {
			rest = math
		}
	}
	for rest != "" {
		op := mathOp.FindString(rest)
		if op == "" {
			return 0, fmt.Errorf("failed to parse date field [%s] with format [%s]: [unit [%s] not supported for date math]", s, format, rest)
		}
		rest = rest[len(op):]
		unit := op[len(op)-1]
		if op[0] == '/' {
			t = roundDate(t, unit)
			if roundUp {
				t = addUnit(t, unit, 1).Add(-time.Millisecond)
			}
			continue
		}
		n, _ := strconv.Atoi(op[1 : len(op)-1])
		if op[0] == '-' {
			n = -n
		}
		t = addUnit(t, unit, n)
	}
	return t.UnixMilli(), nil
}

func addUnit(t time.Time, unit byte, n int) time.Time {
	switch unit {
	case 'y':
		return t.AddDate(n, 0, 0)
	case 'M':
		return t.AddDate(0, n, 0)
	case 'w':
		return t.AddDate(0, 0, 7*n)
	case 'd':
		return t.AddDate(0, 0, n)
	case 'h', 'H':
		return t.Add(time.Duration(n) * time.Hour)
	case 'm':
		return t.Add(time.Duration(n) * time.Minute)
	}
	return t.Add(time.Duration(n) * time.Second)
}

func roundDate(t time.Time, unit byte) time.Time {
	y, m, d := t.Date()
	switch unit {
	case 'y':
		return time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC)
	case 'M':
		return time.Date(y, m, 1, 0, 0, 0, 0, time.UTC)
	case 'w':
		day := time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
		return day.AddDate(0, 0, -((int(day.Weekday()) + 6) % 7)) // weeks start on Monday
	case 'd':
		return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
	case 'h', 'H':
		return t.Truncate(time.Hour)
	case 'm':
		return t.Truncate(time.Minute)
	}
	return t.Truncate(time.Second)
}

// parseTimeValue parses Elasticsearch time values such as "500ms", "30s", "5m", "1h", "2d"; "-1" is -1.
func parseTimeValue(s string) (time.Duration, bool) {
	if s == "-1" {
		return -1, true
	}
	for _, u := range []struct {
		suffix string
		d      time.Duration
	}{{"nanos", time.Nanosecond}, {"micros", time.Microsecond}, {"ms", time.Millisecond}, {"s", time.Second}, {"m", time.Minute}, {"h", time.Hour}, {"d", 24 * time.Hour}} {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			n, err := strconv.ParseInt(num, 10, 64)
			if err != nil || n < 0 {
				return 0, false
			}
			return time.Duration(n) * u.d, true
		}
	}
	return 0, false
}

// Field types.
var (
	intTypes   = map[string]bool{"long": true, "integer": true, "short": true, "byte": true, "unsigned_long": true}
	floatTypes = map[string]bool{"double": true, "float": true, "half_float": true, "scaled_float": true}
	// storedOnly are real Elasticsearch field types estest stores and validates loosely but cannot query.
	storedOnly = map[string]bool{"ip": true, "geo_point": true, "geo_shape": true, "flattened": true, "binary": true,
		"wildcard": true, "constant_keyword": true, "match_only_text": true, "search_as_you_type": true, "dense_vector": true,
		"sparse_vector": true, "histogram": true, "integer_range": true, "float_range": true, "long_range": true,
		"double_range": true, "date_range": true, "ip_range": true, "version": true, "alias": true, "date_nanos": true,
		"token_count": true, "rank_feature": true, "rank_features": true, "percolator": true, "join": true, "semantic_text": true,
		"annotated_text": true, "completion": true, "point": true, "shape": true, "aggregate_metric_double": true}
)

func isNumeric(t string) bool { return intTypes[t] || floatTypes[t] }

// val is one indexed value of a field: a string (keyword), or a number (numeric, date millis, boolean 0/1).
type val struct {
	s   string
	n   float64
	num bool
}

func (a val) less(b val) bool {
	if a.num {
		return a.n < b.n
	}
	return a.s < b.s
}

// field is a resolved mapping for a field path in one index.
type field struct {
	name   string // full path as queried
	src    string // where the values live in _source (differs for multi-fields)
	typ    string // mapping type; "" when unmapped
	def    map[string]any
	format string // dates
}

// convert turns one source value into the value Elasticsearch would index for the field,
// applying coercion and the precision of the field type. ok is false when the value is malformed.
func (f *field) convert(v any) (val, bool) {
	switch {
	case f.typ == "keyword":
		switch x := v.(type) {
		case string:
			if above, ok := num(f.def["ignore_above"]); ok && len([]rune(x)) > int(above) {
				return val{}, false
			}
			return val{s: x}, true
		case json.Number:
			return val{s: string(x)}, true
		case bool:
			return val{s: strconv.FormatBool(x)}, true
		}
	case isNumeric(f.typ):
		var n float64
		switch x := v.(type) {
		case json.Number:
			p, err := strconv.ParseFloat(string(x), 64)
			if err != nil {
				return val{}, false
			}
			n = p
		case string:
			p, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
			if err != nil || math.IsNaN(p) || math.IsInf(p, 0) {
				return val{}, false
			}
			n = p
		default:
			return val{}, false
		}
		return val{n: f.precision(n), num: true}, true
	case f.typ == "date":
		var s string
		switch x := v.(type) {
		case json.Number:
			s = string(x)
		case string:
			s = x
		default:
			return val{}, false
		}
		ms, ok := parseDate(s, f.format)
		return val{n: float64(ms), num: true}, ok
	case f.typ == "boolean":
		switch x := v.(type) {
		case bool:
			return val{n: b2f(x), num: true}, true
		case string:
			if x == "true" || x == "false" || x == "" {
				return val{n: b2f(x == "true"), num: true}, true
			}
		}
	case f.typ == "text":
		switch x := v.(type) {
		case string:
			return val{s: x}, true
		case json.Number:
			return val{s: string(x)}, true
		case bool:
			return val{s: strconv.FormatBool(x)}, true
		}
	default: // stored-only types: accept scalars
		switch v.(type) {
		case string, json.Number, bool:
			return val{s: fmt.Sprint(v)}, true
		}
	}
	return val{}, false
}

// precision rounds n the way the field type stores it: integers truncate (coerce),
// float is 32-bit, half_float 16-bit, scaled_float multiplies by its scaling_factor.
func (f *field) precision(n float64) float64 {
	switch f.typ {
	case "long", "integer", "short", "byte", "unsigned_long":
		return math.Trunc(n)
	case "float":
		return float64(float32(n))
	case "half_float":
		return halfFloat(n)
	case "scaled_float":
		sf, ok := num(f.def["scaling_factor"])
		if !ok || sf == 0 {
			return n
		}
		return math.Round(n*sf) / sf
	}
	return n
}

// halfFloat rounds to the nearest IEEE 754 binary16 value.
func halfFloat(n float64) float64 {
	if n == 0 || math.IsNaN(n) || math.IsInf(n, 0) {
		return n
	}
	exp := math.Floor(math.Log2(math.Abs(n)))
	if exp < -14 {
		exp = -14
	}
	step := math.Pow(2, exp-10)
	r := math.RoundToEven(n/step) * step
	if math.Abs(r) > 65504 {
		return math.Inf(int(math.Copysign(1, n)))
	}
	return r
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// num reads a JSON number, or a numeric string, as float64.
func num(v any) (float64, bool) {
	switch x := v.(type) {
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	case string:
		f, err := strconv.ParseFloat(x, 64)
		return f, err == nil
	case float64:
		return x, true
	case int:
		return float64(x), true
	}
	return 0, false
}

// sourceValues collects every value at a dotted path in a document, looking through
// arrays and accepting both nested objects and dotted keys, and flattening arrays of values.
func sourceValues(doc any, path string) []any {
	var out []any
	var walk func(v any, rest string)
	walk = func(v any, rest string) {
		if rest == "" {
			if a, ok := v.([]any); ok {
				for _, e := range a {
					walk(e, "")
				}
				return
			}
			if v != nil {
				out = append(out, v)
			}
			return
		}
		switch x := v.(type) {
		case []any:
			for _, e := range x {
				walk(e, rest)
			}
		case map[string]any:
			for i := 0; i <= len(rest); i++ {
				if i == len(rest) || rest[i] == '.' {
					if c, ok := x[rest[:i]]; ok {
						next := ""
						if i < len(rest) {
							next = rest[i+1:]
						}
						walk(c, next)
					}
				}
			}
		}
	}
	walk(doc, path)
	return out
}
