package estest

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/elastic/go-elasticsearch/v8/esapi"
	"github.com/elastic/go-elasticsearch/v8/esutil"
	"github.com/elastic/go-elasticsearch/v8/typedapi/types"
)

// do checks the transport error and decodes the JSON body: do(t)(client.Info()).
func do(t *testing.T) func(*esapi.Response, error) (int, map[string]any) {
	return func(res *esapi.Response, err error) (int, map[string]any) {
		t.Helper()
		if err != nil {
			t.Fatalf("request: %v", err)
		}
		defer res.Body.Close()
		var m map[string]any
		if err := json.NewDecoder(res.Body).Decode(&m); err != nil {
			t.Fatalf("decode %d body: %v", res.StatusCode, err)
		}
		return res.StatusCode, m
	}
}

// errType returns error.type (or the bare error string) of an error body.
func errType(m map[string]any) string {
	switch e := m["error"].(type) {
	case map[string]any:
		return e["type"].(string)
	case string:
		return e
	}
	return ""
}

func errReason(m map[string]any) string {
	e, _ := m["error"].(map[string]any)
	r, _ := e["reason"].(string)
	return r
}

func ndjson(lines ...string) io.Reader { return strings.NewReader(strings.Join(lines, "\n") + "\n") }

const mqttTemplate = `{"index_patterns":["mqtt-*"],"priority":10,"template":{"settings":{"number_of_shards":1},` +
	`"mappings":{"dynamic":true,"properties":{"topic":{"type":"keyword"},"ts":{"type":"date"},` +
	`"payload":{"properties":{"temp":{"type":"float"}}}}}}}`

func putTemplate(t *testing.T, c *elasticsearch.Client) {
	t.Helper()
	status, body := do(t)(c.Indices.PutIndexTemplate("mqtt", strings.NewReader(mqttTemplate)))
	if status != 200 || body["acknowledged"] != true {
		t.Fatalf("put template: got %d %v, want 200 acknowledged", status, body)
	}
}

func TestInfoPassesProductCheck(t *testing.T) {
	s := New(t)
	c := s.Client(t)
	status, body := do(t)(c.Info())
	if status != 200 {
		t.Fatalf("info status: got %d, want 200", status)
	}
	if got := body["version"].(map[string]any)["number"]; got != Version {
		t.Errorf("version: got %v, want %s", got, Version)
	}
	if got := body["tagline"]; got != "You Know, for Search" {
		t.Errorf("tagline: got %v", got)
	}
	res, err := c.Ping()
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("HEAD /: got %v %v, want 200", res, err)
	}
	status, body = do(t)(c.Cluster.Health())
	if status != 200 || body["status"] != "green" {
		t.Errorf("health: got %d %v", status, body["status"])
	}
	// Every response, errors included, carries the product header and a JSON content type.
	res, err = c.Indices.Get([]string{"missing"})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 404 || res.Header.Get("X-Elastic-Product") != "Elasticsearch" || res.Header.Get("Content-Type") != "application/json" {
		t.Errorf("404: got %d %q %q", res.StatusCode, res.Header.Get("X-Elastic-Product"), res.Header.Get("Content-Type"))
	}
}

