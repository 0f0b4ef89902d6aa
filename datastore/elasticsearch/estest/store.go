package estest

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// index is one Elasticsearch index with a single primary shard.
type index struct {
	name, uuid  string
	created     time.Time
	settings    map[string]string // flat, "index.number_of_shards" -> "1"
	mappings    map[string]any
	docs        map[string]*doc
	seq         int64  // next _seq_no
	visible     []*doc // what search sees: the documents as of the last refresh
	lastRefresh time.Time
	dirty       bool
}

type doc struct {
	id      string
	src     json.RawMessage
	parsed  any
	version int64
	seq     int64
}

// randomID returns an id shaped like Elasticsearch's auto-generated ones (20 URL-safe base64 characters).
func randomID(n int) string {
	b := make([]byte, n*3/4)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (ix *index) refreshInterval() time.Duration {
	if d, ok := parseTimeValue(ix.settings["index.refresh_interval"]); ok {
		return d
	}
	return time.Second
}

// refresh makes every write so far visible to search.
func (ix *index) refresh(now time.Time) {
	ix.visible = ix.visible[:0]
	for _, d := range ix.docs {
		ix.visible = append(ix.visible, d)
	}
	sort.Slice(ix.visible, func(i, j int) bool { return ix.visible[i].seq < ix.visible[j].seq })
	ix.lastRefresh, ix.dirty = now, false
}

// maybeRefresh stands in for the periodic refresh: a search sees writes only once
// index.refresh_interval (1s by default; -1 disables) has passed since the last refresh.
func (ix *index) maybeRefresh(now time.Time) {
	if d := ix.refreshInterval(); ix.dirty && d >= 0 && now.Sub(ix.lastRefresh) >= d {
		ix.refresh(now)
	}
}

// checkIndexName applies Elasticsearch's index name rules.
func checkIndexName(name string) *esErr {
	var why string
	switch {
	case name == "." || name == "..":
		why = "must not be '.' or '..'"
	case strings.ToLower(name) != name:
		why = "must be lowercase"
	case strings.ContainsAny(name, `\/*?"<>| ,`):
		why = `must not contain the following characters [ , ", *, \, <, |, ,, >, /, ?]`
	case strings.Contains(name, "#"):
		why = "must not contain '#'"
	case strings.Contains(name, ":"):
		why = "must not contain ':'"
	case strings.HasPrefix(name, "_") || strings.HasPrefix(name, "-") || strings.HasPrefix(name, "+"):
		why = "must not start with '_', '-', or '+'"
	case len(name) > 255:
		e := newErr(400, "invalid_index_name_exception", "Invalid index name [%s], index name is too long, (%d > 255)", name, len(name))
		e.extra = o("index_uuid", "_na_", "index", name)
		return e
	case name == "":
		why = "must not be empty"
	default:
		return nil
	}
	e := newErr(400, "invalid_index_name_exception", "Invalid index name [%s], %s", name, why)
	e.extra = o("index_uuid", "_na_", "index", name)
	return e
}

// template is a composable index template (PUT _index_template/<name>).
type template struct {
	name     string
	raw      json.RawMessage
	body     *jv
	patterns []string
	priority int64
	hasPrio  bool
	settings map[string]string
	mappings map[string]any
}

// parseTemplate validates a PUT _index_template body as Elasticsearch does, for the parts estest models.
func parseTemplate(name string, body []byte) (*template, *esErr) {
	root, err := parseJSON(body)
	if err != nil {
		return nil, parseErr(400, "x_content_parse_exception", body, err)
	}
	if root.kind != 'o' {
		return nil, newErr(400, "x_content_parse_exception", "%s [index_template] Expected START_OBJECT but was: %s", loc(body, root.off), tokenName(root))
	}
	t := &template{name: name, raw: append(json.RawMessage(nil), body...), body: root, mappings: map[string]any{}, settings: map[string]string{}}
	for i, k := range root.keys {
		v := root.vals[i]
		switch k {
		case "index_patterns":
			switch v.kind {
			case 's':
				t.patterns = []string{v.s}
			case 'a':
				for _, p := range v.items {
					t.patterns = append(t.patterns, p.s)
				}
			}
		case "priority":
			n, err := strconv.ParseInt(v.s, 10, 64)
			if v.kind != 'n' || err != nil || n < 0 {
				return nil, newErr(400, "x_content_parse_exception", "%s [index_template] failed to parse field [priority]", loc(body, v.off))
			}
			t.priority, t.hasPrio = n, true
		case "composed_of":
			if len(v.items) > 0 {
				var names []string
				for _, c := range v.items {
					names = append(names, c.s)
				}
				// estest has no component templates, so every reference is to one that does not exist.
				return nil, newErr(400, "invalid_index_template_exception", "index_template [%s] invalid, cause [index template [%s] specifies component templates %s that do not exist]",
					name, name, "["+strings.Join(names, ", ")+"]")
			}
		case "version", "_meta", "allow_auto_create", "ignore_missing_component_templates", "deprecated":
		case "data_stream":
			return nil, unsupported("index template [data_stream]")
		case "template":
			if v.kind != 'o' {
				return nil, newErr(400, "x_content_parse_exception", "%s [template] Expected START_OBJECT but was: %s", loc(body, v.off), tokenName(v))
			}
			for j, tk := range v.keys {
				tv := v.vals[j]
				switch tk {
				case "settings":
					if tv.kind == 'o' {
						flattenSettings("", tv.any().(map[string]any), t.settings)
					}
				case "mappings":
					m, e := parseMappings(body, tv)
					if e != nil {
						return nil, e
					}
					t.mappings = m
				case "aliases":
					if tv.kind == 'o' && len(tv.keys) > 0 {
						return nil, unsupported("index template aliases")
					}
				case "lifecycle", "data_stream_options":
				default:
					return nil, newErr(400, "x_content_parse_exception", "%s [template] unknown field [%s]", loc(body, tv.off), tk)
				}
			}
		default:
			return nil, newErr(400, "x_content_parse_exception", "%s [index_template] unknown field [%s]", loc(body, v.off), k)
		}
	}
	if len(t.patterns) == 0 {
		return nil, validationErr("index patterns are missing")
	}
	return t, nil
}

func tokenName(v *jv) string {
	switch v.kind {
	case 'o':
		return "START_OBJECT"
	case 'a':
		return "START_ARRAY"
	case 's':
		return "VALUE_STRING"
	case 'n':
		return "VALUE_NUMBER"
	case 'b':
		return "VALUE_BOOLEAN"
	}
	return "VALUE_NULL"
}

// flattenSettings turns {"index":{"refresh_interval":"1s"}} and {"number_of_shards":1}
// into Elasticsearch's normalised flat form: "index.refresh_interval" -> "1s", "index.number_of_shards" -> "1".
func flattenSettings(prefix string, m map[string]any, out map[string]string) {
	for k, v := range m {
		key := prefix + k
		if sub, ok := v.(map[string]any); ok {
			flattenSettings(key+".", sub, out)
			continue
		}
		if prefix == "" && !strings.HasPrefix(key, "index.") {
			key = "index." + key
		}
		switch x := v.(type) {
		case string:
			out[key] = x
		case json.Number:
			out[key] = string(x)
		case bool:
			out[key] = strconv.FormatBool(x)
		case nil:
			delete(out, key)
		default:
			b, _ := json.Marshal(x)
			out[key] = string(b)
		}
	}
}

// nestSettings is the inverse of flattenSettings, the shape GET APIs return.
func nestSettings(flat map[string]string) map[string]any {
	out := map[string]any{}
	for k, v := range flat {
		m := out
		parts := strings.Split(k, ".")
		for _, p := range parts[:len(parts)-1] {
			sub, ok := m[p].(map[string]any)
			if !ok {
				sub = map[string]any{}
				m[p] = sub
			}
			m = sub
		}
		m[parts[len(parts)-1]] = v
	}
	return out
}

// parseMappings validates a mappings object: field types, date formats and dynamic templates
// are checked so a template that estest could not honour fails at PUT time.
func parseMappings(body []byte, v *jv) (map[string]any, *esErr) {
	if v.kind != 'o' {
		return nil, newErr(400, "mapper_parsing_exception", "Failed to parse mapping: Expected map for property [mappings] but got a class java.lang.String")
	}
	m := v.any().(map[string]any)
	if _, ok := m["_doc"]; ok && len(m) == 1 {
		m = m["_doc"].(map[string]any)
	}
	if props, ok := m["properties"].(map[string]any); ok {
		m["properties"] = expandDots(props)
		if e := checkProps(m["properties"].(map[string]any), ""); e != nil {
			return nil, e
		}
	}
	if _, ok := m["runtime"]; ok {
		return nil, unsupported("runtime fields")
	}
	if dts, ok := m["dynamic_templates"].([]any); ok {
		for _, dt := range dts {
			for name, spec := range asMap(dt) {
				s := asMap(spec)
				if _, ok := s["mapping"]; !ok {
					return nil, unsupported("dynamic template [%s] without [mapping]", name)
				}
				if mp, _ := s["match_pattern"].(string); mp == "regex" {
					return nil, unsupported("dynamic template [%s] with match_pattern [regex]", name)
				}
			}
		}
	}
	if fs, ok := m["dynamic_date_formats"].([]any); ok {
		for _, f := range fs {
			s, _ := f.(string)
			if err := checkDateFormat(s); err != nil {
				return nil, unsupported("dynamic_date_formats %v", err)
			}
		}
	}
	return m, nil
}

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

// expandDots turns {"payload.temp": {...}} into {"payload": {"properties": {"temp": {...}}}}, as Elasticsearch does.
func expandDots(props map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range props {
		def := asMap(v)
		if sub, ok := def["properties"].(map[string]any); ok {
			def["properties"] = expandDots(sub)
		}
		parts := strings.Split(k, ".")
		m := out
		for _, p := range parts[:len(parts)-1] {
			o := asMap(m[p])
			if o == nil {
				o = map[string]any{"properties": map[string]any{}}
				m[p] = o
			}
			if asMap(o["properties"]) == nil {
				o["properties"] = map[string]any{}
			}
			m = asMap(o["properties"])
		}
		m[parts[len(parts)-1]] = def
	}
	return out
}

func checkProps(props map[string]any, prefix string) *esErr {
	for name, v := range props {
		def := asMap(v)
		full := prefix + name
		if def == nil {
			return newErr(400, "mapper_parsing_exception", "Expected map for property [fields] on field [%s] but got a %T", full, v)
		}
		typ := typeOf(def)
		switch {
		case typ == "object" || typ == "nested":
			if sub := asMap(def["properties"]); sub != nil {
				if e := checkProps(sub, full+"."); e != nil {
					return e
				}
			}
		case typ == "keyword" || typ == "text" || typ == "boolean" || isNumeric(typ) || storedOnly[typ]:
		case typ == "date":
			if f, ok := def["format"].(string); ok {
				if err := checkDateFormat(f); err != nil {
					return unsupported("%v on field [%s]", err, full)
				}
			}
		default:
			return newErr(400, "mapper_parsing_exception", "No handler for type [%s] declared on field [%s]", typ, name)
		}
		if fields := asMap(def["fields"]); fields != nil {
			if e := checkProps(fields, full+"."); e != nil {
				return e
			}
		}
	}
	return nil
}

func typeOf(def map[string]any) string {
	if t, ok := def["type"].(string); ok {
		return t
	}
	return "object"
}

// resolveField finds the mapping of a field path, following objects and multi-fields.
func resolveField(m map[string]any, name string) *field {
	f := &field{name: name, src: name}
	props := asMap(m["properties"])
	segs := strings.Split(name, ".")
	for i := 0; i < len(segs); i++ {
		def := asMap(props[segs[i]])
		if def == nil {
			return f
		}
		if i == len(segs)-1 {
			return f.with(def)
		}
		if sub := asMap(def["properties"]); sub != nil {
			props = sub
			continue
		}
		if fields := asMap(def["fields"]); fields != nil && i == len(segs)-2 {
			if fd := asMap(fields[segs[i+1]]); fd != nil {
				f.src = strings.Join(segs[:i+1], ".")
				return f.with(fd)
			}
		}
		return f
	}
	return f
}

func (f *field) with(def map[string]any) *field {
	f.typ, f.def = typeOf(def), def
	if f.typ == "date" {
		f.format = defaultDateFormat
		if s, ok := def["format"].(string); ok {
			f.format = s
		}
	}
	return f
}

func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = deepCopy(e)
		}
		return m
	case []any:
		a := make([]any, len(x))
		for i, e := range x {
			a[i] = deepCopy(e)
		}
		return a
	}
	return v
}

