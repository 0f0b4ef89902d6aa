package conf

import (
	"encoding"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/BurntSushi/toml"
)

// Error is one problem in a configuration file.
type Error struct {
	File string // the file name given to Load or Parse
	Line int    // 1-based; 0 when unknown
	Key  string // dotted key path such as "listener[1].address"; empty for syntax errors
	Msg  string
}

// Error renders e as "file:line: key: msg", leaving out the parts that are unknown.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in a configuration file, in line order.
type Errors []*Error

// Error renders one error per line.
func (es Errors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

func (es Errors) sort() {
	line := func(e *Error) int {
		if e.Line == 0 {
			return int(^uint(0) >> 1)
		}
		return e.Line
	}
	sort.SliceStable(es, func(i, j int) bool { return line(es[i]) < line(es[j]) })
}

// meta is what a Config keeps of its source to decode sink options later.
type meta struct {
	mu      sync.Mutex // PrimitiveDecode mutates the MetaData
	md      toml.MetaData
	file    string
	lines   lineIndex
	decoded map[string]bool // key paths written in the file and known to the schema
}

func (m *meta) errorf(key, format string, args ...any) *Error {
	return &Error{File: m.file, Line: m.lines.line(key), Key: key, Msg: fmt.Sprintf(format, args...)}
}

// decoder decodes a table key by key into a struct, so that one bad value
// does not hide the others (toml.Decode stops at the first) and so that
// unknown keys are found with their array indexes (MetaData.Undecoded has
// none: every [[listener]] is just "listener").
type decoder struct {
	*meta
	errs   Errors
	schema bool // record the keys decoded in meta.decoded: false for DecodeOptions
}

var (
	primitiveType = reflect.TypeFor[toml.Primitive]()
	unmarshalers  = []reflect.Type{reflect.TypeFor[toml.Unmarshaler](), reflect.TypeFor[encoding.TextUnmarshaler]()}
)

func (d *decoder) add(key, format string, args ...any) {
	d.errs = append(d.errs, d.errorf(key, format, args...))
}

// table decodes the table p into the struct rv. A field of type
// toml.Primitive receives the whole table, and then keys that match no field
// are left to whoever decodes that Primitive instead of being reported.
func (d *decoder) table(p toml.Primitive, path string, rv reflect.Value) {
	if raw := d.raw(p); !isTable(raw) {
		d.add(path, "expected a table, got %s", describe(raw))
		return
	}
	var keys map[string]toml.Primitive
	if err := d.md.PrimitiveDecode(p, &keys); err != nil {
		d.add(path, "%v", err)
		return
	}
	fields, rest := map[string]reflect.Value{}, false
	for i := range rv.NumField() {
		f := rv.Type().Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		switch {
		case !f.IsExported():
		case f.Type == primitiveType:
			rv.Field(i).Set(reflect.ValueOf(p))
			rest = true
		case name != "" && name != "-":
			fields[name] = rv.Field(i)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		kp := joinKey(path, k)
		f, ok := fields[k]
		switch {
		case ok:
			if d.schema {
				d.decoded[kp] = true
			}
			d.value(keys[k], kp, f)
		case !rest && !d.decoded[kp]:
			d.add(kp, "unknown key%s", suggest(k, fields))
		}
	}
}

func (d *decoder) value(p toml.Primitive, path string, rv reflect.Value) {
	t := rv.Type()
	switch {
	case t.Kind() == reflect.Struct && !isLeaf(t):
		d.table(p, path, rv)
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct && !isLeaf(t.Elem()):
		var elems []toml.Primitive
		if err := d.md.PrimitiveDecode(p, &elems); err != nil {
			d.add(path, "expected an array of tables, got %s", describe(d.raw(p)))
			return
		}
		s := reflect.MakeSlice(t, len(elems), len(elems))
		for i, e := range elems {
			if el, ok := s.Index(i).Addr().Interface().(interface{ setDefaults() }); ok {
				el.setDefaults()
			}
			d.table(e, fmt.Sprintf("%s[%d]", path, i), s.Index(i))
		}
		rv.Set(s)
	case t.Kind() == reflect.Map && !isTable(d.raw(p)): // toml decodes a non-table into a map as nothing
		d.add(path, "expected a table, got %s", describe(d.raw(p)))
	default:
		if err := d.md.PrimitiveDecode(p, rv.Addr().Interface()); err != nil {
			if pe := (toml.ParseError{}); errors.As(err, &pe) {
				d.add(path, "%s", pe.Message) // from an UnmarshalTOML: it names the problem
			} else {
				d.add(path, "expected %s, got %s", typeName(t), describe(d.raw(p)))
			}
		}
	}
}

func (d *decoder) raw(p toml.Primitive) any {
	var v any
	_ = d.md.PrimitiveDecode(p, &v) // cannot fail: anything decodes into any
	return v
}

func isTable(v any) bool {
	_, ok := v.(map[string]any)
	return ok
}

func isLeaf(t reflect.Type) bool {
	for _, u := range unmarshalers {
		if reflect.PointerTo(t).Implements(u) {
			return true
		}
	}
	return false
}

func typeName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "a table"
	}
	return t.String()
}

func describe(v any) string {
	switch v := v.(type) {
	case string:
		return fmt.Sprintf("string %q", v)
	case int64:
		return fmt.Sprintf("integer %d", v)
	case float64:
		return fmt.Sprintf("float %v", v)
	case bool:
		return fmt.Sprintf("boolean %v", v)
	case time.Time:
		return "datetime " + v.String()
	case map[string]any:
		return "a table"
	case []map[string]any:
		return "an array of tables"
	case []any:
		return fmt.Sprintf("array %v", v)
	}
	return fmt.Sprintf("%T", v)
}

// suggest returns ` (did you mean "x"?)` for the known key closest to key,
// if it is close enough to be a typo.
func suggest(key string, known map[string]reflect.Value) string {
	best, bestDist := "", len(key)
	for k := range known {
		if d := editDistance(key, k); d < bestDist || d == bestDist && k < best {
			best, bestDist = k, d
		}
	}
	if best == "" || bestDist > max(1, len(key)/4) {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev, cur := make([]int, len(b)+1), make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