func TestBulkSuccessShapes(t *testing.T) {
	s := New(t)
	c := s.Client(t)
	body := `{"index":{"_index":"mqtt-a","_id":"1"}}` + "\n" + `{"topic":"a","n":1}` + "\n" +
		`{"create":{"_index":"mqtt-a"}}` + "\n" + `{"topic":"b"}` + "\n" +
		`{"index":{"_index":"mqtt-a","_id":"1"}}` + "\n" + `{"topic":"a","n":2}` + "\n" +
		`{"delete":{"_index":"mqtt-a","_id":"nope"}}` + "\n"
	res, err := c.Bulk(strings.NewReader(body), c.Bulk.WithRefresh("true"))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var br esutil.BulkIndexerResponse
	if err := json.NewDecoder(res.Body).Decode(&br); err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 200 || br.HasErrors || len(br.Items) != 4 {
		t.Fatalf("bulk: got %d errors=%v items=%d, want 200 false 4", res.StatusCode, br.HasErrors, len(br.Items))
	}
	want := []struct {
		action, result string
		status         int
		version        int64
	}{{"index", "created", 201, 1}, {"create", "created", 201, 1}, {"index", "updated", 200, 2}, {"delete", "not_found", 404, 1}}
	for i, w := range want {
		it, ok := br.Items[i][w.action]
		if !ok {
			t.Fatalf("item %d: got %v, want action %s", i, br.Items[i], w.action)
		}
		if it.Result != w.result || it.Status != w.status || it.Version != w.version || it.Index != "mqtt-a" || it.SeqNo != int64(i) || it.PrimTerm != 1 || it.Shards.Total != 2 {
			t.Errorf("item %d: got %+v, want %+v", i, it, w)
		}
	}
	if id := br.Items[1]["create"].DocumentID; len(id) != 20 {
		t.Errorf("auto id: got %q, want 20 characters", id)
	}
	if got := string(s.Docs("mqtt-a")["1"]); got != `{"topic":"a","n":2}` {
		t.Errorf("stored source: got %s", got)
	}
	reqs := s.Requests()
	if last := reqs[len(reqs)-1]; last.Path != "/_bulk" || string(last.Body) != body || last.Query.Get("refresh") != "true" {
		t.Errorf("recorded request: got %s %s %v", last.Path, last.Body, last.Query)
	}
	status, count := do(t)(c.Count(c.Count.WithIndex("mqtt-a")))
	if status != 200 || count["count"] != float64(2) {
		t.Errorf("count: got %d %v, want 2", status, count["count"])
	}
}

func TestBulkItemFailures(t *testing.T) {
	s := New(t)
	c := s.Client(t)
	putTemplate(t, c)
	s.FailItems(func(action, index, id string, doc []byte) (int, string, string) {
		if id == "rejected" {
			return 429, "es_rejected_execution_exception", ReasonRejected
		}
		return 0, "", ""
	})
	status, body := do(t)(c.Bulk(ndjson(
		`{"create":{"_index":"mqtt-x","_id":"1"}}`, `{"topic":"a"}`,
		`{"create":{"_index":"mqtt-x","_id":"1"}}`, `{"topic":"a"}`,
		`{"index":{"_index":"mqtt-x","_id":"rejected"}}`, `{"topic":"a"}`,
		`{"index":{"_index":"mqtt-x","_id":"bad"}}`, `{"payload":{"temp":"hot"}}`,
		`{"index":{"_index":"Mqtt-X","_id":"2"}}`, `{"topic":"a"}`,
		`{"index":{"_index":"mqtt-x","_id":"3"}}`, `{"topic":`,
	)))
	if status != 200 || body["errors"] != true {
		t.Fatalf("bulk: got %d errors=%v, want 200 true", status, body["errors"])
	}
	items := body["items"].([]any)
	want := []struct {
		status     int
		typ, cause string
	}{
		{201, "", ""},
		{409, "version_conflict_engine_exception", "[1]: version conflict, document already exists (current version [1])"},
		{429, "es_rejected_execution_exception", ReasonRejected},
		{400, "document_parsing_exception", "[1:20] failed to parse field [payload.temp] of type [float] in document with id 'bad'. Preview of field's value: 'hot'"},
		{400, "invalid_index_name_exception", "Invalid index name [Mqtt-X], must be lowercase"},
		{400, "document_parsing_exception", "[1:10] failed to parse: Unexpected end-of-input: expected a value"},
	}
	for i, w := range want {
		for _, v := range items[i].(map[string]any) {
			it := v.(map[string]any)
			if int(it["status"].(float64)) != w.status {
				t.Errorf("item %d status: got %v, want %d", i, it["status"], w.status)
			}
			if w.typ == "" {
				continue
			}
			e := it["error"].(map[string]any)
			if e["type"] != w.typ || e["reason"] != w.cause {
				t.Errorf("item %d error: got %v: %v, want %s: %s", i, e["type"], e["reason"], w.typ, w.cause)
			}
		}
	}
	if got := len(s.Docs("mqtt-x")); got != 1 {
		t.Errorf("docs stored: got %d, want 1", got)
	}
}

