// Package estest is a fake Elasticsearch 8 server for tests: an httptest server that speaks the
// parts of the REST API Tide uses (info, health, _bulk, documents, index templates, _search with
// aggregations, _count) with Elasticsearch's own response shapes, status codes and headers, so that
// the real go-elasticsearch client can be tested against it, including its product check.
//
// It is strict where Elasticsearch is strict, and it refuses what it does not model: a query,
// aggregation, parameter or mapping feature it does not implement is answered with a 400
// "estest_unsupported_exception" rather than a wrong answer.
//
// Like Elasticsearch, writes become visible to _search and _count only after a refresh: an explicit
// POST _refresh, a write with ?refresh=true or ?refresh=wait_for, or index.refresh_interval (1s by
// default) having passed since the last refresh. GET _doc, [Server.Docs] and the other inspection
// methods are real-time. Tests should poll for a condition with a deadline, as they must against a
// real cluster.
//
// Faults real clusters produce can be injected at any time: per-item bulk failures
// ([Server.FailItems]), whole-request failures ([Server.FailRequests]), latency
// ([Server.SetLatency]) and dropped connections ([Server.DropConnections]).
package estest

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
)

// Version is the Elasticsearch version the server claims to be.
const Version = "8.15.0"

const (
	nodeName = "estest-node-0"
	nodeID   = "eStEsTnOdE0aAbBcCdDeEw"
)

// ReasonRejected is the reason Elasticsearch gives when indexing pressure rejects a write with
// 429 es_rejected_execution_exception; use it with [Server.FailItems].
const ReasonRejected = "rejected execution of coordinating operation [coordinating_and_primary_bytes=0, " +
	"replica_bytes=0, all_bytes=0, coordinating_operation_bytes=1048576, max_coordinating_and_primary_bytes=53687091]"

// Request is one HTTP request the server received, with its body decoded from gzip if it was compressed.
type Request struct {
	Method string
	Path   string
	Query  url.Values
	Header http.Header
	Body   []byte
}

// ItemFailer decides the fate of one bulk item: status 0 lets it succeed; otherwise the item fails
// with that status and an error of type errType with the given reason. action is "index", "create"
// or "delete"; doc is the source line (nil for delete).
type ItemFailer func(action, index, id string, doc []byte) (status int, errType, reason string)

// Server is a running fake Elasticsearch. All methods are safe for concurrent use.
type Server struct {
	// URL is the base URL of the server, e.g. http://127.0.0.1:PORT.
	URL string

	ts          *httptest.Server
	done        chan struct{}
	clusterUUID string

	mu         sync.Mutex
	indices    map[string]*index
	templates  map[string]*template
	requests   []Request
	failItems  ItemFailer
	failN      int
	failStatus int
	latency    time.Duration
	drops      int
	user, pass string
	apiKey     string
	now        func() time.Time
}

// New starts a server; it is closed when the test ends.
func New(t testing.TB) *Server {
	t.Helper()
	s := &Server{done: make(chan struct{}), clusterUUID: randomID(22), now: time.Now}
	s.reset()
	s.ts = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.ts.URL
	t.Cleanup(func() {
		close(s.done)
		s.ts.Close()
	})
	return s
}

// Client returns a real go-elasticsearch client for the server, with its default transport,
// retries and product check, and with the credentials the server requires, if any.
func (s *Server) Client(t testing.TB) *elasticsearch.Client {
	t.Helper()
	cfg := elasticsearch.Config{Addresses: []string{s.URL}}
	s.mu.Lock()
	cfg.Username, cfg.Password, cfg.APIKey = s.user, s.pass, s.apiKey
	s.mu.Unlock()
	c, err := elasticsearch.NewClient(cfg)
	if err != nil {
		t.Fatalf("estest: new client: %v", err)
	}
	return c
}

// RequireBasicAuth makes every request need HTTP basic authentication with user and pass.
func (s *Server) RequireBasicAuth(user, pass string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.user, s.pass = user, pass
}

// RequireAPIKey makes every request need "Authorization: ApiKey <key>", where key is the
// encoded API key (base64 of id:api_key) as the client's APIKey option sends it.
func (s *Server) RequireAPIKey(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.apiKey = key
}

