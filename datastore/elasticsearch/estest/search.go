package estest

import (
	"bytes"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// query is a parsed query, bound per index because field mappings differ between indices.
type query interface {
	bind(b *binder) (matcher, *esErr)
}

type matcher func(d *doc) bool

// binder carries what binding a query against one index needs.
type binder struct {
	ix  *index
	now time.Time
}

// field resolves a field name in the index, refusing what estest cannot query faithfully.
func (b *binder) field(name string) (*field, *esErr) {
	f := resolveField(b.ix.mappings, name)
	switch {
	case f.typ == "text":
		return nil, unsupported("term-level queries, sorting and aggregations on text field [%s] (Elasticsearch analyzes text; map it as keyword or use [%s.keyword])", name, name)
	case storedOnly[f.typ]:
		return nil, unsupported("querying field [%s] of type [%s]", name, f.typ)
	case underNested(b.ix.mappings, name):
		return nil, unsupported("querying field [%s] inside a nested object", name)
	}
	return f, nil
}

func underNested(m map[string]any, name string) bool {
	props := asMap(m["properties"])
	segs := strings.Split(name, ".")
	for _, s := range segs[:len(segs)-1] {
		def := asMap(props[s])
		if def == nil {
			return false
		}
		if typeOf(def) == "nested" {
			return true
		}
		props = asMap(def["properties"])
	}
	return false
}

// values returns the indexed values of a field in a document.
func values(f *field, d *doc) []val {
	if f.typ == "" || f.typ == "object" || f.typ == "nested" {
		return nil
	}
	var out []val
	for _, raw := range sourceValues(d.parsed, f.src) {
		if v, ok := f.convert(raw); ok {
			out = append(out, v)
		}
	}
	return out
}

// queryValue converts a value given in a query to the field's indexed form, as a term query does.
func (b *binder) queryValue(f *field, raw any, roundUp bool) (val, bool, *esErr) {
	switch {
	case f.typ == "date":
		s := scalarText(raw)
		ms, err := parseDateMath(s, f.format, b.now, roundUp)
		if err != nil {
			return val{}, false, queryShardErr(b.ix, "failed to create query: %s", err.Error())
		}
		return val{n: float64(ms), num: true}, true, nil
	case isNumeric(f.typ):
		n, ok := num(raw)
		if !ok {
			return val{}, false, queryShardErr(b.ix, "failed to create query: For input string: \"%s\"", scalarText(raw))
		}
		if floatTypes[f.typ] {
			n = f.precision(n)
		}
		return val{n: n, num: true}, true, nil
	case f.typ == "boolean":
		switch scalarText(raw) {
		case "true":
			return val{n: 1, num: true}, true, nil
		case "false", "":
			return val{n: 0, num: true}, true, nil
		}
		return val{}, false, queryShardErr(b.ix, "failed to create query: Can't parse boolean value [%s], expected [true] or [false]", scalarText(raw))
	}
	return val{s: scalarText(raw)}, true, nil
}

func scalarText(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case bool:
		return strconv.FormatBool(x)
	case nil:
		return ""
	}
	var b bytes.Buffer
	encode(&b, v)
	return b.String()
}

type qAll struct{ none bool }

func (q qAll) bind(*binder) (matcher, *esErr) {
	return func(*doc) bool { return !q.none }, nil
}

// qTerm is term, terms and match (on non-text fields, where match is a term query).
type qTerm struct {
	field      string
	values     []any
	ignoreCase bool
}

func (q qTerm) bind(b *binder) (matcher, *esErr) {
	switch q.field {
	case "_id", "_index":
		want := map[string]bool{}
		for _, v := range q.values {
			want[scalarText(v)] = true
		}
		ix := b.ix
		return func(d *doc) bool {
			if q.field == "_id" {
				return want[d.id]
			}
			return want[ix.name]
		}, nil
	}
	f, e := b.field(q.field)
	if e != nil {
		return nil, e
	}
	if f.typ == "" || f.typ == "object" || f.typ == "nested" {
		return func(*doc) bool { return false }, nil
	}
	var want []val
	for _, raw := range q.values {
		v, ok, e := b.queryValue(f, raw, false)
		if e != nil {
			return nil, e
		}
		if ok && !(intTypes[f.typ] && v.n != math.Trunc(v.n)) {
			want = append(want, v)
		}
	}
	return func(d *doc) bool {
		for _, have := range values(f, d) {
			for _, w := range want {
				if have == w || q.ignoreCase && !have.num && strings.EqualFold(have.s, w.s) {
					return true
				}
			}
		}
		return false
	}, nil
}