// docParser checks one document against an index's mappings and applies dynamic mapping,
// failing the way Elasticsearch's DocumentParser does.
type docParser struct {
	src      []byte
	id       string
	mappings map[string]any // a copy; committed only if the document is accepted
}

var metadataFields = map[string]bool{"_id": true, "_index": true, "_source": true, "_routing": true, "_seq_no": true,
	"_version": true, "_primary_term": true, "_field_names": true, "_ignored": true, "_doc_count": true, "_tier": true,
	"_data_stream_timestamp": true, "_feature": true, "_nested_path": true}

func (p *docParser) parse(root *jv) *esErr {
	if root.kind != 'o' {
		return p.fail(root, "Malformed content, must start with an object", nil)
	}
	if asMap(p.mappings["properties"]) == nil {
		p.mappings["properties"] = map[string]any{}
	}
	return p.object(asMap(p.mappings["properties"]), root, "", dynamicMode(p.mappings["dynamic"], "true"), "_doc")
}

func dynamicMode(v any, inherited string) string {
	switch x := v.(type) {
	case bool:
		return strconv.FormatBool(x)
	case string:
		return x
	}
	return inherited
}

func (p *docParser) fail(at *jv, reason string, cause *esErr) *esErr {
	e := newErr(400, "document_parsing_exception", "%s %s", loc(p.src, at.off), reason)
	e.cause = cause
	return e
}