// FailItems installs f to decide per bulk item whether it fails; nil removes it.
func (s *Server) FailItems(f ItemFailer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failItems = f
}

// FailRequests makes the next n _bulk requests fail as a whole with status, with the body
// Elasticsearch sends for it (503 cluster_block_exception, 429 es_rejected_execution_exception, ...).
func (s *Server) FailRequests(n, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failN, s.failStatus = n, status
}

// SetLatency delays every response by d, or until the client gives up on the request.
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency = d
}

// DropConnections makes the next n requests be read and then have their TCP connection
// closed without any response.
func (s *Server) DropConnections(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drops = n
}

// Requests returns every request received so far, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// Docs returns the current documents of an index by id, as their exact source bytes.
func (s *Server) Docs(index string) map[string]json.RawMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]json.RawMessage{}
	if ix := s.indices[index]; ix != nil {
		for id, d := range ix.docs {
			out[id] = append(json.RawMessage(nil), d.src...)
		}
	}
	return out
}

// Indices returns the names of all indices, sorted.
func (s *Server) Indices() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var names []string
	for n := range s.indices {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Template returns the body of the last successful PUT _index_template/<name>, byte for byte.
func (s *Server) Template(name string) (json.RawMessage, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.templates[name]
	if !ok {
		return nil, false
	}
	return append(json.RawMessage(nil), t.raw...), true
}

// Mappings returns an index's mappings as GET <index>/_mapping shows them: those of the template
// it was created from, plus what dynamic mapping added. It is nil if the index does not exist.
func (s *Server) Mappings(index string) json.RawMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	ix := s.indices[index]
	if ix == nil {
		return nil
	}
	var b bytes.Buffer
	encode(&b, ix.mappings)
	return b.Bytes()
}

// Reset forgets all indices, templates, recorded requests and injected faults.
// Required credentials are kept.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reset()
}

func (s *Server) reset() {
	s.indices, s.templates, s.requests = map[string]*index{}, map[string]*template{}, nil
	s.failItems, s.failN, s.failStatus, s.latency, s.drops = nil, 0, 0, 0, 0
}

// call is one request being served.
type call struct {
	w      http.ResponseWriter
	r      *http.Request
	body   []byte
	params url.Values
	vars   map[string]string
	start  time.Time
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	c := &call{w: w, r: r, params: r.URL.Query(), start: time.Now()}
	body, err := io.ReadAll(r.Body)
	if err == nil && strings.EqualFold(r.Header.Get("Content-Encoding"), "gzip") {
		var zr *gzip.Reader
		if zr, err = gzip.NewReader(bytes.NewReader(body)); err == nil {
			body, err = io.ReadAll(zr)
		}
	}
	c.body = body
	s.mu.Lock()
	s.requests = append(s.requests, Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(), Header: r.Header.Clone(), Body: body})
	drop := s.drops > 0
	if drop {
		s.drops--
	}
	latency := s.latency
	s.mu.Unlock()

	if drop {
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
				return
			}
		}
		panic(http.ErrAbortHandler)
	}
	if latency > 0 {
		timer := time.NewTimer(latency)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-r.Context().Done():
			return
		case <-s.done:
			return
		}
	}
	w.Header().Set("X-Elastic-Product", "Elasticsearch")
	if err != nil {
		s.fail(c, badRequest("failed to read request body: %v", err))
		return
	}
	if e := s.authenticate(r); e != nil {
		for _, v := range wwwAuthenticate {
			w.Header().Add("WWW-Authenticate", v)
		}
		s.fail(c, e)
		return
	}
	if len(body) > 0 {
		if e := checkContentType(r.Header.Get("Content-Type")); e != nil {
			s.fail(c, e)
			return
		}
	}
	s.route(c)
}

var wwwAuthenticate = []string{`Basic realm="security", charset="UTF-8"`, `Bearer realm="security"`, `ApiKey`}