type qRange struct {
	field  string
	bounds map[string]any // gt, gte, lt, lte
	format string
}

func (q qRange) bind(b *binder) (matcher, *esErr) {
	f, e := b.field(q.field)
	if e != nil {
		return nil, e
	}
	switch {
	case f.typ == "" || f.typ == "object" || f.typ == "nested":
		return func(*doc) bool { return false }, nil
	case f.typ == "boolean":
		return nil, unsupported("range query on boolean field [%s]", q.field)
	}
	if q.format != "" && f.typ == "date" {
		if err := checkDateFormat(q.format); err != nil {
			return nil, unsupported("range %v", err)
		}
		g := *f
		g.format = q.format
		f = &g
	}
	type bound struct {
		op string
		v  val
	}
	var bs []bound
	for op, raw := range q.bounds {
		if raw == nil {
			continue
		}
		v, _, e := b.queryValue(f, raw, op == "gt" || op == "lte")
		if e != nil {
			return nil, e
		}
		bs = append(bs, bound{op, v})
	}
	return func(d *doc) bool {
		for _, have := range values(f, d) {
			ok := true
			for _, bd := range bs {
				lt, gt := have.less(bd.v), bd.v.less(have)
				switch bd.op {
				case "gt":
					ok = ok && gt
				case "gte":
					ok = ok && !lt
				case "lt":
					ok = ok && lt
				case "lte":
					ok = ok && !gt
				}
			}
			if ok {
				return true
			}
		}
		return false
	}, nil
}

type qExists struct{ field string }

func (q qExists) bind(b *binder) (matcher, *esErr) {
	if strings.HasPrefix(q.field, "_") {
		return func(*doc) bool { return q.field == "_id" || q.field == "_index" || q.field == "_source" }, nil
	}
	f := resolveField(b.ix.mappings, q.field)
	switch f.typ {
	case "":
		return func(*doc) bool { return false }, nil
	case "object", "nested":
		return func(d *doc) bool { return hasLeaf(sourceValues(d.parsed, f.src)) }, nil
	case "text":
		return func(d *doc) bool { return len(values(f, d)) > 0 }, nil
	}
	f, e := b.field(q.field)
	if e != nil {
		return nil, e
	}
	return func(d *doc) bool { return len(values(f, d)) > 0 }, nil
}

func hasLeaf(vs []any) bool {
	for _, v := range vs {
		switch x := v.(type) {
		case map[string]any:
			for _, c := range x {
				if hasLeaf([]any{c}) {
					return true
				}
			}
		case []any:
			if hasLeaf(x) {
				return true
			}
		case nil:
		default:
			return true
		}
	}
	return false
}

type qBool struct {
	must, filter, should, mustNot []query
	msm                           int
	msmSet                        bool
}

func (q qBool) bind(b *binder) (matcher, *esErr) {
	bindAll := func(qs []query) ([]matcher, *esErr) {
		var ms []matcher
		for _, sub := range qs {
			m, e := sub.bind(b)
			if e != nil {
				return nil, e
			}
			ms = append(ms, m)
		}
		return ms, nil
	}
	must, e := bindAll(append(append([]query(nil), q.must...), q.filter...))
	if e != nil {
		return nil, e
	}
	should, e := bindAll(q.should)
	if e != nil {
		return nil, e
	}
	mustNot, e := bindAll(q.mustNot)
	if e != nil {
		return nil, e
	}
	msm := q.msm
	if !q.msmSet && len(should) > 0 && len(must) == 0 {
		msm = 1
	}
	return func(d *doc) bool {
		for _, m := range must {
			if !m(d) {
				return false
			}
		}
		for _, m := range mustNot {
			if m(d) {
				return false
			}
		}
		n := 0
		for _, m := range should {
			if m(d) {
				n++
			}
		}
		return n >= msm
	}, nil
}

