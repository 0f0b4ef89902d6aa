package elasticsearch

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidemq/tide/conf"
	"github.com/tidemq/tide/datastore"
	"github.com/tidemq/tide/datastore/elasticsearch/estest"
)

const wantTemplate = `{"_meta":{"description":"MQTT messages stored by Tide's elasticsearch sink","managed_by":"tide"},` +
	`"index_patterns":["mqtt-*"],"priority":200,"template":{"mappings":{"date_detection":false,"dynamic_templates":[` +
	`{"integers":{"mapping":{"ignore_malformed":true,"type":"double"},"match_mapping_type":"long"}},` +
	`{"decimals":{"mapping":{"ignore_malformed":true,"type":"double"},"match_mapping_type":"double"}},` +
	`{"booleans":{"mapping":{"type":"keyword"},"match_mapping_type":"boolean"}},` +
	`{"strings":{"mapping":{"ignore_above":1024,"type":"keyword"},"match_mapping_type":"string"}}],` +
	`"properties":{"client_id":{"type":"keyword"},"content_type":{"type":"keyword"},"extra":{"dynamic":true,"type":"object"},` +
	`"payload":{"type":"binary"},"payload_json":{"dynamic":true,"type":"object"},"payload_json_skipped":{"type":"keyword"},` +
	`"qos":{"type":"byte"},"retain":{"type":"boolean"},"time":{"type":"date"},"topic":{"type":"keyword"},` +
	`"user_properties":{"type":"flattened"},"username":{"type":"keyword"}}}}}`