func (s *Server) authenticate(r *http.Request) *esErr {
	s.mu.Lock()
	user, pass, key := s.user, s.pass, s.apiKey
	s.mu.Unlock()
	if user == "" && key == "" {
		return nil
	}
	uri := r.URL.RequestURI()
	authz := r.Header.Get("Authorization")
	scheme, cred, _ := strings.Cut(authz, " ")
	var e *esErr
	switch {
	case authz == "":
		e = newErr(401, "security_exception", "missing authentication credentials for REST request [%s]", uri)
	case strings.EqualFold(scheme, "Basic") && user != "":
		raw, _ := base64.StdEncoding.DecodeString(cred)
		u, p, _ := strings.Cut(string(raw), ":")
		if u == user && p == pass {
			return nil
		}
		e = newErr(401, "security_exception", "unable to authenticate user [%s] for REST request [%s]", u, uri)
	case strings.EqualFold(scheme, "ApiKey") && key != "" && cred == key:
		return nil
	default:
		e = newErr(401, "security_exception", "unable to authenticate with provided credentials and anonymous access is not allowed for this request")
	}
	e.extra = o("header", o("WWW-Authenticate", wwwAuthenticate))
	return e
}

// checkContentType accepts what Elasticsearch reads: JSON, NDJSON and its versioned media types.
func checkContentType(ct string) *esErr {
	mt, params, err := mime.ParseMediaType(ct)
	if err == nil {
		switch mt {
		case "application/json", "application/x-ndjson":
			return nil
		case "application/vnd.elasticsearch+json", "application/vnd.elasticsearch+x-ndjson":
			if v := params["compatible-with"]; v == "8" {
				return nil
			}
			return unsupported("Content-Type [%s] (only compatible-with=8)", ct)
		case "application/yaml", "application/cbor", "application/smile":
			return unsupported("Content-Type [%s]", ct)
		}
	}
	return &esErr{status: 406, reason: "Content-Type header [" + ct + "] is not supported", bare: true}
}

// reply writes a successful response, honouring filter_path and pretty.
func (s *Server) reply(c *call, status int, v any) {
	if fp := c.params.Get("filter_path"); fp != "" {
		var pats [][]string
		for _, p := range strings.Split(fp, ",") {
			if p = strings.TrimSpace(p); p != "" {
				pats = append(pats, strings.Split(p, "."))
			}
		}
		if fv, ok := filterPath(v, pats); ok {
			v = fv
		} else {
			v = obj{}
		}
	}
	s.write(c, status, v)
}

func (s *Server) fail(c *call, e *esErr) {
	if e.allow != "" {
		c.w.Header().Set("Allow", e.allow)
	}
	s.write(c, e.status, e.body())
}

func (s *Server) write(c *call, status int, v any) {
	var b bytes.Buffer
	encode(&b, v)
	if p := c.params.Get("pretty"); c.params.Has("pretty") && p != "false" {
		var ind bytes.Buffer
		if json.Indent(&ind, b.Bytes(), "", "  ") == nil {
			b = ind
			b.WriteByte('\n')
		}
	}
	h := c.w.Header()
	ct := "application/json"
	if accept := c.r.Header.Get("Accept"); strings.Contains(accept, "vnd.elasticsearch+json") ||
		accept == "" && strings.Contains(c.r.Header.Get("Content-Type"), "vnd.elasticsearch+") {
		ct = "application/vnd.elasticsearch+json;compatible-with=8"
	}
	h.Set("Content-Type", ct)
	h.Set("Content-Length", strconv.Itoa(b.Len()))
	c.w.WriteHeader(status)
	if c.r.Method != http.MethodHead {
		_, _ = c.w.Write(b.Bytes())
	}
}

// writeEmpty answers HEAD-style existence checks.
func (s *Server) writeEmpty(c *call, status int) {
	c.w.Header().Set("Content-Type", "application/json")
	c.w.Header().Set("Content-Length", "0")
	c.w.WriteHeader(status)
}

func intStr(n int) string { return strconv.Itoa(n) }

// took is the elapsed time in milliseconds, as Elasticsearch reports it.
func (c *call) took() int64 { return time.Since(c.start).Milliseconds() }

type route struct {
	method  string
	pattern []string
	params  string // accepted query parameters besides the common ones
	h       func(s *Server, c *call)
}

const commonParams = "pretty human error_trace filter_path"

var routes []route