// knownQueries are Elasticsearch queries estest does not implement: using one is a 400 from estest,
// while a name Elasticsearch does not know either is Elasticsearch's own parsing_exception.
var knownQueries = strings.Fields(`match_phrase match_phrase_prefix multi_match query_string simple_query_string
	combined_fields intervals match_bool_prefix prefix wildcard regexp fuzzy nested has_child has_parent parent_id
	geo_bounding_box geo_distance geo_shape geo_polygon geo_grid more_like_this script script_score function_score boosting dis_max
	distance_feature percolate rank_feature wrapper pinned span_term span_near span_or span_not span_first span_multi
	span_containing span_within span_field_masking terms_set knn sparse_vector text_expansion weighted_tokens semantic shape rule`)

// qparser parses the query DSL from a request body, keeping offsets for error locations.
type qparser struct{ body []byte }

func (p *qparser) parsingErr(at *jv, format string, args ...any) *esErr {
	e := newErr(400, "parsing_exception", format, args...)
	line, col := lineCol(p.body, at.off)
	e.extra = o("line", line, "col", col)
	return e
}

func lineCol(d []byte, off int) (int, int) {
	l := loc(d, off)
	a, b, _ := strings.Cut(strings.Trim(l, "[]"), ":")
	x, _ := strconv.Atoi(a)
	y, _ := strconv.Atoi(b)
	return x, y
}

func (p *qparser) query(v *jv) (query, *esErr) {
	if v.kind != 'o' {
		return nil, p.parsingErr(v, "[_na] query malformed, must start with start_object")
	}
	if len(v.keys) == 0 {
		return qAll{}, nil
	}
	if len(v.keys) > 1 {
		return nil, p.parsingErr(v.vals[1], "[%s] malformed query, expected [END_OBJECT] but found [FIELD_NAME]", v.keys[0])
	}
	name, body := v.keys[0], v.vals[0]
	if body.kind != 'o' {
		return nil, p.parsingErr(body, "[%s] query malformed, no start_object after query name", name)
	}
	switch name {
	case "match_all", "match_none":
		for _, k := range body.keys {
			if k != "boost" && k != "_name" {
				return nil, p.parsingErr(body, "[%s] query does not support [%s]", name, k)
			}
		}
		return qAll{none: name == "match_none"}, nil
	case "term", "match":
		return p.term(name, body)
	case "terms":
		var q *qTerm
		for i, k := range body.keys {
			fv := body.vals[i]
			switch {
			case k == "boost" || k == "_name":
			case fv.kind == 'a':
				if q != nil {
					return nil, p.parsingErr(fv, "[terms] query does not support multiple fields")
				}
				q = &qTerm{field: k}
				for _, e := range fv.items {
					if e.kind == 'o' || e.kind == 'a' {
						return nil, p.parsingErr(e, "[terms] query does not support object values")
					}
					q.values = append(q.values, e.any())
				}
			case fv.kind == 'o':
				return nil, unsupported("terms lookup")
			default:
				return nil, p.parsingErr(fv, "[terms] query does not support [%s]", k)
			}
		}
		if q == nil {
			return nil, p.parsingErr(body, "[terms] query requires a field with an array of terms")
		}
		return *q, nil
	case "range":
		if len(body.keys) != 1 {
			return nil, p.parsingErr(body, "[range] query doesn't support multiple fields, found [%s] and [%s]", body.keys[0], body.keys[len(body.keys)-1])
		}
		q := qRange{field: body.keys[0], bounds: map[string]any{}}
		spec := body.vals[0]
		if spec.kind != 'o' {
			return nil, p.parsingErr(spec, "[range] query malformed, after field missing start object")
		}
		inclLower, inclUpper := true, true
		var from, to any
		for i, k := range spec.keys {
			sv := spec.vals[i]
			switch k {
			case "gt", "gte", "lt", "lte":
				q.bounds[k] = sv.any()
			case "from":
				from = sv.any()
			case "to":
				to = sv.any()
			case "include_lower":
				inclLower = sv.b
			case "include_upper":
				inclUpper = sv.b
			case "format":
				q.format = sv.s
			case "time_zone":
				if sv.s != "UTC" && sv.s != "Z" && sv.s != "+00:00" && sv.s != "Etc/UTC" {
					return nil, unsupported("range time_zone [%s]", sv.s)
				}
			case "relation":
				if !strings.EqualFold(sv.s, "intersects") {
					return nil, unsupported("range relation [%s]", sv.s)
				}
			case "boost", "_name":
			default:
				return nil, p.parsingErr(sv, "[range] query does not support [%s]", k)
			}
		}
		if from != nil {
			q.bounds[map[bool]string{true: "gte", false: "gt"}[inclLower]] = from
		}
		if to != nil {
			q.bounds[map[bool]string{true: "lte", false: "lt"}[inclUpper]] = to
		}
		return q, nil
	case "exists":
		f := body.field("field")
		if f == nil || f.kind != 's' {
			return nil, p.parsingErr(body, "[exists] must be provided with a [field]")
		}
		return qExists{field: f.s}, nil
	case "ids":
		vals := body.field("values")
		q := qTerm{field: "_id"}
		if vals != nil {
			for _, e := range vals.items {
				q.values = append(q.values, e.s)
			}
		}
		return q, nil
	case "constant_score":
		f := body.field("filter")
		if f == nil {
			return nil, p.parsingErr(body, "[constant_score] requires a 'filter' element")
		}
		return p.query(f)
	case "bool":
		var q qBool
		for i, k := range body.keys {
			cv := body.vals[i]
			var dst *[]query
			switch k {
			case "must":
				dst = &q.must
			case "filter":
				dst = &q.filter
			case "should":
				dst = &q.should
			case "must_not", "mustNot":
				dst = &q.mustNot
			case "minimum_should_match":
				n, err := strconv.Atoi(scalarText(cv.any()))
				if err != nil || n < 0 {
					return nil, unsupported("minimum_should_match [%s]", scalarText(cv.any()))
				}
				q.msm, q.msmSet = n, true
				continue
			case "boost", "_name", "adjust_pure_negative":
				continue
			default:
				return nil, p.parsingErr(cv, "[bool] query does not support [%s]", k)
			}
			clauses := []*jv{cv}
			if cv.kind == 'a' {
				clauses = cv.items
			}
			for _, c := range clauses {
				sub, e := p.query(c)
				if e != nil {
					return nil, e
				}
				*dst = append(*dst, sub)
			}
		}
		return q, nil
	}
	if contains(knownQueries, name) {
		return nil, unsupported("query [%s]", name)
	}
	e := p.parsingErr(v, "unknown query [%s]", name)
	e.cause = newErr(400, "named_object_not_found_exception", "%s unknown field [%s]", loc(p.body, v.off), name)
	return nil, e
}

