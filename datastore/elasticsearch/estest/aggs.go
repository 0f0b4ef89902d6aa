package estest

import (
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// agg is a parsed aggregation.
type agg struct {
	name, typ   string
	field       string
	missing     any
	size        int
	minDocCount int
	order       []aggOrder
	fixed       time.Duration // date_histogram fixed_interval
	calendar    byte          // date_histogram calendar_interval unit: m h d w M q y
	format      string
	meta        any
	subs        []*agg
}

type aggOrder struct {
	by   string // _count, _key, or a sub-aggregation path such as "avg_temp" or "stats.max"
	desc bool
}

var metricAggs = map[string]bool{"avg": true, "min": true, "max": true, "sum": true, "value_count": true, "stats": true}

// knownAggs are Elasticsearch aggregations estest does not implement.
var knownAggs = strings.Fields(`cardinality percentiles percentile_ranks extended_stats top_hits weighted_avg median_absolute_deviation
	geo_bounds geo_centroid scripted_metric string_stats boxplot rate t_test top_metrics matrix_stats histogram auto_date_histogram
	range date_range ip_range filter filters global missing nested reverse_nested composite significant_terms significant_text
	rare_terms multi_terms sampler diversified_sampler adjacency_matrix geohash_grid geotile_grid variable_width_histogram
	avg_bucket max_bucket min_bucket sum_bucket stats_bucket extended_stats_bucket percentiles_bucket bucket_script bucket_selector
	bucket_sort cumulative_sum derivative moving_fn serial_diff cumulative_cardinality inference categorize_text frequent_item_sets
	random_sampler time_series change_point`)

var aggName = regexp.MustCompile(`[\[\]>]`)

func (p *qparser) aggs(v *jv) ([]*agg, *esErr) {
	if v.kind != 'o' {
		return nil, p.parsingErr(v, "Unexpected token %s in [aggs].", tokenName(v))
	}
	var out []*agg
	for i, name := range v.keys {
		def := v.vals[i]
		if aggName.MatchString(name) {
			return nil, p.parsingErr(def, "Invalid aggregation name [%s]. Aggregation names can contain any character except '[', ']', and '>'", name)
		}
		if def.kind != 'o' {
			return nil, p.parsingErr(def, "Aggregation definition for [%s starts with a [%s], expected a [START_OBJECT].", name, tokenName(def))
		}
		a := &agg{name: name, size: 10, minDocCount: 1}
		var body *jv
		for j, k := range def.keys {
			kv := def.vals[j]
			switch k {
			case "aggs", "aggregations":
				subs, e := p.aggs(kv)
				if e != nil {
					return nil, e
				}
				a.subs = subs
			case "meta":
				a.meta = kv.ordered()
			default:
				if a.typ != "" {
					return nil, p.parsingErr(kv, "Found two aggregation type definitions in [%s]: [%s] and [%s]", name, a.typ, k)
				}
				a.typ, body = k, kv
			}
		}
		if a.typ == "" {
			return nil, p.parsingErr(def, "Missing definition for aggregation [%s]", name)
		}
		if e := p.aggBody(a, body); e != nil {
			return nil, e
		}
		if metricAggs[a.typ] && len(a.subs) > 0 {
			return nil, newErr(400, "aggregation_initialization_exception", "Aggregator [%s] of type [%s] cannot accept sub-aggregations", name, a.typ)
		}
		out = append(out, a)
	}
	return out, nil
}

func (p *qparser) aggBody(a *agg, body *jv) *esErr {
	switch {
	case metricAggs[a.typ], a.typ == "terms", a.typ == "date_histogram":
	case contains(knownAggs, a.typ):
		return unsupported("aggregation [%s]", a.typ)
	default:
		e := p.parsingErr(body, "Unknown aggregation type [%s]", a.typ)
		e.cause = newErr(400, "named_object_not_found_exception", "%s unknown field [%s]", loc(p.body, body.off), a.typ)
		return e
	}
	if body.kind != 'o' {
		return p.parsingErr(body, "Expected [START_OBJECT] under [%s], but got a [%s] in [%s]", a.typ, tokenName(body), a.name)
	}
	for i, k := range body.keys {
		v := body.vals[i]
		switch {
		case k == "field":
			a.field = v.s
		case k == "missing":
			a.missing = v.any()
		case k == "format" && a.typ == "date_histogram":
			if err := checkDateFormat(v.s); err != nil {
				return unsupported("date_histogram %v", err)
			}
			a.format = v.s
		case a.typ == "terms" && (k == "size" || k == "min_doc_count" || k == "shard_size"):
			n, err := strconv.Atoi(v.s)
			if v.kind != 'n' || err != nil {
				return newErr(400, "x_content_parse_exception", "%s [terms] failed to parse field [%s]", loc(p.body, v.off), k)
			}
			switch k {
			case "size":
				if n <= 0 {
					return badRequest("[size] must be greater than 0. Found [%d] in [%s]", n, a.name)
				}
				a.size = n
			case "min_doc_count":
				a.minDocCount = n
			}
		case a.typ == "terms" && k == "order":
			items := []*jv{v}
			if v.kind == 'a' {
				items = v.items
			}
			for _, it := range items {
				for j, by := range it.keys {
					dir := it.vals[j].s
					if dir != "asc" && dir != "desc" {
						return badRequest("Unknown terms order direction [%s]", dir)
					}
					a.order = append(a.order, aggOrder{by: by, desc: dir == "desc"})
				}
			}
		case a.typ == "terms" && (k == "execution_hint" || k == "collect_mode"):
		case a.typ == "date_histogram" && k == "min_doc_count":
			n, err := strconv.Atoi(v.s)
			if err != nil {
				return newErr(400, "x_content_parse_exception", "%s [date_histogram] failed to parse field [min_doc_count]", loc(p.body, v.off))
			}
			a.minDocCount = n
		case a.typ == "date_histogram" && k == "fixed_interval":
			d, ok := parseTimeValue(v.s)
			if !ok || d <= 0 || d%time.Millisecond != 0 {
				return badRequest("failed to parse setting [date_histogram.fixedInterval] with value [%s] as a time value: unit is missing or unrecognized", v.s)
			}
			a.fixed = d
		case a.typ == "date_histogram" && k == "calendar_interval":
			units := map[string]byte{"minute": 'm', "1m": 'm', "hour": 'h', "1h": 'h', "day": 'd', "1d": 'd', "week": 'w', "1w": 'w',
				"month": 'M', "1M": 'M', "quarter": 'q', "1q": 'q', "year": 'y', "1y": 'y'}
			u, ok := units[v.s]
			if !ok {
				return badRequest("The supplied interval [%s] could not be parsed as a calendar interval.", v.s)
			}
			a.calendar = u
		case a.typ == "date_histogram" && k == "time_zone":
			if v.s != "UTC" && v.s != "Z" && v.s != "+00:00" && v.s != "Etc/UTC" {
				return unsupported("date_histogram time_zone [%s]", v.s)
			}
		case k == "script" || k == "format" || k == "value_type" || k == "include" || k == "exclude" || k == "offset" ||
			k == "extended_bounds" || k == "hard_bounds" || k == "keyed" || k == "order" || k == "show_term_doc_count_error" ||
			k == "shard_min_doc_count":
			return unsupported("%s option [%s]", a.typ, k)
		default:
			return newErr(400, "x_content_parse_exception", "%s [%s] unknown field [%s]", loc(p.body, v.off), a.typ, k)
		}
	}
	if a.field == "" {
		return badRequest("Required one of fields [field, script], but none were specified. ")
	}
	if a.typ == "date_histogram" {
		switch {
		case a.fixed > 0 && a.calendar != 0:
			return badRequest("Cannot use [fixed_interval] with [calendar_interval] configuration option.")
		case a.fixed == 0 && a.calendar == 0:
			return badRequest("Invalid interval specified, must be non-null and non-empty")
		}
	}
	return nil
}

// aggField resolves an aggregation's field in each index, with Elasticsearch's refusals.
func aggField(a *agg, ix *index) (*field, *esErr) {
	f := resolveField(ix.mappings, a.field)
	switch {
	case f.typ == "text":
		return nil, shardFailure(ix, fielddataErr(ix, a.field))
	case f.typ == "object" || f.typ == "nested" || storedOnly[f.typ] || underNested(ix.mappings, a.field):
		return nil, unsupported("aggregating on field [%s] of type [%s]", a.field, f.typ)
	case f.typ == "keyword" && a.typ != "terms" && a.typ != "value_count",
		f.typ == "boolean" && a.typ == "date_histogram":
		return nil, shardFailure(ix, badRequest("Field [%s] of type [%s] is not supported for aggregation [%s]", a.field, f.typ, a.typ))
	}
	return f, nil
}

// collected holds the values of an aggregation's field in a set of documents.
type collected struct {
	f    *field // the field in the first index where it is mapped (for output formatting)
	vals [][]val
}

func collect(a *agg, hits []*hit) (*collected, *esErr) {
	c := &collected{vals: make([][]val, len(hits))}
	fields := map[*index]*field{}
	for i, h := range hits {
		f, ok := fields[h.ix]
		if !ok {
			var e *esErr
			if f, e = aggField(a, h.ix); e != nil {
				return nil, e
			}
			fields[h.ix] = f
			if f.typ != "" {
				if c.f != nil && kindOf(c.f) != kindOf(f) {
					return nil, unsupported("aggregating field [%s] mapped with different types [%s] and [%s] across indices", a.field, c.f.typ, f.typ)
				}
				if c.f == nil {
					c.f = f
				}
			}
		}
		vs := values(f, h.d)
		if len(vs) == 0 && a.missing != nil && f.typ != "" {
			if v, ok := f.convert(a.missing); ok {
				vs = []val{v}
			}
		}
		c.vals[i] = vs
	}
	return c, nil
}

func kindOf(f *field) string {
	switch {
	case f.typ == "keyword":
		return "s"
	case floatTypes[f.typ]:
		return "d"
	}
	return "l"
}

// runAggs computes aggregations over hits; typed prefixes names with their type (typed_keys).
func runAggs(aggs []*agg, hits []*hit, typed bool) (obj, *esErr) {
	out := obj{}
	for _, a := range aggs {
		c, e := collect(a, hits)
		if e != nil {
			return nil, e
		}
		var res obj
		typ := a.typ
		switch a.typ {
		case "terms":
			res, typ, e = terms(a, c, hits, typed)
		case "date_histogram":
			res, e = dateHistogram(a, c, hits, typed)
		default:
			res = metric(a, c)
		}
		if e != nil {
			return nil, e
		}
		if a.meta != nil {
			res = append(o("meta", a.meta), res...)
		}
		name := a.name
		if typed {
			name = typ + "#" + name
		}
		out = append(out, kv{name, res})
	}
	return out, nil
}

func metric(a *agg, c *collected) obj {
	var count int
	var sum, comp float64 // Kahan summation, as Elasticsearch's CompensatedSum
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, vs := range c.vals {
		for _, v := range vs {
			count++
			if !v.num {
				continue
			}
			y := v.n - comp
			t := sum + y
			comp = (t - sum) - y
			sum = t
			lo, hi = math.Min(lo, v.n), math.Max(hi, v.n)
		}
	}
	isDate := c.f != nil && c.f.typ == "date"
	value := func(x float64, ok bool, key string) obj {
		if !ok {
			return o(key, nil)
		}
		out := o(key, dbl(x))
		if isDate {
			out = append(out, kv{key + "_as_string", formatDate(int64(x), c.f.format)})
		}
		return out
	}
	switch a.typ {
	case "avg":
		return value(sum/float64(count), count > 0, "value")
	case "min":
		return value(lo, count > 0, "value")
	case "max":
		return value(hi, count > 0, "value")
	case "sum":
		return o("value", dbl(sum))
	case "value_count":
		return o("value", count)
	}
	out := o("count", count)
	out = append(out, o("min", nilIf(count == 0, dbl(lo)), "max", nilIf(count == 0, dbl(hi)),
		"avg", nilIf(count == 0, dbl(sum/float64(count))), "sum", dbl(sum))...)
	if isDate && count > 0 {
		out = append(out, o("min_as_string", formatDate(int64(lo), c.f.format), "max_as_string", formatDate(int64(hi), c.f.format),
			"avg_as_string", formatDate(int64(sum/float64(count)), c.f.format), "sum_as_string", formatDate(int64(sum), c.f.format))...)
	}
	return out
}

func nilIf(cond bool, v any) any {
	if cond {
		return nil
	}
	return v
}

type bucket struct {
	key  val
	hits []*hit
	subs obj
}

func group(c *collected, hits []*hit, keyOf func(val) val) map[val]*bucket {
	buckets := map[val]*bucket{}
	for i, vs := range c.vals {
		seen := map[val]bool{}
		for _, v := range vs {
			k := keyOf(v)
			if seen[k] {
				continue
			}
			seen[k] = true
			b := buckets[k]
			if b == nil {
				b = &bucket{key: k}
				buckets[k] = b
			}
			b.hits = append(b.hits, hits[i])
		}
	}
	return buckets
}

func terms(a *agg, c *collected, hits []*hit, typed bool) (obj, string, *esErr) {
	if c.f == nil {
		return o("doc_count_error_upper_bound", 0, "sum_other_doc_count", 0, "buckets", []any{}), "umterms", nil
	}
	typ := map[string]string{"s": "sterms", "d": "dterms", "l": "lterms"}[kindOf(c.f)]
	all := group(c, hits, func(v val) val { return v })
	var list []*bucket
	for _, b := range all {
		if len(b.hits) >= a.minDocCount {
			list = append(list, b)
		}
	}
	for _, b := range list {
		if len(a.subs) > 0 {
			subs, e := runAggs(a.subs, b.hits, typed)
			if e != nil {
				return nil, "", e
			}
			b.subs = subs
		}
	}
	order := a.order
	if len(order) == 0 {
		order = []aggOrder{{by: "_count", desc: true}}
	}
	for _, ord := range order {
		if ord.by != "_count" && ord.by != "_key" && findSub(a.subs, ord.by) == nil {
			return nil, "", badRequest("Invalid aggregation order path [%s]. The provided aggregation [%s] either does not exist, or is a pipeline aggregation and cannot be used to sort the buckets.", ord.by, strings.Split(ord.by, ".")[0])
		}
	}
	if order[len(order)-1].by != "_key" {
		order = append(order, aggOrder{by: "_key"})
	}
	sort.Slice(list, func(i, j int) bool {
		for _, ord := range order {
			var x, y float64
			switch ord.by {
			case "_count":
				x, y = float64(len(list[i].hits)), float64(len(list[j].hits))
			case "_key":
				if list[i].key == list[j].key {
					continue
				}
				return list[i].key.less(list[j].key) != ord.desc
			default:
				x, y = subValue(list[i].subs, ord.by), subValue(list[j].subs, ord.by)
			}
			if x != y {
				return x < y != ord.desc
			}
		}
		return false
	})
	other := 0
	if len(list) > a.size {
		for _, b := range list[a.size:] {
			other += len(b.hits)
		}
		list = list[:a.size]
	}
	out := []any{}
	for _, b := range list {
		var bo obj
		switch typ {
		case "sterms":
			bo = o("key", b.key.s)
		case "dterms":
			bo = o("key", dbl(b.key.n))
		default:
			bo = o("key", int64(b.key.n))
			switch c.f.typ {
			case "date":
				bo = append(bo, kv{"key_as_string", formatDate(int64(b.key.n), c.f.format)})
			case "boolean":
				bo = append(bo, kv{"key_as_string", strconv.FormatBool(b.key.n == 1)})
			}
		}
		bo = append(bo, kv{"doc_count", len(b.hits)})
		out = append(out, append(bo, b.subs...))
	}
	return o("doc_count_error_upper_bound", 0, "sum_other_doc_count", other, "buckets", out), typ, nil
}

func findSub(subs []*agg, path string) *agg {
	name, _, _ := strings.Cut(path, ".")
	for _, s := range subs {
		if s.name == name && metricAggs[s.typ] {
			return s
		}
	}
	return nil
}

// subValue reads a bucket's single-value metric (or stats field) for ordering; null sorts as -Inf.
func subValue(subs obj, path string) float64 {
	name, stat, _ := strings.Cut(path, ".")
	if stat == "" {
		stat = "value"
	}
	for _, e := range subs {
		if e.k == name || strings.HasSuffix(e.k, "#"+name) {
			for _, f := range e.v.(obj) {
				if f.k == stat {
					switch x := f.v.(type) {
					case dbl:
						return float64(x)
					case int:
						return float64(x)
					}
				}
			}
		}
	}
	return math.Inf(-1)
}

func dateHistogram(a *agg, c *collected, hits []*hit, typed bool) (obj, *esErr) {
	round := func(ms int64) int64 {
		if a.fixed > 0 {
			step := a.fixed.Milliseconds()
			return int64(math.Floor(float64(ms)/float64(step))) * step
		}
		t := time.UnixMilli(ms).UTC()
		if a.calendar == 'q' {
			y, m, _ := t.Date()
			return time.Date(y, m-(m-1)%3, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
		}
		return roundDate(t, a.calendar).UnixMilli()
	}
	next := func(key int64) int64 {
		if a.fixed > 0 {
			return key + a.fixed.Milliseconds()
		}
		t := time.UnixMilli(key).UTC()
		if a.calendar == 'q' {
			return t.AddDate(0, 3, 0).UnixMilli()
		}
		return addUnit(t, a.calendar, 1).UnixMilli()
	}
	buckets := group(c, hits, func(v val) val { return val{n: float64(round(int64(v.n))), num: true} })
	if len(buckets) == 0 {
		return o("buckets", []any{}), nil
	}
	var keys []int64
	for k := range buckets {
		keys = append(keys, int64(k.n))
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	if a.minDocCount == 0 {
		var filled []int64
		for k := keys[0]; k <= keys[len(keys)-1]; k = next(k) {
			filled = append(filled, k)
		}
		keys = filled
	}
	format := a.format
	if format == "" && c.f != nil && c.f.typ == "date" {
		format = c.f.format
	}
	out := []any{}
	for _, k := range keys {
		b := buckets[val{n: float64(k), num: true}]
		if b == nil {
			b = &bucket{}
		}
		if len(b.hits) < a.minDocCount {
			continue
		}
		bo := obj{}
		if format != "" {
			bo = append(bo, kv{"key_as_string", formatDate(k, format)})
		}
		bo = append(bo, o("key", k, "doc_count", len(b.hits))...)
		if len(a.subs) > 0 {
			subs, e := runAggs(a.subs, b.hits, typed)
			if e != nil {
				return nil, e
			}
			bo = append(bo, subs...)
		}
		out = append(out, bo)
	}
	return o("buckets", out), nil
}