func init() {
	add := func(method, pattern, params string, h func(s *Server, c *call)) {
		routes = append(routes, route{method, strings.Split(strings.Trim(pattern, "/"), "/"), params, h})
	}
	bulk := "refresh routing timeout wait_for_active_shards pipeline require_alias require_data_stream _source _source_includes _source_excludes list_executed_pipelines include_source_on_error"
	search := "typed_keys size from track_total_hits rest_total_hits_as_int ignore_unavailable allow_no_indices expand_wildcards " +
		"request_cache preference routing search_type timeout batched_reduce_size ccs_minimize_roundtrips max_concurrent_shard_requests " +
		"pre_filter_shard_size allow_partial_search_results q sort _source _source_includes _source_excludes terminate_after " +
		"track_scores version seq_no_primary_term stored_fields docvalue_fields explain analyzer analyze_wildcard default_operator df lenient stats suggest_field suggest_mode suggest_size suggest_text ignore_throttled scroll include_named_queries_score"
	count := "ignore_unavailable allow_no_indices expand_wildcards min_score preference routing q analyzer analyze_wildcard default_operator df lenient terminate_after ignore_throttled"
	index := "version version_type if_seq_no if_primary_term op_type pipeline refresh routing timeout wait_for_active_shards require_alias require_data_stream include_source_on_error"
	get := "preference realtime refresh routing stored_fields _source _source_includes _source_excludes version version_type"
	tmpl := "create master_timeout cause"
	tmplGet := "flat_settings local master_timeout include_defaults"
	idxOpts := "ignore_unavailable allow_no_indices expand_wildcards"

	add("GET", "/", "", (*Server).info)
	add("HEAD", "/", "", (*Server).info)
	add("GET", "/_cluster/health", "wait_for_status timeout level local master_timeout wait_for_active_shards wait_for_nodes wait_for_events wait_for_no_relocating_shards wait_for_no_initializing_shards expand_wildcards", (*Server).health)
	add("POST", "/_bulk", bulk, (*Server).bulk)
	add("PUT", "/_bulk", bulk, (*Server).bulk)
	add("GET", "/_search", search, (*Server).search)
	add("POST", "/_search", search, (*Server).search)
	add("GET", "/_count", count, (*Server).count)
	add("POST", "/_count", count, (*Server).count)
	add("GET", "/_refresh", idxOpts, (*Server).refreshAPI)
	add("POST", "/_refresh", idxOpts, (*Server).refreshAPI)
	add("GET", "/_mapping", idxOpts+" local master_timeout", (*Server).getMapping)
	add("GET", "/_index_template", tmplGet, (*Server).getTemplate)
	add("GET", "/_index_template/{name}", tmplGet, (*Server).getTemplate)
	add("HEAD", "/_index_template/{name}", tmplGet, (*Server).getTemplate)
	add("PUT", "/_index_template/{name}", tmpl, (*Server).putTemplate)
	add("POST", "/_index_template/{name}", tmpl, (*Server).putTemplate)
	add("DELETE", "/_index_template/{name}", "master_timeout timeout", (*Server).deleteTemplate)
	add("GET", "/_cat/indices", "format h s v bytes health pri expand_wildcards help local master_timeout time include_unloaded_segments", (*Server).catIndices)
	add("GET", "/_cat/indices/{index}", "format h s v bytes health pri expand_wildcards help local master_timeout time include_unloaded_segments", (*Server).catIndices)
	add("POST", "/{index}/_bulk", bulk, (*Server).bulk)
	add("PUT", "/{index}/_bulk", bulk, (*Server).bulk)
	add("GET", "/{index}/_search", search, (*Server).search)
	add("POST", "/{index}/_search", search, (*Server).search)
	add("GET", "/{index}/_count", count, (*Server).count)
	add("POST", "/{index}/_count", count, (*Server).count)
	add("GET", "/{index}/_refresh", idxOpts, (*Server).refreshAPI)
	add("POST", "/{index}/_refresh", idxOpts, (*Server).refreshAPI)
	add("GET", "/{index}/_mapping", idxOpts+" local master_timeout", (*Server).getMapping)
	add("POST", "/{index}/_doc", index, (*Server).indexDoc)
	add("PUT", "/{index}/_doc/{id}", index, (*Server).indexDoc)
	add("POST", "/{index}/_doc/{id}", index, (*Server).indexDoc)
	add("PUT", "/{index}/_create/{id}", index, (*Server).indexDoc)
	add("POST", "/{index}/_create/{id}", index, (*Server).indexDoc)
	add("GET", "/{index}/_doc/{id}", get, (*Server).getDoc)
	add("HEAD", "/{index}/_doc/{id}", get, (*Server).getDoc)
	add("DELETE", "/{index}/_doc/{id}", "if_seq_no if_primary_term refresh routing timeout version version_type wait_for_active_shards", (*Server).deleteDoc)
	add("GET", "/{index}", idxOpts+" flat_settings include_defaults local master_timeout features", (*Server).getIndex)
	add("HEAD", "/{index}", idxOpts+" flat_settings include_defaults local master_timeout", (*Server).getIndex)
	add("PUT", "/{index}", "wait_for_active_shards timeout master_timeout", (*Server).createIndexAPI)
	add("DELETE", "/{index}", idxOpts+" timeout master_timeout", (*Server).deleteIndex)
}