func (p *qparser) term(name string, body *jv) (query, *esErr) {
	if len(body.keys) != 1 {
		if len(body.keys) == 0 {
			return nil, p.parsingErr(body, "No value specified for %s query", name)
		}
		return nil, p.parsingErr(body.vals[1], "[%s] query doesn't support multiple fields, found [%s] and [%s]", name, body.keys[0], body.keys[1])
	}
	q := qTerm{field: body.keys[0]}
	v := body.vals[0]
	switch v.kind {
	case 'o':
		valueKey := "value"
		if name == "match" {
			valueKey = "query"
		}
		for i, k := range v.keys {
			sv := v.vals[i]
			switch k {
			case valueKey:
				q.values = []any{sv.any()}
			case "case_insensitive":
				q.ignoreCase = name == "term" && sv.b
			case "boost", "_name":
			case "operator", "lenient", "zero_terms_query", "auto_generate_synonyms_phrase_query":
				if name != "match" {
					return nil, p.parsingErr(sv, "[%s] query does not support [%s]", name, k)
				}
			default:
				if name == "match" {
					return nil, unsupported("match query option [%s]", k)
				}
				return nil, p.parsingErr(sv, "[%s] query does not support [%s]", name, k)
			}
		}
		if q.values == nil {
			return nil, p.parsingErr(v, "No value specified for %s query", name)
		}
	case 'a':
		return nil, p.parsingErr(v, "[%s] query does not support array of values", name)
	default:
		q.values = []any{v.any()}
	}
	if name == "match" {
		return qMatch{q}, nil
	}
	return q, nil
}

// qMatch is a match query; on keyword, numeric, date and boolean fields it is a term query.
type qMatch struct{ qTerm }