func (p *docParser) object(props map[string]any, v *jv, prefix, dynamic, objName string) *esErr {
	for i, k := range v.keys {
		e := v.vals[i]
		if prefix == "" && metadataFields[k] {
			return p.fail(e, fmt.Sprintf("Field [%s] is a metadata field and cannot be added inside a document. Use the index API request parameters.", k), nil)
		}
		if k == "" {
			return p.fail(e, "field name cannot be an empty string", nil)
		}
		if head, rest, dotted := strings.Cut(k, "."); dotted && head != "" && rest != "" {
			// {"a.b": 1} is {"a": {"b": 1}}
			k, e = head, &jv{off: e.off, kind: 'o', keys: []string{rest}, vals: []*jv{e}}
		}
		if err := p.field(props, k, e, prefix, dynamic, objName); err != nil {
			return err
		}
	}
	return nil
}

func (p *docParser) field(props map[string]any, k string, e *jv, prefix, dynamic, objName string) *esErr {
	full := prefix + k
	def := asMap(props[k])
	if def == nil {
		first := firstNonNull(e)
		if first == nil {
			return nil
		}
		switch dynamic {
		case "strict":
			err := newErr(400, "strict_dynamic_mapping_exception", "%s mapping set to strict, dynamic introduction of [%s] within [%s] is not allowed", loc(p.src, e.off), k, objName)
			return err
		case "false":
			return nil
		}
		def = p.dynamicMapping(k, full, first)
		props[k] = def
	}
	typ := typeOf(def)
	if typ == "object" || typ == "nested" {
		if enabled, ok := def["enabled"].(bool); ok && !enabled {
			return nil
		}
		sub := asMap(def["properties"])
		if sub == nil {
			sub = map[string]any{}
			def["properties"] = sub
		}
		mode := dynamicMode(def["dynamic"], dynamic)
		for _, item := range flatten(e) {
			switch item.kind {
			case 'z':
			case 'o':
				if err := p.object(sub, item, full+".", mode, full); err != nil {
					return err
				}
			default:
				return p.fail(item, fmt.Sprintf("object mapping for [%s] tried to parse field [%s] as object, but found a concrete value", full, k), nil)
			}
		}
		return nil
	}
	if storedOnly[typ] {
		return nil // estest keeps these in _source without checking them
	}
	f := (&field{name: full, src: full}).with(def)
	for _, item := range flatten(e) {
		if item.kind == 'z' {
			continue
		}
		if _, ok := f.convert(item.any()); ok || item.kind != 'o' && f.typ == "keyword" {
			continue // keyword values over ignore_above are kept in _source but not indexed
		}
		if ig, _ := def["ignore_malformed"].(bool); ig && item.kind != 'o' {
			continue
		}
		preview := preview(item)
		return p.fail(item, fmt.Sprintf("failed to parse field [%s] of type [%s] in document with id '%s'. Preview of field's value: '%s'", full, typ, p.id, preview), p.convertCause(f, item, preview))
	}
	return nil
}