// route dispatches like Elasticsearch's RestController: the first handler whose path and method
// match wins; a known path with the wrong method is a 405, an unknown path a 400.
func (s *Server) route(c *call) {
	segs := strings.Split(strings.Trim(c.r.URL.Path, "/"), "/")
	if c.r.URL.Path == "/" || c.r.URL.Path == "" {
		segs = []string{""}
	}
	var allowed []string
	for _, rt := range routes {
		vars, ok := matchRoute(rt.pattern, segs)
		if !ok {
			continue
		}
		if rt.method != c.r.Method {
			if !contains(allowed, rt.method) {
				allowed = append(allowed, rt.method)
			}
			continue
		}
		if e := checkParams(c, rt.params); e != nil {
			s.fail(c, e)
			return
		}
		c.vars = vars
		rt.h(s, c)
		return
	}
	uri := c.r.URL.RequestURI()
	if len(allowed) > 0 {
		s.fail(c, &esErr{status: 405, bare: true, allow: strings.Join(allowed, ","),
			reason: "Incorrect HTTP method for uri [" + uri + "] and method [" + c.r.Method + "], allowed: [" + strings.Join(allowed, ", ") + "]"})
		return
	}
	s.fail(c, &esErr{status: 400, bare: true, noStatus: true, reason: "no handler found for uri [" + uri + "] and method [" + c.r.Method + "]"})
}