func (q qMatch) bind(b *binder) (matcher, *esErr) {
	if f := resolveField(b.ix.mappings, q.field); f.typ == "text" {
		return nil, unsupported("match query on text field [%s] (Elasticsearch analyzes text)", q.field)
	}
	return q.qTerm.bind(b)
}

// sortKey is one sort clause.
type sortKey struct {
	field     string // or _score, _doc
	desc      bool
	first     bool // missing _first
	max       bool // mode
	unmapped  string
	modeGiven bool
}

func (p *qparser) sorts(v *jv) ([]sortKey, *esErr) {
	items := []*jv{v}
	if v.kind == 'a' {
		items = v.items
	}
	var out []sortKey
	for _, it := range items {
		switch it.kind {
		case 's':
			k := sortKey{field: it.s, desc: it.s == "_score"}
			out = append(out, k)
		case 'o':
			for i, name := range it.keys {
				spec := it.vals[i]
				k := sortKey{field: name, desc: name == "_score"}
				switch spec.kind {
				case 's':
					if spec.s != "asc" && spec.s != "desc" {
						return nil, badRequest("Unknown SortOrder [%s]", spec.s)
					}
					k.desc = spec.s == "desc"
				case 'o':
					for j, opt := range spec.keys {
						ov := spec.vals[j]
						switch opt {
						case "order":
							if ov.s != "asc" && ov.s != "desc" {
								return nil, badRequest("Unknown SortOrder [%s]", ov.s)
							}
							k.desc = ov.s == "desc"
						case "missing":
							switch ov.s {
							case "_last":
							case "_first":
								k.first = true
							default:
								return nil, unsupported("sort missing value [%s]", ov.s)
							}
						case "mode":
							switch ov.s {
							case "min":
							case "max":
								k.max = true
							default:
								return nil, unsupported("sort mode [%s]", ov.s)
							}
							k.modeGiven = true
						case "unmapped_type":
							k.unmapped = ov.s
						default:
							return nil, unsupported("sort option [%s]", opt)
						}
					}
				default:
					return nil, p.parsingErr(spec, "[field_sort] unknown field [%s]", name)
				}
				out = append(out, k)
			}
		default:
			return nil, p.parsingErr(it, "[sort] unsupported token [%s]", tokenName(it))
		}
	}
	return out, nil
}

// searchReq is a parsed search body.
type searchReq struct {
	query       query
	postFilter  query
	size, from  int
	sorts       []sortKey
	source      *sourceFilter
	aggs        []*agg
	trackTotal  int // -1 exact, 0 none, n cap
	version     bool
	seqNo       bool
	trackScores bool
}

type sourceFilter struct {
	off      bool
	inc, exc []string
}