func TestBulkStrictParsing(t *testing.T) {
	s := New(t)
	c := s.Client(t)
	for _, tc := range []struct {
		name, body, typ, reason string
	}{
		{"no trailing newline", `{"index":{"_index":"a"}}` + "\n" + `{"x":1}`, "illegal_argument_exception", `The bulk request must be terminated by a newline [\n]`},
		{"malformed action", `{"index":{"_index":"a"}` + "\n" + `{"x":1}` + "\n", "x_content_e_o_f_exception", "[1:24] Unexpected end-of-input: expected close marker for Object"},
		{"unknown parameter", `{"index":{"_index":"a","_type":"doc"}}` + "\n" + `{"x":1}` + "\n", "illegal_argument_exception", "Action/metadata line [1] contains an unknown parameter [_type]"},
		{"missing index", `{"index":{}}` + "\n" + `{"x":1}` + "\n", "action_request_validation_exception", "Validation Failed: 1: index is missing;"},
		{"empty", "\n", "action_request_validation_exception", "Validation Failed: 1: no requests added;"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := do(t)(c.Bulk(strings.NewReader(tc.body)))
			if status != 400 || errType(body) != tc.typ || errReason(body) != tc.reason {
				t.Errorf("got %d %s: %s, want 400 %s: %s", status, errType(body), errReason(body), tc.typ, tc.reason)
			}
		})
	}
}

func TestTemplateAppliedToNewIndex(t *testing.T) {
	s := New(t)
	c := s.Client(t)
	putTemplate(t, c)
	if raw, ok := s.Template("mqtt"); !ok || string(raw) != mqttTemplate {
		t.Errorf("stored template: got %s %v, want the body sent", raw, ok)
	}
	status, body := do(t)(c.Indices.GetIndexTemplate(c.Indices.GetIndexTemplate.WithName("mqtt")))
	tpl := body["index_templates"].([]any)[0].(map[string]any)
	if status != 200 || tpl["name"] != "mqtt" {
		t.Fatalf("get template: got %d %v", status, body)
	}
	settings := tpl["index_template"].(map[string]any)["template"].(map[string]any)["settings"]
	if got, _ := json.Marshal(settings); string(got) != `{"index":{"number_of_shards":"1"}}` {
		t.Errorf("normalised settings: got %s", got)
	}
	if res, err := c.Indices.ExistsIndexTemplate("nope"); err != nil || res.StatusCode != 404 {
		t.Errorf("exists missing template: got %v %v, want 404", res, err)
	}
	status, body = do(t)(c.Indices.GetIndexTemplate(c.Indices.GetIndexTemplate.WithName("nope")))
	if status != 404 || errType(body) != "resource_not_found_exception" {
		t.Errorf("get missing template: got %d %v", status, body)
	}
	// Same priority, overlapping patterns: refused as Elasticsearch does.
	status, body = do(t)(c.Indices.PutIndexTemplate("other", strings.NewReader(`{"index_patterns":["mqtt-2*"],"priority":10}`)))
	if status != 400 || !strings.Contains(errReason(body), "that have the same priority [10]") {
		t.Errorf("overlapping template: got %d %v", status, body)
	}

	do(t)(c.Index("mqtt-2024", strings.NewReader(`{"topic":"t","payload":{"temp":21.5,"unit":"C"}}`)))
	if got := s.Indices(); len(got) != 1 || got[0] != "mqtt-2024" {
		t.Fatalf("indices: got %v", got)
	}
	var m struct {
		Dynamic    bool `json:"dynamic"`
		Properties map[string]struct {
			Type       string `json:"type"`
			Properties map[string]map[string]any
		}
	}
	if err := json.Unmarshal(s.Mappings("mqtt-2024"), &m); err != nil {
		t.Fatal(err)
	}
	if m.Properties["topic"].Type != "keyword" || m.Properties["payload"].Properties["temp"]["type"] != "float" {
		t.Errorf("template mappings not applied: %s", s.Mappings("mqtt-2024"))
	}
	if m.Properties["payload"].Properties["unit"]["type"] != "text" {
		t.Errorf("dynamic mapping of a new string: got %v, want text", m.Properties["payload"].Properties["unit"])
	}
}