func (p *docParser) convertCause(f *field, item *jv, preview string) *esErr {
	switch {
	case item.kind == 'o':
		return newErr(400, "illegal_state_exception", "Can't get text on a START_OBJECT at %s", strings.Trim(loc(p.src, item.off), "[]"))
	case isNumeric(f.typ) && item.kind == 's':
		return newErr(400, "number_format_exception", "For input string: \"%s\"", item.s)
	case isNumeric(f.typ):
		return newErr(400, "illegal_argument_exception", "Current token (%s) not numeric, can not use numeric value accessors", tokenName(item))
	case f.typ == "date":
		return newErr(400, "illegal_argument_exception", "failed to parse date field [%s] with format [%s]", preview, f.format)
	case f.typ == "boolean":
		return newErr(400, "illegal_argument_exception", "Failed to parse value [%s] as only [true] or [false] are allowed.", preview)
	}
	return nil
}

// preview renders a value as Elasticsearch's "Preview of field's value" (Java's toString for objects).
func preview(v *jv) string {
	switch v.kind {
	case 'o':
		parts := make([]string, len(v.keys))
		for i, k := range v.keys {
			parts[i] = k + "=" + preview(v.vals[i])
		}
		return "{" + strings.Join(parts, ", ") + "}"
	case 'a':
		parts := make([]string, len(v.items))
		for i, e := range v.items {
			parts[i] = preview(e)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case 'b':
		return strconv.FormatBool(v.b)
	case 'z':
		return "null"
	}
	return v.s
}

func flatten(v *jv) []*jv {
	if v.kind != 'a' {
		return []*jv{v}
	}
	var out []*jv
	for _, e := range v.items {
		out = append(out, flatten(e)...)
	}
	return out
}

func firstNonNull(v *jv) *jv {
	for _, e := range flatten(v) {
		if e.kind != 'z' {
			return e
		}
	}
	return nil
}

// dynamicMapping picks the mapping Elasticsearch would add for a new field: a matching dynamic
// template first, then the defaults (text+keyword, date detection, long, float, boolean, object).
func (p *docParser) dynamicMapping(name, full string, v *jv) map[string]any {
	var dynType string
	var def map[string]any
	switch v.kind {
	case 'o':
		dynType, def = "object", map[string]any{"properties": map[string]any{}}
	case 'b':
		dynType, def = "boolean", map[string]any{"type": "boolean"}
	case 'n':
		if strings.ContainsAny(v.s, ".eE") {
			dynType, def = "double", map[string]any{"type": "float"}
		} else {
			dynType, def = "long", map[string]any{"type": "long"}
		}
	default:
		dynType, def = "string", map[string]any{"type": "text", "fields": map[string]any{"keyword": map[string]any{"type": "keyword", "ignore_above": json.Number("256")}}}
		if detect, ok := p.mappings["date_detection"].(bool); !ok || detect {
			formats := []any{"strict_date_optional_time"}
			if fs, ok := p.mappings["dynamic_date_formats"].([]any); ok {
				formats = fs
			}
			for _, f := range formats {
				fs, _ := f.(string)
				if _, ok := parseDate(v.s, fs); ok {
					dynType, def = "date", map[string]any{"type": "date"}
					if fs != "strict_date_optional_time" {
						def["format"] = fs
					}
					break
				}
			}
		}
		if nd, _ := p.mappings["numeric_detection"].(bool); nd && dynType == "string" {
			if _, err := strconv.ParseInt(v.s, 10, 64); err == nil {
				dynType, def = "long", map[string]any{"type": "long"}
			} else if _, err := strconv.ParseFloat(v.s, 64); err == nil {
				dynType, def = "double", map[string]any{"type": "float"}
			}
		}
	}
	dts, _ := p.mappings["dynamic_templates"].([]any)
	for _, dt := range dts {
		for _, spec := range asMap(dt) {
			s := asMap(spec)
			if !dynMatch(s["match_mapping_type"], dynType, true) || !dynMatch(s["match"], name, true) ||
				dynMatch(s["unmatch"], name, false) || !dynMatch(s["path_match"], full, true) || dynMatch(s["path_unmatch"], full, false) {
				continue
			}
			m := substitute(deepCopy(s["mapping"]), name, dynType).(map[string]any)
			if _, ok := m["type"]; !ok && dynType != "object" {
				m["type"] = def["type"]
			}
			return m
		}
	}
	return def
}

// dynMatch matches a dynamic template condition (a pattern or list of patterns); absent gives def.
func dynMatch(cond any, s string, def bool) bool {
	var pats []string
	switch x := cond.(type) {
	case string:
		pats = []string{x}
	case []any:
		for _, e := range x {
			if p, ok := e.(string); ok {
				pats = append(pats, p)
			}
		}
	default:
		return def
	}
	for _, p := range pats {
		if glob(p, s) {
			return true
		}
	}
	return false
}

func substitute(v any, name, dynType string) any {
	switch x := v.(type) {
	case string:
		return strings.ReplaceAll(strings.ReplaceAll(x, "{name}", name), "{dynamic_type}", dynType)
	case map[string]any:
		for k, e := range x {
			x[k] = substitute(e, name, dynType)
		}
	case []any:
		for i, e := range x {
			x[i] = substitute(e, name, dynType)
		}
	}
	return v
}