func (s *Server) parseSearch(c *call, countOnly bool) (*searchReq, *esErr) {
	r := &searchReq{query: qAll{}, size: 10, trackTotal: 10000}
	p := &qparser{body: c.body}
	if len(bytes.TrimSpace(c.body)) > 0 {
		root, err := parseJSON(c.body)
		if err != nil {
			return nil, parseErr(400, "x_content_parse_exception", c.body, err)
		}
		if root.kind != 'o' {
			return nil, p.parsingErr(root, "Expected [START_OBJECT] but found [%s]", tokenName(root))
		}
		for i, k := range root.keys {
			v := root.vals[i]
			var e *esErr
			switch {
			case k == "query":
				r.query, e = p.query(v)
			case countOnly:
				return nil, badRequest("request does not support [%s]", k)
			case k == "post_filter":
				r.postFilter, e = p.query(v)
			case k == "size" || k == "from":
				n, err := strconv.Atoi(v.s)
				if v.kind != 'n' || err != nil {
					return nil, p.parsingErr(v, "[%s] failed to parse field", k)
				}
				if k == "size" {
					r.size = n
				} else {
					r.from = n
				}
			case k == "sort":
				r.sorts, e = p.sorts(v)
			case k == "_source":
				r.source, e = parseSourceFilter(v.any())
			case k == "aggs" || k == "aggregations":
				r.aggs, e = p.aggs(v)
			case k == "track_total_hits":
				r.trackTotal, e = trackTotal(scalarText(v.any()))
			case k == "version":
				r.version = v.b
			case k == "seq_no_primary_term":
				r.seqNo = v.b
			case k == "track_scores":
				r.trackScores = v.b
			case k == "timeout" || k == "explain" && !v.b || k == "profile" && !v.b:
			case contains(strings.Fields("highlight suggest collapse search_after rescore script_fields docvalue_fields fields stored_fields runtime_mappings pit knn indices_boost stats slice ext retriever terminate_after min_score explain profile"), k):
				return nil, unsupported("search option [%s]", k)
			default:
				return nil, p.parsingErr(v, "Unknown key for a %s in [%s].", tokenName(v), k)
			}
			if e != nil {
				return nil, e
			}
		}
	}
	for _, prm := range []string{"q", "sort", "stored_fields", "docvalue_fields", "terminate_after", "scroll", "search_type", "suggest_field", "explain", "min_score", "analyzer", "df", "default_operator"} {
		if c.params.Has(prm) {
			return nil, unsupported("search parameter [%s]", prm)
		}
	}
	for _, prm := range []string{"size", "from"} {
		if c.params.Has(prm) {
			n, err := strconv.Atoi(c.params.Get(prm))
			if err != nil {
				return nil, badRequest("Failed to parse int parameter [%s] with value [%s]", prm, c.params.Get(prm))
			}
			if prm == "size" {
				r.size = n
			} else {
				r.from = n
			}
		}
	}
	if c.params.Has("track_total_hits") {
		var e *esErr
		if r.trackTotal, e = trackTotal(c.params.Get("track_total_hits")); e != nil {
			return nil, e
		}
	}
	if c.params.Has("_source") {
		v := c.params.Get("_source")
		if v != "true" && v != "false" {
			return nil, unsupported("_source parameter [%s]", v)
		}
		r.source = &sourceFilter{off: v == "false"}
	}
	if r.size < 0 {
		return nil, badRequest("[size] parameter cannot be negative, found [%d]", r.size)
	}
	if r.from < 0 {
		return nil, badRequest("[from] parameter cannot be negative, found [%d]", r.from)
	}
	return r, nil
}

func trackTotal(v string) (int, *esErr) {
	switch v {
	case "true":
		return -1, nil
	case "false":
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, badRequest("[track_total_hits] parameter must be positive or equals to -1, got %s", v)
	}
	if n == math.MaxInt32 {
		return -1, nil
	}
	return n, nil
}

func parseSourceFilter(v any) (*sourceFilter, *esErr) {
	strs := func(v any) []string {
		switch x := v.(type) {
		case string:
			return []string{x}
		case []any:
			var out []string
			for _, e := range x {
				if s, ok := e.(string); ok {
					out = append(out, s)
				}
			}
			return out
		}
		return nil
	}
	switch x := v.(type) {
	case bool:
		return &sourceFilter{off: !x}, nil
	case string, []any:
		return &sourceFilter{inc: strs(x)}, nil
	case map[string]any:
		f := &sourceFilter{}
		for k, e := range x {
			switch k {
			case "includes", "include":
				f.inc = strs(e)
			case "excludes", "exclude":
				f.exc = strs(e)
			default:
				return nil, newErr(400, "parsing_exception", "Unknown key for a %s in [%s].", "VALUE_STRING", k)
			}
		}
		return f, nil
	}
	return nil, newErr(400, "parsing_exception", "Expected one of [VALUE_BOOLEAN, VALUE_STRING, START_ARRAY, START_OBJECT] but found [VALUE_NUMBER]")
}

// apply filters a source document: a path is kept if it or an ancestor matches an include, and
// neither it nor an ancestor matches an exclude.
func (f *sourceFilter) apply(v any) any {
	matches := func(pats []string, path string) bool {
		for _, p := range pats {
			for q := path; ; {
				if glob(p, q) {
					return true
				}
				i := strings.LastIndexByte(q, '.')
				if i < 0 {
					break
				}
				q = q[:i]
			}
		}
		return false
	}
	var rec func(v any, prefix string) (any, bool)
	rec = func(v any, prefix string) (any, bool) {
		if m, ok := v.(map[string]any); ok {
			out := map[string]any{}
			for k, c := range m {
				path := prefix + k
				if matches(f.exc, path) {
					continue
				}
				switch cc := c.(type) {
				case map[string]any:
					if fc, ok := rec(cc, path+"."); ok {
						out[k] = fc
					}
				case []any:
					var arr []any
					for _, e := range cc {
						if em, isMap := e.(map[string]any); isMap {
							if fc, ok := rec(em, path+"."); ok {
								arr = append(arr, fc)
							}
						} else if len(f.inc) == 0 || matches(f.inc, path) {
							arr = append(arr, e)
						}
					}
					if len(arr) > 0 || len(cc) == 0 && (len(f.inc) == 0 || matches(f.inc, path)) {
						if arr == nil {
							arr = []any{}
						}
						out[k] = arr
					}
				default:
					if len(f.inc) == 0 || matches(f.inc, path) {
						out[k] = c
					}
				}
			}
			return out, len(out) > 0 || len(m) == 0 && prefix != "" && (len(f.inc) == 0 || matches(f.inc, strings.TrimSuffix(prefix, ".")))
		}
		return v, true
	}
	out, _ := rec(v, "")
	return out
}