func indexReadings(t *testing.T, c *elasticsearch.Client) {
	t.Helper()
	now := time.Now().UTC()
	ts := func(ago time.Duration) string { return now.Add(-ago).Format(time.RFC3339) }
	status, body := do(t)(c.Bulk(ndjson(
		`{"index":{"_index":"mqtt-1"}}`, `{"topic":"a","ts":"`+ts(10*time.Minute)+`","payload":{"temp":20}}`,
		`{"index":{"_index":"mqtt-1"}}`, `{"topic":"a","ts":"`+ts(2*time.Minute)+`","payload":{"temp":21.5}}`,
		`{"index":{"_index":"mqtt-2"}}`, `{"topic":"b","ts":"`+ts(time.Minute)+`","payload":{"temp":30}}`,
		`{"index":{"_index":"mqtt-2"}}`, `{"topic":"a","ts":`+itoa64(now.UnixMilli())+`,"payload":{"temp":22.5}}`,
		`{"index":{"_index":"other"}}`, `{"topic":"a","payload":{"temp":99}}`,
	), c.Bulk.WithRefresh("wait_for")))
	if status != 200 || body["errors"] != false {
		t.Fatalf("bulk: got %d %v", status, body)
	}
}

func itoa64(n int64) string { b, _ := json.Marshal(n); return string(b) }