func matchRoute(pattern, segs []string) (map[string]string, bool) {
	if len(pattern) != len(segs) {
		return nil, false
	}
	vars := map[string]string{}
	for i, p := range pattern {
		if strings.HasPrefix(p, "{") {
			if segs[i] == "" {
				return nil, false
			}
			v, err := url.PathUnescape(segs[i])
			if err != nil {
				return nil, false
			}
			vars[strings.Trim(p, "{}")] = v
		} else if p != segs[i] {
			return nil, false
		}
	}
	return vars, true
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// checkParams rejects query parameters the endpoint does not know, as Elasticsearch does.
func checkParams(c *call, accepted string) *esErr {
	ok := strings.Fields(commonParams + " " + accepted)
	var bad []string
	for k := range c.params {
		if !contains(ok, k) {
			bad = append(bad, "["+k+"]")
		}
	}
	if len(bad) == 0 {
		return nil
	}
	sort.Strings(bad)
	noun := "parameter"
	if len(bad) > 1 {
		noun = "parameters"
	}
	return badRequest("request [%s] contains unrecognized %s: %s", c.r.URL.Path, noun, strings.Join(bad, ", "))
}

// boolParam reads a boolean query parameter as Elasticsearch does ("" and "true" are true).
func boolParam(c *call, name string, def bool) (bool, *esErr) {
	if !c.params.Has(name) {
		return def, nil
	}
	switch v := c.params.Get(name); v {
	case "", "true":
		return true, nil
	case "false":
		return false, nil
	default:
		return false, badRequest("Failed to parse value [%s] as only [true] or [false] are allowed.", v)
	}
}

func (s *Server) info(c *call) {
	s.reply(c, 200, o(
		"name", nodeName,
		"cluster_name", "elasticsearch",
		"cluster_uuid", s.clusterUUID,
		"version", o(
			"number", Version,
			"build_flavor", "default",
			"build_type", "docker",
			"build_hash", "1a77947f34deddb41af25e6f0ddb8e830159c179",
			"build_date", "2024-08-05T10:05:34.233336849Z",
			"build_snapshot", false,
			"lucene_version", "9.11.1",
			"minimum_wire_compatibility_version", "7.17.0",
			"minimum_index_compatibility_version", "7.0.0",
		),
		"tagline", "You Know, for Search",
	))
}

func (s *Server) health(c *call) {
	s.mu.Lock()
	n := len(s.indices)
	s.mu.Unlock()
	s.reply(c, 200, o(
		"cluster_name", "elasticsearch", "status", "green", "timed_out", false,
		"number_of_nodes", 1, "number_of_data_nodes", 1,
		"active_primary_shards", n, "active_shards", n, "relocating_shards", 0, "initializing_shards", 0,
		"unassigned_shards", 0, "delayed_unassigned_shards", 0, "number_of_pending_tasks", 0,
		"number_of_in_flight_fetch", 0, "task_max_waiting_in_queue_millis", 0, "active_shards_percent_as_number", dbl(100),
	))
}

// resolve expands an index expression ("a,b", "mqtt-*", "_all") into indices. The caller holds s.mu.
func (s *Server) resolve(c *call, expr string) ([]*index, *esErr) {
	ignoreUnavailable, e := boolParam(c, "ignore_unavailable", false)
	if e != nil {
		return nil, e
	}
	allowNoIndices, e := boolParam(c, "allow_no_indices", true)
	if e != nil {
		return nil, e
	}
	names := map[string]bool{}
	wildcard := false
	for i, part := range strings.Split(expr, ",") {
		switch {
		case part == "_all" || part == "*" || part == "":
			wildcard = true
			for n := range s.indices {
				names[n] = true
			}
		case strings.HasPrefix(part, "-") && i > 0:
			for n := range names {
				if glob(part[1:], n) {
					delete(names, n)
				}
			}
		case strings.Contains(part, "*"):
			wildcard = true
			for n := range s.indices {
				if glob(part, n) {
					names[n] = true
				}
			}
		default:
			if s.indices[part] == nil {
				if ignoreUnavailable {
					continue
				}
				return nil, indexNotFound(part, "index_or_alias")
			}
			names[part] = true
		}
	}
	if len(names) == 0 && wildcard && !allowNoIndices {
		return nil, indexNotFound(expr, "index_or_alias")
	}
	var out []*index
	for n := range names {
		out = append(out, s.indices[n])
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out, nil
}

// createIndex creates an index from the highest-priority matching template and an optional
// create-index body. The caller holds s.mu and has checked the name.
func (s *Server) createIndex(name string, body *jv, raw []byte) (*index, *esErr) {
	now := s.now()
	ix := &index{name: name, uuid: randomID(22), created: now, lastRefresh: now, docs: map[string]*doc{},
		settings: map[string]string{}, mappings: map[string]any{}}
	var best *template
	for _, t := range s.templates {
		for _, p := range t.patterns {
			if glob(p, name) && (best == nil || t.priority > best.priority) {
				best = t
			}
		}
	}
	if best != nil {
		for k, v := range best.settings {
			ix.settings[k] = v
		}
		ix.mappings = deepCopy(best.mappings).(map[string]any)
	}
	if body != nil {
		for i, k := range body.keys {
			v := body.vals[i]
			switch k {
			case "settings":
				if v.kind == 'o' {
					flattenSettings("", v.any().(map[string]any), ix.settings)
				}
			case "mappings":
				m, e := parseMappings(raw, v)
				if e != nil {
					return nil, e
				}
				mergeMaps(ix.mappings, m)
			case "aliases":
				if v.kind == 'o' && len(v.keys) > 0 {
					return nil, unsupported("aliases")
				}
			default:
				return nil, parseErr(400, "parse_exception", raw, &jsonErr{off: v.off, msg: "unknown key [" + k + "] for create index"})
			}
		}
	}
	for k, v := range map[string]string{"index.number_of_shards": "1", "index.number_of_replicas": "1"} {
		if _, ok := ix.settings[k]; !ok {
			ix.settings[k] = v
		}
	}
	s.indices[name] = ix
	return ix, nil
}

func mergeMaps(dst, src map[string]any) {
	for k, v := range src {
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				mergeMaps(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
}

func (s *Server) indexSettings(ix *index) map[string]any {
	flat := map[string]string{}
	for k, v := range ix.settings {
		flat[k] = v
	}
	flat["index.uuid"] = ix.uuid
	flat["index.provided_name"] = ix.name
	flat["index.creation_date"] = int64Str(ix.created.UnixMilli())
	flat["index.version.created"] = "8512000"
	return nestSettings(flat)
}

func int64Str(n int64) string { return strconv.FormatInt(n, 10) }

func (s *Server) getIndex(c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ixs, e := s.resolve(c, c.vars["index"])
	if c.r.Method == http.MethodHead {
		if e != nil {
			s.writeEmpty(c, 404)
		} else {
			s.writeEmpty(c, 200)
		}
		return
	}
	if e != nil {
		s.fail(c, e)
		return
	}
	out := obj{}
	for _, ix := range ixs {
		out = append(out, kv{ix.name, o("aliases", obj{}, "mappings", ix.mappings, "settings", s.indexSettings(ix))})
	}
	s.reply(c, 200, out)
}

func (s *Server) getMapping(c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ixs, e := s.resolve(c, c.vars["index"])
	if e != nil {
		s.fail(c, e)
		return
	}
	out := obj{}
	for _, ix := range ixs {
		out = append(out, kv{ix.name, o("mappings", ix.mappings)})
	}
	s.reply(c, 200, out)
}

func (s *Server) createIndexAPI(c *call) {
	name := c.vars["index"]
	var body *jv
	if len(bytes.TrimSpace(c.body)) > 0 {
		var err error
		if body, err = parseJSON(c.body); err != nil {
			s.fail(c, parseErr(400, "x_content_parse_exception", c.body, err))
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := checkIndexName(name); e != nil {
		s.fail(c, e)
		return
	}
	if ix := s.indices[name]; ix != nil {
		e := newErr(400, "resource_already_exists_exception", "index [%s/%s] already exists", name, ix.uuid)
		e.extra = o("index_uuid", ix.uuid, "index", name)
		s.fail(c, e)
		return
	}
	if _, e := s.createIndex(name, body, c.body); e != nil {
		s.fail(c, e)
		return
	}
	s.reply(c, 200, o("acknowledged", true, "shards_acknowledged", true, "index", name))
}

func (s *Server) deleteIndex(c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	expr := c.vars["index"]
	if strings.Contains(expr, "*") || expr == "_all" {
		s.fail(c, badRequest("Wildcard expressions or all indices are not allowed"))
		return
	}
	ixs, e := s.resolve(c, expr)
	if e != nil {
		s.fail(c, e)
		return
	}
	for _, ix := range ixs {
		delete(s.indices, ix.name)
	}
	s.reply(c, 200, o("acknowledged", true))
}

func (s *Server) refreshAPI(c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ixs, e := s.resolve(c, c.vars["index"])
	if e != nil {
		s.fail(c, e)
		return
	}
	now := s.now()
	for _, ix := range ixs {
		ix.refresh(now)
	}
	s.reply(c, 200, o("_shards", o("total", 2*len(ixs), "successful", len(ixs), "failed", 0)))
}

func (s *Server) catIndices(c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.params.Has("h") || c.params.Has("s") {
		s.fail(c, unsupported("_cat/indices [h] and [s]"))
		return
	}
	ixs, e := s.resolve(c, c.vars["index"])
	if e != nil {
		s.fail(c, e)
		return
	}
	var rows []any
	var text strings.Builder
	for _, ix := range ixs {
		size := 0
		for _, d := range ix.docs {
			size += len(d.src)
		}
		docs := intStr(len(ix.docs))
		rows = append(rows, o("health", "green", "status", "open", "index", ix.name, "uuid", ix.uuid,
			"pri", ix.settings["index.number_of_shards"], "rep", ix.settings["index.number_of_replicas"],
			"docs.count", docs, "docs.deleted", "0", "store.size", intStr(size)+"b", "pri.store.size", intStr(size)+"b",
			"dataset.size", intStr(size)+"b"))
		text.WriteString("green open " + ix.name + " " + ix.uuid + " 1 1 " + docs + " 0 " + intStr(size) + "b " + intStr(size) + "b " + intStr(size) + "b\n")
	}
	if c.params.Get("format") == "json" {
		if rows == nil {
			rows = []any{}
		}
		s.reply(c, 200, rows)
		return
	}
	c.w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
	c.w.WriteHeader(200)
	_, _ = io.WriteString(c.w, text.String())
}

func (s *Server) putTemplate(c *call) {
	name := c.vars["name"]
	if len(bytes.TrimSpace(c.body)) == 0 {
		s.fail(c, newErr(400, "parse_exception", "request body is required"))
		return
	}
	create, e := boolParam(c, "create", false)
	if e != nil {
		s.fail(c, e)
		return
	}
	t, e := parseTemplate(name, c.body)
	if e != nil {
		s.fail(c, e)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, exists := s.templates[name]; exists && create {
		s.fail(c, badRequest("index template [%s] already exists", name))
		return
	}
	var clash []string
	var names []string
	for _, other := range s.templates {
		if other.name == name || other.priority != t.priority {
			continue
		}
		for _, p := range t.patterns {
			for _, q := range other.patterns {
				if globsOverlap(p, q) && !contains(names, other.name) {
					names = append(names, other.name)
					clash = append(clash, other.name+" => ["+strings.Join(other.patterns, ", ")+"]")
				}
			}
		}
	}
	if len(clash) > 0 {
		s.fail(c, badRequest("index template [%s] has index patterns [%s] matching patterns from existing templates [%s] with patterns (%s) that have the same priority [%d], multiple index templates may not match during index creation, please use a different priority",
			name, strings.Join(t.patterns, ", "), strings.Join(names, ","), strings.Join(clash, ","), t.priority))
		return
	}
	s.templates[name] = t
	s.reply(c, 200, o("acknowledged", true))
}

func (s *Server) getTemplate(c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	expr := c.vars["name"]
	if expr == "" {
		expr = "*"
	}
	var found []*template
	for _, part := range strings.Split(expr, ",") {
		matched := false
		for _, t := range s.templates {
			if glob(part, t.name) {
				matched = true
				if !containsTemplate(found, t) {
					found = append(found, t)
				}
			}
		}
		if !matched && !strings.Contains(part, "*") {
			if c.r.Method == http.MethodHead {
				s.writeEmpty(c, 404)
				return
			}
			s.fail(c, newErr(404, "resource_not_found_exception", "index template matching [%s] not found", part))
			return
		}
	}
	if c.r.Method == http.MethodHead {
		s.writeEmpty(c, 200)
		return
	}
	sort.Slice(found, func(i, j int) bool { return found[i].name < found[j].name })
	list := []any{}
	for _, t := range found {
		list = append(list, o("name", t.name, "index_template", t.render()))
	}
	s.reply(c, 200, o("index_templates", list))
}

func containsTemplate(list []*template, t *template) bool {
	for _, e := range list {
		if e == t {
			return true
		}
	}
	return false
}

// render is the template as GET _index_template shows it: settings normalised, composed_of always present.
func (t *template) render() obj {
	out := o("index_patterns", t.patterns)
	inner := obj{}
	if len(t.settings) > 0 {
		inner = append(inner, kv{"settings", nestSettings(t.settings)})
	}
	if len(t.mappings) > 0 {
		inner = append(inner, kv{"mappings", t.mappings})
	}
	if len(inner) > 0 {
		out = append(out, kv{"template", inner})
	}
	out = append(out, kv{"composed_of", []string{}})
	if t.hasPrio {
		out = append(out, kv{"priority", t.priority})
	}
	for _, k := range []string{"version", "_meta", "allow_auto_create", "ignore_missing_component_templates", "deprecated"} {
		if v := t.body.field(k); v != nil {
			out = append(out, kv{k, v.ordered()})
		}
	}
	return out
}

func (s *Server) deleteTemplate(c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	name := c.vars["name"]
	if _, ok := s.templates[name]; !ok {
		s.fail(c, newErr(404, "resource_not_found_exception", "index_template matching [%s] not found", name))
		return
	}
	delete(s.templates, name)
	s.reply(c, 200, o("acknowledged", true))
}