// hit is a matching document.
type hit struct {
	ix    *index
	d     *doc
	score float64
	sort  []any
	keys  []sortVal
}

type sortVal struct {
	v       val
	missing bool
}

// run executes a search against the resolved indices. The caller holds s.mu.
func (s *Server) run(ixs []*index, r *searchReq) ([]*hit, []*hit, *esErr) {
	now := s.now()
	var matched, filtered []*hit
	scored := scoring(r.query)
	for _, ix := range ixs {
		ix.maybeRefresh(now)
		b := &binder{ix: ix, now: now}
		m, e := r.query.bind(b)
		if e != nil {
			return nil, nil, shardFailure(ix, e)
		}
		var pf matcher
		if r.postFilter != nil {
			if pf, e = r.postFilter.bind(b); e != nil {
				return nil, nil, shardFailure(ix, e)
			}
		}
		var sorters []*field
		for _, k := range r.sorts {
			if k.field == "_score" || k.field == "_doc" {
				sorters = append(sorters, nil)
				continue
			}
			f := resolveField(ix.mappings, k.field)
			switch {
			case f.typ == "" && k.unmapped == "":
				return nil, nil, shardFailure(ix, queryShardErr(ix, "No mapping found for [%s] in order to sort on", k.field))
			case f.typ == "text":
				return nil, nil, shardFailure(ix, fielddataErr(ix, k.field))
			case f.typ == "object" || f.typ == "nested" || storedOnly[f.typ]:
				return nil, nil, unsupported("sorting on field [%s] of type [%s]", k.field, f.typ)
			}
			sorters = append(sorters, f)
		}
		for _, d := range ix.visible {
			if !m(d) {
				continue
			}
			h := &hit{ix: ix, d: d, score: 1}
			if !scored {
				h.score = 0
			}
			for i, k := range r.sorts {
				switch {
				case k.field == "_score":
					h.keys = append(h.keys, sortVal{v: val{n: h.score, num: true}})
				case k.field == "_doc":
					h.keys = append(h.keys, sortVal{v: val{n: float64(d.seq), num: true}})
				default:
					vs := values(sorters[i], d)
					if len(vs) == 0 {
						h.keys = append(h.keys, sortVal{missing: true})
						continue
					}
					pick := vs[0]
					for _, v := range vs[1:] {
						if (k.max || k.desc && !k.modeGiven) == pick.less(v) {
							pick = v
						}
					}
					h.keys = append(h.keys, sortVal{v: pick})
				}
				h.sort = append(h.sort, sortOutput(sorters[i], k, h.keys[len(h.keys)-1]))
			}
			matched = append(matched, h)
			if pf == nil || pf(d) {
				filtered = append(filtered, h)
			}
		}
	}
	if len(r.sorts) > 0 {
		sort.SliceStable(filtered, func(i, j int) bool {
			for n, k := range r.sorts {
				a, b := filtered[i].keys[n], filtered[j].keys[n]
				switch {
				case a.missing && b.missing:
					continue
				case a.missing || b.missing:
					return b.missing != k.first
				case a.v == b.v:
					continue
				}
				return a.v.less(b.v) != k.desc
			}
			return false
		})
	}
	return matched, filtered, nil
}