func TestSearchTermsWithAvg(t *testing.T) {
	s := New(t)
	c := s.Client(t)
	putTemplate(t, c)
	indexReadings(t, c)
	q := `{"size":0,"query":{"bool":{"filter":[{"range":{"ts":{"gte":"now-5m"}}}]}},
		"aggs":{"by_topic":{"terms":{"field":"topic"},"aggs":{"avg_temp":{"avg":{"field":"payload.temp"}}}},
		"max_temp":{"max":{"field":"payload.temp"}}}}`
	status, body := do(t)(c.Search(c.Search.WithIndex("mqtt-*"), c.Search.WithBody(strings.NewReader(q))))
	if status != 200 {
		t.Fatalf("search: got %d %v", status, body)
	}
	hits := body["hits"].(map[string]any)
	if got := hits["total"].(map[string]any)["value"]; got != float64(3) {
		t.Errorf("total within now-5m: got %v, want 3", got)
	}
	aggs := body["aggregations"].(map[string]any)
	got, _ := json.Marshal(aggs["by_topic"])
	want := `{"buckets":[{"avg_temp":{"value":22},"doc_count":2,"key":"a"},{"avg_temp":{"value":30},"doc_count":1,"key":"b"}],"doc_count_error_upper_bound":0,"sum_other_doc_count":0}`
	if string(got) != want {
		t.Errorf("terms+avg:\n got %s\nwant %s", got, want)
	}
	if got := aggs["max_temp"].(map[string]any)["value"]; got != float64(30) {
		t.Errorf("max: got %v, want 30", got)
	}

	// The typed client asks for typed_keys and decodes into its own structures.
	tc, err := elasticsearch.NewTypedClient(elasticsearch.Config{Addresses: []string{s.URL}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := tc.Search().Index("mqtt-*").Raw(strings.NewReader(q)).Do(context.Background())
	if err != nil {
		t.Fatalf("typed search: %v", err)
	}
	terms, ok := res.Aggregations["by_topic"].(*types.StringTermsAggregate)
	if !ok {
		t.Fatalf("typed terms: got %T", res.Aggregations["by_topic"])
	}
	b := terms.Buckets.([]types.StringTermsBucket)[0]
	avg := b.Aggregations["avg_temp"].(*types.AvgAggregate)
	if b.Key != "a" || b.DocCount != 2 || avg.Value == nil || float64(*avg.Value) != 22 {
		t.Errorf("typed bucket: got %v %d %v", b.Key, b.DocCount, avg.Value)
	}
}

func TestSearchHitsSortAndDateHistogram(t *testing.T) {
	s := New(t)
	c := s.Client(t)
	putTemplate(t, c)
	indexReadings(t, c)
	q := `{"size":2,"sort":[{"payload.temp":"desc"}],"_source":["topic"],"query":{"terms":{"topic":["a","b"]}},
		"aggs":{"per_day":{"date_histogram":{"field":"ts","calendar_interval":"day"}}}}`
	status, body := do(t)(c.Search(c.Search.WithIndex("mqtt-1,mqtt-2"), c.Search.WithBody(strings.NewReader(q))))
	if status != 200 {
		t.Fatalf("search: got %d %v", status, body)
	}
	hits := body["hits"].(map[string]any)
	if hits["max_score"] != nil {
		t.Errorf("max_score with sort: got %v, want null", hits["max_score"])
	}
	first := hits["hits"].([]any)[0].(map[string]any)
	if src, _ := json.Marshal(first["_source"]); string(src) != `{"topic":"b"}` || first["sort"].([]any)[0] != float64(30) || first["_score"] != nil {
		t.Errorf("first hit: got %v", first)
	}
	var days int
	for _, bk := range body["aggregations"].(map[string]any)["per_day"].(map[string]any)["buckets"].([]any) {
		days += int(bk.(map[string]any)["doc_count"].(float64))
	}
	if days != 4 {
		t.Errorf("date_histogram doc counts: got %d, want 4", days)
	}
}

func TestRefreshMakesWritesSearchable(t *testing.T) {
	s := New(t)
	c := s.Client(t)
	do(t)(c.Index("m", strings.NewReader(`{"x":1}`), c.Index.WithDocumentID("1")))
	if _, body := do(t)(c.Count(c.Count.WithIndex("m"))); body["count"] != float64(0) {
		t.Errorf("count before refresh: got %v, want 0", body["count"])
	}
	if _, body := do(t)(c.Get("m", "1")); body["found"] != true {
		t.Errorf("realtime get: got %v, want found", body)
	}
	do(t)(c.Indices.Refresh(c.Indices.Refresh.WithIndex("m")))
	if _, body := do(t)(c.Count(c.Count.WithIndex("m"))); body["count"] != float64(1) {
		t.Errorf("count after refresh: got %v, want 1", body["count"])
	}
}

func TestFailRequests(t *testing.T) {
	for _, tc := range []struct {
		n, status  int
		wantStatus int
		wantReqs   int
		wantType   string
	}{
		{2, 503, 200, 3, ""},                                // the client retries 503 three times by default
		{4, 503, 503, 4, "cluster_block_exception"},         // and gives up after the fourth attempt
		{1, 429, 429, 1, "es_rejected_execution_exception"}, // 429 is not retried by the client
	} {
		s := New(t)
		c := s.Client(t)
		s.FailRequests(tc.n, tc.status)
		status, body := do(t)(c.Bulk(ndjson(`{"index":{"_index":"a"}}`, `{"x":1}`)))
		if status != tc.wantStatus || (tc.wantType != "" && errType(body) != tc.wantType) {
			t.Errorf("FailRequests(%d, %d): got %d %v, want %d %s", tc.n, tc.status, status, body, tc.wantStatus, tc.wantType)
		}
		if got := len(s.Requests()); got != tc.wantReqs {
			t.Errorf("FailRequests(%d, %d): server saw %d requests, want %d", tc.n, tc.status, got, tc.wantReqs)
		}
	}
}

func TestDropConnections(t *testing.T) {
	s := New(t)
	c := s.Client(t)
	s.DropConnections(1)
	status, _ := do(t)(c.Bulk(ndjson(`{"index":{"_index":"a","_id":"1"}}`, `{"x":1}`)))
	reqs := s.Requests()
	if status != 200 || len(reqs) != 2 || string(reqs[0].Body) != string(reqs[1].Body) {
		t.Errorf("one drop: got %d after %d requests, want 200 after the client's retry of the same body", status, len(reqs))
	}
	s.DropConnections(4)
	res, err := c.Bulk(ndjson(`{"index":{"_index":"a","_id":"2"}}`, `{"x":1}`))
	if err == nil {
		res.Body.Close()
		t.Fatalf("four drops: got status %d, want a transport error", res.StatusCode)
	}
}

func TestLatencyHonoursContext(t *testing.T) {
	s := New(t)
	c := s.Client(t)
	s.SetLatency(5 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Info(c.Info.WithContext(ctx))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v, want about the 100ms timeout", d)
	}
}

func TestUnsupportedAndInvalidQueries(t *testing.T) {
	s := New(t)
	c := s.Client(t)
	do(t)(c.Index("m", strings.NewReader(`{"msg":"hello world","n":1}`), c.Index.WithRefresh("true")))
	for _, tc := range []struct {
		name, body, typ, reason string
	}{
		{"not emulated", `{"query":{"match_phrase":{"msg":"hello"}}}`, "estest_unsupported_exception", "estest: query [match_phrase] is not supported by this fake Elasticsearch"},
		{"unknown query", `{"query":{"nope":{}}}`, "parsing_exception", "unknown query [nope]"},
		{"terms on text", `{"aggs":{"t":{"terms":{"field":"msg"}}}}`, "search_phase_execution_exception", "all shards failed"},
		{"range math on long", `{"query":{"range":{"n":{"gte":"now-5m"}}}}`, "search_phase_execution_exception", "all shards failed"},
		{"unknown agg", `{"aggs":{"t":{"nope":{"field":"n"}}}}`, "parsing_exception", "Unknown aggregation type [nope]"},
		{"no mapping to sort", `{"sort":["missing"]}`, "search_phase_execution_exception", "all shards failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := do(t)(c.Search(c.Search.WithIndex("m"), c.Search.WithBody(strings.NewReader(tc.body))))
			if status != 400 || errType(body) != tc.typ || errReason(body) != tc.reason {
				t.Errorf("got %d %s: %s, want 400 %s: %s", status, errType(body), errReason(body), tc.typ, tc.reason)
			}
		})
	}
	_, body := do(t)(c.Search(c.Search.WithIndex("m"), c.Search.WithBody(strings.NewReader(`{"aggs":{"t":{"terms":{"field":"msg"}}}}`))))
	root := body["error"].(map[string]any)["root_cause"].([]any)[0].(map[string]any)
	if !strings.HasPrefix(root["reason"].(string), "Fielddata is disabled on [msg] in [m].") {
		t.Errorf("fielddata root cause: got %v", root)
	}
	status, body := do(t)(c.Search(c.Search.WithIndex("missing")))
	if status != 404 || errType(body) != "index_not_found_exception" {
		t.Errorf("missing index: got %d %v", status, body)
	}
}

func TestRoutingErrors(t *testing.T) {
	s := New(t)
	for _, tc := range []struct {
		method, path string
		status       int
		body, allow  string
	}{
		{"DELETE", "/_cluster/health", 405, `{"error":"Incorrect HTTP method for uri [/_cluster/health] and method [DELETE], allowed: [GET]","status":405}`, "GET"},
		{"GET", "/a/b/c/d", 400, `{"error":"no handler found for uri [/a/b/c/d] and method [GET]"}`, ""},
		{"GET", "/_search?nope=1", 400, `{"error":{"root_cause":[{"type":"illegal_argument_exception","reason":"request [/_search] contains unrecognized parameter: [nope]"}],"type":"illegal_argument_exception","reason":"request [/_search] contains unrecognized parameter: [nope]"},"status":400}`, ""},
	} {
		req, _ := http.NewRequest(tc.method, s.URL+tc.path, nil)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != tc.status || string(b) != tc.body || res.Header.Get("Allow") != tc.allow || res.Header.Get("X-Elastic-Product") != "Elasticsearch" {
			t.Errorf("%s %s: got %d %s (Allow %q), want %d %s", tc.method, tc.path, res.StatusCode, b, res.Header.Get("Allow"), tc.status, tc.body)
		}
	}
}

func TestFilterPath(t *testing.T) {
	s := New(t)
	c := s.Client(t)
	s.FailItems(func(_, _, id string, _ []byte) (int, string, string) {
		if id == "2" {
			return 400, "mapper_parsing_exception", "failed to parse"
		}
		return 0, "", ""
	})
	res, err := c.Bulk(ndjson(`{"index":{"_index":"a","_id":"1"}}`, `{}`, `{"index":{"_index":"a","_id":"2"}}`, `{}`),
		c.Bulk.WithFilterPath("errors", "items.*.error"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	// Elasticsearch drops items left empty by the filter: only the failed one remains.
	if want := `{"errors":true,"items":[{"index":{"error":{"type":"mapper_parsing_exception","reason":"failed to parse"}}}]}`; string(b) != want {
		t.Errorf("filter_path:\n got %s\nwant %s", b, want)
	}
}

func TestAuth(t *testing.T) {
	s := New(t)
	s.RequireBasicAuth("elastic", "secret")
	anon, err := elasticsearch.NewClient(elasticsearch.Config{Addresses: []string{s.URL}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := anon.Info()
	if err != nil {
		t.Fatal(err)
	}
	status, body := do(t)(res, nil)
	if status != 401 || errType(body) != "security_exception" || errReason(body) != "missing authentication credentials for REST request [/]" {
		t.Errorf("anonymous: got %d %v", status, body)
	}
	if got := res.Header.Values("WWW-Authenticate"); len(got) != 3 || got[0] != `Basic realm="security", charset="UTF-8"` {
		t.Errorf("WWW-Authenticate: got %q", got)
	}
	wrong, _ := elasticsearch.NewClient(elasticsearch.Config{Addresses: []string{s.URL}, Username: "elastic", Password: "nope"})
	if status, body := do(t)(wrong.Info()); status != 401 || errReason(body) != "unable to authenticate user [elastic] for REST request [/]" {
		t.Errorf("wrong password: got %d %v", status, body)
	}
	if status, _ := do(t)(s.Client(t).Info()); status != 200 {
		t.Errorf("with credentials: got %d, want 200", status)
	}

	k := New(t)
	k.RequireAPIKey("aWQ6a2V5")
	if status, _ := do(t)(k.Client(t).Info()); status != 200 {
		t.Errorf("api key: got %d, want 200", status)
	}
	bad, _ := elasticsearch.NewClient(elasticsearch.Config{Addresses: []string{k.URL}, APIKey: "bm9wZQ=="})
	if status, body := do(t)(bad.Info()); status != 401 || errType(body) != "security_exception" {
		t.Errorf("wrong api key: got %d %v", status, body)
	}
}

func TestCompressedRequestBody(t *testing.T) {
	s := New(t)
	c, err := elasticsearch.NewClient(elasticsearch.Config{Addresses: []string{s.URL}, CompressRequestBody: true})
	if err != nil {
		t.Fatal(err)
	}
	body := `{"index":{"_index":"z","_id":"1"}}` + "\n" + `{"x":1}` + "\n"
	if status, resp := do(t)(c.Bulk(strings.NewReader(body))); status != 200 || resp["errors"] != false {
		t.Fatalf("gzip bulk: got %d %v", status, resp)
	}
	if got := string(s.Requests()[0].Body); got != body {
		t.Errorf("recorded body: got %q, want the decompressed NDJSON", got)
	}
}