func TestConnectInstallsTemplate(t *testing.T) {
	t.Parallel()
	srv := estest.New(t)
	s := openSink(t, srv, nil)
	got, ok := srv.Template("tide-mqtt")
	if !ok {
		t.Fatalf("template tide-mqtt: not installed")
	}
	if string(got) != wantTemplate {
		t.Errorf("template body:\n got %s\nwant %s", got, wantTemplate)
	}
	if s.IndexPattern() != "mqtt-*" {
		t.Errorf("IndexPattern: got %q, want mqtt-*", s.IndexPattern())
	}
	// A second Connect (the Runner reconnecting) puts it again, harmlessly.
	if err := s.Connect(context.Background()); err != nil {
		t.Fatalf("second Connect: %v", err)
	}
	if err := write(t, s, makeRecords("m", 1)); err != nil {
		t.Fatalf("Write: %v", err)
	}
	var m struct {
		Properties map[string]struct {
			Type    string `json:"type"`
			Dynamic any    `json:"dynamic"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(srv.Mappings("mqtt-2024.05.01"), &m); err != nil {
		t.Fatalf("mappings of mqtt-2024.05.01: %v", err)
	}
	for field, typ := range map[string]string{"time": "date", "topic": "keyword", "qos": "byte", "payload": "binary",
		"payload_json": "object", "user_properties": "flattened"} {
		if m.Properties[field].Type != typ {
			t.Errorf("mapping of %s: got %q, want %q", field, m.Properties[field].Type, typ)
		}
	}

	// create_template = false leaves templates alone.
	srv2 := estest.New(t)
	openSink(t, srv2, func(o *Options) { o.CreateTemplate = false })
	if _, ok := srv2.Template("tide-mqtt"); ok {
		t.Errorf("create_template = false: a template was installed")
	}
}

func TestWriteSendsOneExactBulkRequest(t *testing.T) {
	t.Parallel()
	srv := estest.New(t)
	s := openSink(t, srv, nil)
	batch := []datastore.Record{
		{
			ID: "m-1", Time: day, Topic: "home/<kitchen>&co", ClientID: "c1", Username: "alice", QoS: 2, Retain: true,
			Payload: []byte(`{"temp":21.5}`), JSON: []byte(`{"temp":21.5}`), ContentType: "application/json",
			UserProperties: map[string]string{"site": "lab", "b": "2"}, Extra: map[string]any{"room": "kitchen", "n": 1},
		},
		// 01:30 in UTC+2 is still May 1st in UTC: the index follows UTC.
		{ID: "m-2", Time: time.Date(2024, 5, 2, 1, 30, 0, 0, time.FixedZone("CEST", 2*3600)), Topic: "t", ClientID: "c2",
			Payload: []byte("21.5"), JSON: []byte("21.5")},
		{ID: "m-3", Time: time.Date(2024, 5, 2, 0, 0, 0, 123456789, time.UTC), Topic: "t", ClientID: "c3", Payload: []byte{0, 0xff}},
		{ID: "m-4", Time: day, Topic: "t", ClientID: "c4"},
	}
	if err := write(t, s, batch); err != nil {
		t.Fatalf("Write: %v", err)
	}
	reqs := bulkRequests(srv)
	if len(reqs) != 1 {
		t.Fatalf("bulk requests: got %d, want exactly 1", len(reqs))
	}
	want := strings.Join([]string{
		`{"create":{"_index":"mqtt-2024.05.01","_id":"m-1"}}`,
		`{"time":"2024-05-01T23:59:58.000Z","topic":"home/<kitchen>&co","client_id":"c1","username":"alice","qos":2,"retain":true,` +
			`"payload":"eyJ0ZW1wIjoyMS41fQ==","payload_json":{"temp":21.5},"content_type":"application/json",` +
			`"user_properties":{"b":"2","site":"lab"},"extra":{"n":1,"room":"kitchen"}}`,
		`{"create":{"_index":"mqtt-2024.05.01","_id":"m-2"}}`,
		`{"time":"2024-05-01T23:30:00.000Z","topic":"t","client_id":"c2","qos":0,"retain":false,"payload":"MjEuNQ==","payload_json":{"value":21.5}}`,
		`{"create":{"_index":"mqtt-2024.05.02","_id":"m-3"}}`,
		`{"time":"2024-05-02T00:00:00.123Z","topic":"t","client_id":"c3","qos":0,"retain":false,"payload":"AP8="}`,
		`{"create":{"_index":"mqtt-2024.05.01","_id":"m-4"}}`,
		`{"time":"2024-05-01T23:59:58.000Z","topic":"t","client_id":"c4","qos":0,"retain":false,"payload":""}`,
	}, "\n") + "\n"
	if got := string(reqs[0].Body); got != want {
		t.Errorf("bulk body:\n got %s\nwant %s", got, want)
	}
	if got := reqs[0].Query.Get("filter_path"); got != "errors,items.*.status,items.*.error" {
		t.Errorf("filter_path: got %q", got)
	}
	if ct := reqs[0].Header.Get("Content-Type"); ct != "application/x-ndjson" {
		t.Errorf("Content-Type: got %q, want application/x-ndjson", ct)
	}
	if got := srv.Indices(); strings.Join(got, ",") != "mqtt-2024.05.01,mqtt-2024.05.02" {
		t.Errorf("indices: got %v, want one per UTC day", got)
	}
	if got := len(srv.Docs("mqtt-2024.05.01")); got != 3 {
		t.Errorf("documents in mqtt-2024.05.01: got %d, want 3", got)
	}
	if _, ok := srv.Docs("mqtt-2024.05.02")["m-3"]; !ok {
		t.Errorf("document m-3: not in mqtt-2024.05.02")
	}
	if err := write(t, s, nil); err != nil || len(bulkRequests(srv)) != 1 {
		t.Errorf("empty Write: got %v and %d bulk requests, want nil and no request", err, len(bulkRequests(srv))-1)
	}
}

func TestReplayCreatesNothingTwice(t *testing.T) {
	t.Parallel()
	srv := estest.New(t)
	s := openSink(t, srv, nil)
	batch := makeRecords("r", 8)
	for i := 0; i < 3; i++ {
		if err := write(t, s, batch); err != nil {
			t.Fatalf("Write #%d: %v", i+1, err)
		}
	}
	if err := write(t, s, makeRecords("r", 10)[6:]); err != nil { // overlapping
		t.Fatalf("overlapping Write: %v", err)
	}
	total := len(srv.Docs("mqtt-2024.05.01")) + len(srv.Docs("mqtt-2024.05.02"))
	if total != 10 {
		t.Errorf("documents: got %d, want 10", total)
	}
	// create never overwrites: every document is still at version 1.
	res, err := srv.Client(t).Get("mqtt-2024.05.01", "r-000")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var got struct {
		Version int `json:"_version"`
	}
	if err := json.NewDecoder(res.Body).Decode(&got); err != nil || got.Version != 1 {
		t.Errorf("version of r-000 after 3 writes: got %d (%v), want 1", got.Version, err)
	}
}

func TestItemFailures(t *testing.T) {
	t.Parallel()
	srv := estest.New(t)
	s := openSink(t, srv, nil)
	srv.FailItems(func(action, index, id string, doc []byte) (int, string, string) {
		switch id {
		case "f-001":
			return 429, "es_rejected_execution_exception", estest.ReasonRejected
		case "f-002":
			return 503, "unavailable_shards_exception", "[mqtt-2024.05.01][0] primary shard is not active"
		case "f-003":
			return 403, "cluster_block_exception", "index [mqtt-2024.05.01] blocked by: [FORBIDDEN/8/index write (api)];"
		}
		return 0, "", ""
	})
	batch := makeRecords("f", 9)
	batch[4].JSON = []byte(`{"temp":{"c":1}}`) // payload_json.temp is mapped as a number by f-000,
	batch[4].Time = batch[0].Time              // in the same index
	batch[5].JSON = []byte(`{"temp":`)         // not JSON: stored, without payload_json
	batch[6].Extra = map[string]any{"ratio": math.NaN()}
	batch[7].ID = strings.Repeat("x", 513) // Elasticsearch would refuse the whole request
	batch[8].ID = ""
	err := write(t, s, batch)
	var pe *datastore.PartialError
	if !errors.As(err, &pe) {
		t.Fatalf("Write: got %v, want a *PartialError", err)
	}
	want := []struct {
		index     int
		permanent bool
		reason    string
	}{
		{1, false, "status 429: es_rejected_execution_exception"},
		{2, false, "status 503: unavailable_shards_exception"},
		{3, false, "status 403: cluster_block_exception"},
		{4, true, "status 400: document_parsing_exception: [1:"},
		{6, true, "not sent: json: unsupported value: NaN"},
		{7, true, "not sent: id is 513 bytes long"},
		{8, true, "not sent: record has no id"},
	}
	if len(pe.Items) < len(want) {
		t.Fatalf("items: got %+v, want %d", pe.Items, len(want))
	}
	for i, w := range want {
		it := pe.Items[i]
		if it.Index != w.index || it.Permanent != w.permanent || !strings.Contains(it.Reason, w.reason) {
			t.Errorf("item %d: got %+v, want index %d permanent=%v reason containing %q", i, it, w.index, w.permanent, w.reason)
		}
	}
	if len(pe.Items) != len(want) {
		t.Errorf("items: got %d, want %d: %+v", len(pe.Items), len(want), pe.Items)
	}
	stored := len(srv.Docs("mqtt-2024.05.01")) + len(srv.Docs("mqtt-2024.05.02"))
	if stored != 2 {
		t.Errorf("documents stored: got %d, want 2 (f-000 and f-005; the rest failed)", stored)
	}
	if src := string(srv.Docs("mqtt-2024.05.02")["f-005"]); !strings.Contains(src, `"payload_json_skipped":"not valid JSON: `) {
		t.Errorf("f-005: got %s, want it stored with the reason its payload_json is missing", src)
	}
	if n := len(bulkRequests(srv)); n != 1 {
		t.Errorf("bulk requests: got %d, want 1", n)
	}
}

func TestWholeRequestFailures(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		status    int
		permanent bool
		reason    string
	}{
		{503, false, "status 503: cluster_block_exception"},
		{502, false, "status 502: exception"},
		{429, false, "status 429: es_rejected_execution_exception"},
		{401, false, "status 401: exception"},
		{403, false, "status 403: security_exception"},
		{400, true, "status 400: exception"},
		{413, true, "status 413"},
	} {
		srv := estest.New(t)
		s := openSink(t, srv, nil)
		srv.FailRequests(1, tc.status)
		err := write(t, s, makeRecords("w", 3))
		if err == nil || datastore.IsPermanent(err) != tc.permanent || !strings.Contains(err.Error(), tc.reason) {
			t.Errorf("status %d: got %v (permanent=%v), want permanent=%v and %q", tc.status, err, datastore.IsPermanent(err), tc.permanent, tc.reason)
		}
		// The transport does not retry on its own (it would by default for
		// 502, 503 and 504, three more times): one Write, one request.
		if n := len(bulkRequests(srv)); n != 1 {
			t.Errorf("status %d: got %d bulk requests, want 1", tc.status, n)
		}
		if err := write(t, s, makeRecords("w", 3)); err != nil {
			t.Errorf("status %d: the Runner's retry: got %v, want success", tc.status, err)
		}
	}
}

func TestDroppedConnectionIsTemporary(t *testing.T) {
	t.Parallel()
	srv := estest.New(t)
	s := openSink(t, srv, nil)
	srv.DropConnections(1)
	err := write(t, s, makeRecords("d", 3))
	if err == nil || datastore.IsPermanent(err) {
		t.Fatalf("Write over a dropped connection: got %v, want a temporary error", err)
	}
	if n := len(bulkRequests(srv)); n != 1 {
		t.Errorf("bulk requests: got %d, want 1 (no retry by the transport)", n)
	}
	if err := write(t, s, makeRecords("d", 3)); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if got := len(srv.Docs("mqtt-2024.05.01")) + len(srv.Docs("mqtt-2024.05.02")); got != 3 {
		t.Errorf("documents: got %d, want 3", got)
	}
}

func TestSlowResponseHonoursDeadline(t *testing.T) {
	t.Parallel()
	srv := estest.New(t)
	s := openSink(t, srv, nil)
	srv.SetLatency(5 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := s.Write(ctx, makeRecords("s", 2))
	if !errors.Is(err, context.DeadlineExceeded) || datastore.IsPermanent(err) {
		t.Errorf("Write: got %v, want a temporary error wrapping context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Write took %v, want about the 200ms deadline", d)
	}
	srv.SetLatency(0)
	if err := write(t, s, makeRecords("s", 2)); err != nil {
		t.Errorf("Write after latency: %v", err)
	}
}

func TestSearchTermsWithAvg(t *testing.T) {
	t.Parallel()
	srv := estest.New(t)
	s := openSink(t, srv, nil)
	if err := write(t, s, makeRecords("q", 6)); err != nil { // temps 20.5 .. 25.5, topics alternate
		t.Fatalf("Write: %v", err)
	}
	body := []byte(`{"size":0,"aggs":{"by_topic":{"terms":{"field":"topic"},"aggs":{"avg_temp":{"avg":{"field":"payload_json.temp"}}}}}}`)
	var res map[string]any
	deadline := time.Now().Add(10 * time.Second)
	for {
		var err error
		res, err = s.Search(context.Background(), "", body) // "": every index of the sink
		if err != nil {
			t.Fatalf("Search: %v", err)
		}
		// Writes become searchable at the next refresh, as in Elasticsearch.
		if total := res["hits"].(map[string]any)["total"].(map[string]any)["value"]; total == 6.0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Search: the 6 documents did not become visible within 10s: %v", res["hits"])
		}
		time.Sleep(50 * time.Millisecond)
	}
	buckets := res["aggregations"].(map[string]any)["by_topic"].(map[string]any)["buckets"].([]any)
	got := map[string]float64{}
	for _, b := range buckets {
		b := b.(map[string]any)
		got[b["key"].(string)] = b["avg_temp"].(map[string]any)["value"].(float64)
	}
	if got["sensors/0/temp"] != 22.5 || got["sensors/1/temp"] != 23.5 || len(got) != 2 {
		t.Errorf("avg per topic: got %v, want sensors/0/temp 22.5 and sensors/1/temp 23.5", got)
	}
	res, err := s.Search(context.Background(), "mqtt-2024.05.02", []byte(`{"query":{"term":{"topic":"sensors/1/temp"}}}`))
	if err != nil {
		t.Fatalf("Search of one index: %v", err)
	}
	if total := res["hits"].(map[string]any)["total"].(map[string]any)["value"]; total != 1.0 {
		t.Errorf("hits in mqtt-2024.05.02 for sensors/1/temp: got %v, want 1", total)
	}
	if _, err := s.Search(context.Background(), "", []byte(`{"query":{"nope":{}}}`)); err == nil || !strings.Contains(err.Error(), "status 400: parsing_exception: unknown query [nope]") {
		t.Errorf("bad query: got %v, want a 400 parsing_exception", err)
	}
	if _, err := s.Search(context.Background(), "missing", nil); err == nil || !strings.Contains(err.Error(), "index_not_found_exception") {
		t.Errorf("missing index: got %v, want index_not_found_exception", err)
	}
}

func TestAuth(t *testing.T) {
	t.Parallel()
	srv := estest.New(t)
	srv.RequireBasicAuth("tide", "s3cret")
	s := openSink(t, srv, func(o *Options) { o.Username, o.Password = "tide", "s3cret" })
	if err := write(t, s, makeRecords("a", 2)); err != nil {
		t.Errorf("Write with basic auth: %v", err)
	}
	bad := unconnected(t, srv.URL, func(o *Options) { o.Username, o.Password = "tide", "wrong" })
	err := bad.Connect(context.Background())
	if err == nil || datastore.IsPermanent(err) || !strings.Contains(err.Error(), "status 401: security_exception: unable to authenticate user [tide]") {
		t.Errorf("Connect with a wrong password: got %v, want a temporary 401 security_exception", err)
	}
	if strings.Contains(err.Error(), "wrong") {
		t.Errorf("the error leaks the password: %v", err)
	}

	keyed := estest.New(t)
	keyed.RequireAPIKey("aWQ6a2V5")
	k := openSink(t, keyed, func(o *Options) { o.APIKey = "aWQ6a2V5" })
	if err := write(t, k, makeRecords("k", 2)); err != nil {
		t.Errorf("Write with an API key: %v", err)
	}
	for _, r := range keyed.Requests() {
		if got := r.Header.Get("Authorization"); got != "APIKey aWQ6a2V5" {
			t.Errorf("%s %s: Authorization %q, want APIKey aWQ6a2V5", r.Method, r.Path, got)
		}
	}
	nokey := unconnected(t, keyed.URL, nil)
	if err := nokey.Connect(context.Background()); err == nil || !strings.Contains(err.Error(), "status 401") {
		t.Errorf("Connect without credentials: got %v, want 401", err)
	}
}

func TestConnectFailures(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	notES := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"version":{"number":"8.15.0"}}`))
	}))
	t.Cleanup(notES.Close)
	down := httptest.NewServer(http.NotFoundHandler())
	downURL := down.URL
	down.Close()
	old := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
		_, _ = w.Write([]byte(`{"version":{"number":"7.17.0"}}`))
	}))
	t.Cleanup(old.Close)
	clash := estest.New(t)
	res, err := clash.Client(t).Indices.PutIndexTemplate("mine", strings.NewReader(`{"index_patterns":["mqtt-2024*"],"priority":200}`))
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("put clashing template: %v %v", res, err)
	}
	res.Body.Close()

	for _, tc := range []struct {
		name      string
		url       string
		edit      func(*Options)
		permanent bool
		msg       string
	}{
		{"missing ca_file", "https://127.0.0.1:1", func(o *Options) { o.CAFile = filepath.Join(dir, "nope.pem") }, true, "nope.pem: no such file"},
		{"ca_file not PEM", "https://127.0.0.1:1", func(o *Options) { o.CAFile = notPEM }, true, notPEM + ": no PEM certificate"},
		{"unreachable", downURL, nil, false, "connection refused"},
		{"not Elasticsearch", notES.URL, nil, true, "not Elasticsearch"},
		{"Elasticsearch 7", old.URL, nil, true, `Elasticsearch "7.17.0" is not supported`},
		{"template refused", clash.URL, nil, true, "put index template tide-mqtt: status 400: illegal_argument_exception: index template [tide-mqtt] has index patterns [mqtt-*] matching patterns from existing templates [mine]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := unconnected(t, tc.url, tc.edit)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := s.Connect(ctx)
			if err == nil || datastore.IsPermanent(err) != tc.permanent || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("Connect: got %v (permanent=%v), want permanent=%v and %q", err, datastore.IsPermanent(err), tc.permanent, tc.msg)
			}
			if err := s.Write(ctx, makeRecords("x", 1)); err == nil || datastore.IsPermanent(err) {
				t.Errorf("Write while not connected: got %v, want a temporary error", err)
			}
			if _, err := s.Search(ctx, "", nil); err == nil {
				t.Errorf("Search while not connected: got nil, want an error")
			}
		})
	}
}

// TestCAFile connects over https to a TLS front of estest whose certificate
// is trusted only through ca_file.
func TestCAFile(t *testing.T) {
	t.Parallel()
	srv := estest.New(t)
	target, _ := url.Parse(srv.URL)
	front := httptest.NewUnstartedServer(httputil.NewSingleHostReverseProxy(target))
	front.Config.ErrorLog = log.New(io.Discard, "", 0) // the untrusted handshake below is expected to fail
	front.StartTLS()
	t.Cleanup(front.Close)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: front.Certificate().Raw})
	if err := os.WriteFile(caFile, cert, 0o600); err != nil {
		t.Fatal(err)
	}
	s := unconnected(t, front.URL, func(o *Options) { o.CAFile = caFile })
	if err := s.Connect(context.Background()); err != nil {
		t.Fatalf("Connect with ca_file: %v", err)
	}
	if err := write(t, s, makeRecords("tls", 2)); err != nil {
		t.Errorf("Write over https: %v", err)
	}
	untrusted := unconnected(t, front.URL, nil)
	if err := untrusted.Connect(context.Background()); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("Connect without ca_file: got %v, want a certificate error", err)
	}
}

func TestJSONView(t *testing.T) {
	for _, tc := range []struct {
		payload, view, skipped string
	}{
		{`{"temp":21.5}`, `{"temp":21.5}`, ""},
		{` {"a":{"b":[1,2]}} `, `{"a":{"b":[1,2]}}`, ""},
		{`21.5`, `{"value":21.5}`, ""},
		{`"on"`, `{"value":"on"}`, ""},
		{`[1,"two",true,null]`, `{"value":[1,"two",true,null]}`, ""},
		{`[{"a":1},{"a":2}]`, `{"value":[{"a":1},{"a":2}]}`, ""},
		{`{"a.b":1,"c":{"d":2}}`, `{"a.b":1,"c":{"d":2}}`, ""},
		{`{"a":{"b":[1,2,{"c":null}]}}`, "", `"a.b" is both an object and a value`},
		{`[1,{"a":2}]`, "", `"value" is both an object and a value`},
		{`{"a":1,"a.b":2}`, "", `"a" is both an object and a value`},
		{`{"":1}`, "", `field name "" is empty or blank`},
		{`{"x":{" ":1}}`, "", `field name " " is empty or blank`},
		{`{"a..b":1}`, "", `field name "a..b" has an empty part between dots`},
		{`{".a":1}`, "", `has an empty part between dots`},
		{strings.Repeat(`{"a":`, 19) + "1" + strings.Repeat("}", 19), "", "nested deeper than 18"},
		{`{"temp":`, "", "not valid JSON"},
	} {
		view, skipped := jsonView([]byte(tc.payload))
		if string(view) != tc.view || !strings.Contains(skipped, tc.skipped) || (tc.skipped == "") != (skipped == "") {
			t.Errorf("%s: got view %s skipped %q, want %s and %q", tc.payload, view, skipped, tc.view, tc.skipped)
		}
	}
}

// TestHeterogeneousPayloads writes, into one daily index, payloads whose
// fields change type from message to message, as devices do: all are
// stored, and the numbers stay aggregatable.
func TestHeterogeneousPayloads(t *testing.T) {
	t.Parallel()
	srv := estest.New(t)
	s := openSink(t, srv, nil)
	payloads := []string{
		`{"temp":21}`,                  // an integer first: the field must not become a long
		`{"temp":21.5}`,                // that would truncate this
		`{"temp":"n/a"}`,               // a string where numbers were: kept in _source, not indexed
		`{"temp":true}`,                // a boolean too
		`{"when":"2024-05-01"}`,        // looks like a date
		`{"when":"yesterday"}`,         // and then does not
		`{"state":"on"}`,               // a string field
		`{"state":1}`,                  // then a number: a keyword takes it
		`{"a":{"b":[1,2,{"c":null}]}}`, // cannot be indexed at all: stored without payload_json
		`42`,                           // not an object
		`"text"`,                       // nor this
	}
	batch := make([]datastore.Record, len(payloads))
	for i, p := range payloads {
		batch[i] = datastore.Record{ID: fmt.Sprintf("h-%02d", i), Time: day, Topic: "t", ClientID: "c", Payload: []byte(p), JSON: []byte(p)}
	}
	if err := write(t, s, batch); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if got := len(srv.Docs("mqtt-2024.05.01")); got != len(payloads) {
		t.Errorf("documents: got %d, want %d", got, len(payloads))
	}
	body := []byte(`{"size":0,"aggs":{"avg_temp":{"avg":{"field":"payload_json.temp"}}}}`)
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := s.Search(context.Background(), "", body)
		if err != nil {
			t.Fatalf("Search: %v", err)
		}
		if res["hits"].(map[string]any)["total"].(map[string]any)["value"] == float64(len(payloads)) {
			if got := res["aggregations"].(map[string]any)["avg_temp"].(map[string]any)["value"]; got != 21.25 {
				t.Errorf("avg of payload_json.temp: got %v, want 21.25 (21 and 21.5; the string and boolean ignored)", got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("documents not searchable within 10s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestIndexNames(t *testing.T) {
	for _, tc := range []struct {
		layout, pattern, at string
	}{
		{"mqtt-2006.01.02", "mqtt-*", "mqtt-2024.05.01"},
		{"mqtt-2006.01", "mqtt-*", "mqtt-2024.05"},
		{"tide", "tide", "tide"},
		{"2006.01.02-mqtt", "*-mqtt", "2024.05.01-mqtt"},
		{"mqtt-1-2006", "mqtt-*", "mqtt-5-2024"},
		{"mqtt-2006.01.02-x", "mqtt-*-x", "mqtt-2024.05.01-x"},
		{"m-2006.002", "m-*", "m-2024.122"},
		{"m-2006.01.02.15", "m-*", "m-2024.05.01.23"},
	} {
		ix, err := newIndexer(tc.layout, true)
		if err != nil {
			t.Errorf("%q: %v", tc.layout, err)
			continue
		}
		if ix.pattern != tc.pattern || ix.name(day.Add(-30*time.Second)) != tc.at {
			t.Errorf("%q: got pattern %q and name %q, want %q and %q", tc.layout, ix.pattern, ix.name(day.Add(-30*time.Second)), tc.pattern, tc.at)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Options)
		key  string
		msg  string
	}{
		{"no addresses", func(o *Options) { o.Addresses = nil }, "addresses", "missing (required)"},
		{"bad scheme", func(o *Options) { o.Addresses = []string{"http://ok:9200", "es:9200"} }, "addresses[1]", "want an http:// or https:// URL"},
		{"no host", func(o *Options) { o.Addresses = []string{"http://"} }, "addresses[0]", "no host"},
		{"credentials in URL", func(o *Options) { o.Addresses = []string{"http://u:secret@es:9200"} }, "addresses[0]", "put credentials in username"},
		{"bad URL", func(o *Options) { o.Addresses = []string{"http://es:port"} }, "addresses[0]", "invalid URL"},
		{"upper-case index", func(o *Options) { o.Index = "MQTT-2006" }, "index", "must be lower case"},
		{"month name", func(o *Options) { o.Index = "mqtt-Jan-2006" }, "index", `names such as "mqtt-Mar-2111"`},
		{"slash", func(o *Options) { o.Index = "mqtt-2006/01" }, "index", "must not contain"},
		{"leading underscore", func(o *Options) { o.Index = "_mqtt-2006" }, "index", "must not start with"},
		{"no constant part", func(o *Options) { o.Index = "2006.01.02" }, "index", "no constant part"},
		{"empty index", func(o *Options) { o.Index = "" }, "index", "must not be empty"},
		{"key and user", func(o *Options) { o.APIKey, o.Username, o.Password = "k", "u", "p" }, "api_key", "not both"},
		{"user without password", func(o *Options) { o.Username = "u" }, "password", "missing"},
		{"password without user", func(o *Options) { o.Password = "p" }, "username", "missing"},
		{"ca_file with http", func(o *Options) { o.CAFile = "/etc/ca.pem" }, "ca_file", "no address uses https"},
		{"bad template", func(o *Options) { o.Template = "Tide MQTT" }, "template", "must be lower case"},
		{"empty template", func(o *Options) { o.Template = "" }, "template", "must not be empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := DefaultOptions()
			o.Addresses = []string{"http://localhost:9200"}
			tc.edit(o)
			err := o.Validate()
			var es conf.Errors
			if !errors.As(err, &es) || len(es) != 1 {
				t.Fatalf("Validate: got %v, want one conf.Error", err)
			}
			if es[0].Key != tc.key || !strings.Contains(es[0].Msg, tc.msg) {
				t.Errorf("Validate: got %s: %s, want key %s and a message containing %q", es[0].Key, es[0].Msg, tc.key, tc.msg)
			}
			if strings.Contains(es[0].Msg, "secret") {
				t.Errorf("Validate leaks a password: %s", es[0].Msg)
			}
			if _, err := New("x", o, nil); err == nil {
				t.Errorf("New: got nil, want the validation error")
			}
		})
	}
	o := DefaultOptions()
	o.Addresses = []string{"https://es1:9200", "https://es2:9200/prefix"}
	o.Index, o.CreateTemplate = "2006.01.02", false // no template: no pattern needed
	o.CAFile = "/etc/tide/ca.pem"                   // not read by Validate
	if err := o.Validate(); err != nil {
		t.Errorf("valid options: got %v", err)
	}
}

func TestConfigFile(t *testing.T) {
	file := `
[[sink]]
name = "search"
type = "elasticsearch"
addresses = ["https://es:9200"]
api_key = "aWQ6a2V5"
ca_file = "/etc/tide/es-ca.pem"

[[sink]]
name = "broken"
type = "elasticsearch"
addresses = ["es:9200"]
index = "Mqtt-2006"

[[route]]
topics = ["#"]
sinks = ["search", "broken"]
`
	_, err := conf.Parse("tide.toml", []byte(file))
	var es conf.Errors
	if !errors.As(err, &es) {
		t.Fatalf("Parse: got %v, want conf.Errors", err)
	}
	got := err.Error()
	for _, want := range []string{"sink[1].addresses[0]: \"es:9200\": want an http:// or https:// URL", "tide.toml:13: sink[1].index:"} {
		if !strings.Contains(got, want) {
			t.Errorf("errors:\n%s\nwant one containing %q", got, want)
		}
	}
	if len(es) != 2 {
		t.Errorf("errors: got %d, want 2 (the valid sink reports nothing):\n%s", len(es), got)
	}
	c, err := conf.Parse("tide.toml", []byte(file[:strings.Index(file, "[[sink]]\nname = \"broken\"")]+"[[route]]\ntopics = [\"#\"]\nsinks = [\"search\"]\n"))
	if err != nil {
		t.Fatalf("Parse valid: %v", err)
	}
	o, ok := c.Sinks[0].Settings.(*Options)
	if !ok {
		t.Fatalf("Settings: got %T, want *Options", c.Sinks[0].Settings)
	}
	if o.Index != "mqtt-2006.01.02" || o.Template != "tide-mqtt" || !o.CreateTemplate || o.APIKey != "aWQ6a2V5" {
		t.Errorf("decoded options: got %+v, want the api key and the defaults", o)
	}
}

func TestRegistered(t *testing.T) {
	opts := DefaultOptions()
	opts.Addresses = []string{"http://localhost:9200"}
	s, err := datastore.NewSink(Type, "search", opts, datastore.Env{})
	if err != nil {
		t.Fatalf("NewSink: %v", err)
	}
	if _, ok := s.(datastore.Searcher); !ok {
		t.Errorf("NewSink: %T is not a datastore.Searcher", s)
	}
	if _, err := datastore.NewSink(Type, "search", nil, datastore.Env{}); err == nil || !strings.Contains(err.Error(), "addresses: missing") {
		t.Errorf("NewSink without settings: got %v, want the missing addresses", err)
	}
	if _, err := datastore.NewSink(Type, "search", struct{}{}, datastore.Env{}); err == nil {
		t.Errorf("NewSink with foreign settings: got nil, want an error")
	}
}

// TestThroughRunner feeds the sink from a datastore Runner while the
// cluster refuses whole requests, drops connections and rejects items, and
// checks that every record ends up indexed exactly once.
func TestThroughRunner(t *testing.T) {
	t.Parallel()
	srv := estest.New(t)
	s := unconnected(t, srv.URL, nil)
	dir := t.TempDir()
	r, err := datastore.NewRunner(s, datastore.RunnerOptions{
		Name: "es-runner", Type: Type, BatchSize: 50, FlushInterval: 10 * time.Millisecond,
		RetryInitial: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond, WriteTimeout: 2 * time.Second,
		SpoolDir: filepath.Join(dir, "spool"), DeadLetter: filepath.Join(dir, "dead.ndjson"), Log: testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := r.Close(ctx); err != nil {
			t.Errorf("Runner.Close: %v", err)
		}
	})
	var rejected sync.Map
	srv.FailItems(func(_, _, id string, _ []byte) (int, string, string) {
		// Every tenth record is rejected once with 429, then accepted.
		if strings.HasSuffix(id, "0") {
			if _, again := rejected.LoadOrStore(id, true); !again {
				return 429, "es_rejected_execution_exception", estest.ReasonRejected
			}
		}
		return 0, "", ""
	})
	const n = 1000
	recs := makeRecords("run", n)
	for i := range recs {
		recs[i].Time = day.Add(-time.Hour) // one index
		if i == 300 {
			srv.FailRequests(3, 503)
		}
		if i == 600 {
			srv.DropConnections(2)
		}
		if err := r.Accept(context.Background(), recs[i]); err != nil {
			t.Fatalf("Accept: %v", err)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(srv.Docs("mqtt-2024.05.01")) < n {
		if time.Now().After(deadline) {
			t.Fatalf("documents after 20s: got %d, want %d; runner: %+v", len(srv.Docs("mqtt-2024.05.01")), n, r.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := len(srv.Docs("mqtt-2024.05.01")); got != n {
		t.Errorf("documents: got %d, want %d", got, n)
	}
	st := r.Stats()
	if st.Dropped != 0 || st.DeadLettered != 0 || st.Retried == 0 {
		t.Errorf("runner: %d dropped, %d dead-lettered, %d retried; want none, none, some", st.Dropped, st.DeadLettered, st.Retried)
	}
}