func sortOutput(f *field, k sortKey, sv sortVal) any {
	if sv.missing {
		switch {
		case f == nil || f.typ == "keyword" || f.typ == "":
			return nil
		case floatTypes[f.typ]:
			if k.desc != k.first {
				return "-Infinity"
			}
			return "Infinity"
		case k.desc != k.first:
			return int64(math.MinInt64)
		}
		return int64(math.MaxInt64)
	}
	switch {
	case !sv.v.num:
		return sv.v.s
	case f != nil && floatTypes[f.typ], k.field == "_score":
		return dbl(sv.v.n)
	}
	return int64(sv.v.n)
}

// scoring reports whether the query scores documents; filter-only bool queries give 0.0.
func scoring(q query) bool {
	if b, ok := q.(qBool); ok {
		return len(b.must) > 0 || len(b.should) > 0
	}
	return true
}

func (s *Server) search(c *call) {
	r, e := s.parseSearch(c, false)
	if e != nil {
		s.fail(c, e)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ixs, e := s.resolve(c, c.vars["index"])
	if e != nil {
		s.fail(c, e)
		return
	}
	if r.from+r.size > 10000 && len(ixs) > 0 {
		s.fail(c, shardFailure(ixs[0], badRequest("Result window is too large, from + size must be less than or equal to: [10000] but was [%d]. See the scroll api for a more efficient way to request large data sets. This limit can be set by changing the [index.max_result_window] index level setting.", r.from+r.size)))
		return
	}
	matched, hits, e := s.run(ixs, r)
	if e != nil {
		s.fail(c, e)
		return
	}
	typed, _ := boolParam(c, "typed_keys", false)
	var aggs obj
	if len(r.aggs) > 0 {
		var docs []*hit
		docs = append(docs, matched...)
		if aggs, e = runAggs(r.aggs, docs, typed); e != nil {
			s.fail(c, e)
			return
		}
	}
	sorted := len(r.sorts) > 0
	var maxScore any
	if !sorted || r.trackScores {
		if len(hits) > 0 {
			maxScore = dbl(hits[0].score)
		}
	}
	page := []any{}
	for i := r.from; i < r.from+r.size && i < len(hits); i++ {
		h := hits[i]
		out := o("_index", h.ix.name, "_id", h.d.id)
		if r.version {
			out = append(out, kv{"_version", h.d.version})
		}
		if r.seqNo {
			out = append(out, o("_seq_no", h.d.seq, "_primary_term", 1)...)
		}
		var score any = dbl(h.score)
		if sorted && !r.trackScores {
			score = nil
		}
		out = append(out, kv{"_score", score})
		if r.source == nil || !r.source.off && len(r.source.inc)+len(r.source.exc) == 0 {
			out = append(out, kv{"_source", h.d.src})
		} else if !r.source.off {
			out = append(out, kv{"_source", r.source.apply(h.d.parsed)})
		}
		if sorted {
			out = append(out, kv{"sort", h.sort})
		}
		page = append(page, out)
	}
	hitsObj := obj{}
	total := len(hits)
	switch rest, _ := boolParam(c, "rest_total_hits_as_int", false); {
	case rest:
		hitsObj = append(hitsObj, kv{"total", total})
	case r.trackTotal == -1 || r.trackTotal > 0 && total <= r.trackTotal:
		hitsObj = append(hitsObj, kv{"total", o("value", total, "relation", "eq")})
	case r.trackTotal > 0:
		hitsObj = append(hitsObj, kv{"total", o("value", r.trackTotal, "relation", "gte")})
	}
	hitsObj = append(hitsObj, o("max_score", maxScore, "hits", page)...)
	n := len(ixs)
	out := o("took", c.took(), "timed_out", false,
		"_shards", o("total", n, "successful", n, "skipped", 0, "failed", 0),
		"hits", hitsObj)
	if aggs != nil {
		out = append(out, kv{"aggregations", aggs})
	}
	s.reply(c, 200, out)
}

func (s *Server) count(c *call) {
	r, e := s.parseSearch(c, true)
	if e != nil {
		s.fail(c, e)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ixs, e := s.resolve(c, c.vars["index"])
	if e != nil {
		s.fail(c, e)
		return
	}
	matched, _, e := s.run(ixs, r)
	if e != nil {
		s.fail(c, e)
		return
	}
	n := len(ixs)
	s.reply(c, 200, o("count", len(matched), "_shards", o("total", n, "successful", n, "skipped", 0, "failed", 0)))
}
