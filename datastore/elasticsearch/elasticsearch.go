// Package elasticsearch is the Elasticsearch 8 sink: it indexes records,
// one index per day by default, with an index template Tide installs, and
// answers searches (with aggregations) for scheduler scripts.
//
// The sink does no buffering, batching or retrying of its own: the datastore
// Runner owns those. Write sends exactly one _bulk request per batch, built
// by hand (esutil.BulkIndexer has its own workers, flushing and retries,
// which would fight the Runner), and classifies each item's outcome.
package elasticsearch

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	es "github.com/elastic/go-elasticsearch/v8"
	"github.com/elastic/go-elasticsearch/v8/esapi"

	"github.com/tidemq/tide/core/ratelog"
	"github.com/tidemq/tide/datastore"
)

// Interface guards.
var (
	_ datastore.Sink     = (*Sink)(nil)
	_ datastore.Searcher = (*Sink)(nil)
)

// templatePriority is above the priority (100) of Elasticsearch's built-in
// templates (logs-*-*, metrics-*-*, ...), so that an index named, say,
// "logs-mqtt-2024.05.01" gets Tide's mappings instead of becoming a data
// stream that refuses documents without @timestamp.
const templatePriority = 200

// Sink writes records to Elasticsearch. Create it with New. Write and Close
// are called by one goroutine (the Runner); Search may be called
// concurrently with them.
type Sink struct {
	name string
	opts Options
	log  *slog.Logger
	ix   *indexer

	mu     sync.Mutex // serialises Connect and Close
	client atomic.Pointer[es.Client]

	warn ratelog.Limiter // "records rejected", one line every ten seconds
}

// New returns a sink named name (the [[sink]] name, used in logs) for opts.
// It validates opts and does no I/O; a nil log discards.
func New(name string, opts *Options, log *slog.Logger) (*Sink, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return newSink(name, opts, log.With("sink", name, "type", Type))
}

// newSink is New with a logger that already names the sink.
func newSink(name string, opts *Options, log *slog.Logger) (*Sink, error) {
	if opts == nil {
		return nil, errors.New("elasticsearch: nil options")
	}
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("elasticsearch sink %q: %w", name, err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ix, _ := newIndexer(opts.Index, opts.CreateTemplate)
	s := &Sink{name: name, opts: *opts, ix: ix, log: log}
	s.opts.Addresses = append([]string(nil), opts.Addresses...)
	return s, nil
}

// Init reports whether the sink was built by New, which validated it.
func (s *Sink) Init() error {
	if s.ix == nil {
		return errors.New("elasticsearch: sink not created with New")
	}
	return nil
}

// IndexPattern is the pattern that matches every index the sink writes to
// ("mqtt-*" for the default index), used by the template and by Search
// when no index is given.
func (s *Sink) IndexPattern() string { return s.ix.pattern }

// Connect builds the client, checks that the cluster answers and is
// Elasticsearch 8 or later, and installs the index template. Failures that
// need a different file or server to go away (an unreadable ca_file, a
// server that is not Elasticsearch, a template the cluster refuses) are
// marked Permanent; the others (unreachable, refused credentials, 5xx) are
// not, so that the Runner keeps retrying while the operator fixes them.
func (s *Sink) Connect(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.client.Swap(nil); old != nil {
		_ = old.Close(ctx)
	}
	cfg := es.Config{
		Addresses: s.opts.Addresses,
		Username:  s.opts.Username,
		Password:  s.opts.Password,
		APIKey:    s.opts.APIKey,
		// The transport's own retries (3 by default, on 502/503/504 and on
		// network errors, immediately and without back-off) would hide
		// failures from the Runner, multiply the load on a struggling
		// cluster by four, and let one Write outlast the Runner's view of
		// it. The Runner retries with back-off and spools, so one Write is
		// one attempt. With several addresses, a failed node is still
		// marked dead by the connection pool, and the Runner's next
		// attempt goes to another one.
		DisableRetry: true,
	}
	if s.opts.CAFile != "" {
		pem, err := os.ReadFile(s.opts.CAFile)
		if err != nil {
			return datastore.Permanent(s.errorf("ca_file: %w", err))
		}
		if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			return datastore.Permanent(s.errorf("ca_file %s: no PEM certificate found", s.opts.CAFile))
		}
		cfg.CACert = pem
	}
	client, err := es.NewClient(cfg)
	if err != nil {
		return datastore.Permanent(s.errorf("client: %w", err))
	}
	info, err := s.info(ctx, client)
	if err == nil && s.opts.CreateTemplate {
		err = s.putTemplate(ctx, client)
	}
	if err != nil {
		_ = client.Close(context.WithoutCancel(ctx))
		return err
	}
	s.client.Store(client)
	s.log.Info("connected", "cluster", info.ClusterName, "version", info.Version.Number, "index", s.opts.Index, "template", s.templateName())
	return nil
}

func (s *Sink) templateName() string {
	if !s.opts.CreateTemplate {
		return ""
	}
	return s.opts.Template
}

type clusterInfo struct {
	ClusterName string `json:"cluster_name"`
	Version     struct {
		Number string `json:"number"`
	} `json:"version"`
}

func (s *Sink) info(ctx context.Context, client *es.Client) (*clusterInfo, error) {
	res, err := client.Info(client.Info.WithContext(ctx))
	if err != nil {
		if strings.Contains(err.Error(), "not Elasticsearch") { // the client's product check
			return nil, datastore.Permanent(s.errorf("connect: %w", err))
		}
		return nil, s.errorf("connect: %w", err)
	}
	defer drain(res)
	if res.IsError() {
		return nil, s.statusErr(res, "connect")
	}
	var info clusterInfo
	if err := json.NewDecoder(res.Body).Decode(&info); err != nil {
		return nil, s.errorf("connect: decode info: %w", err)
	}
	major, _, _ := strings.Cut(info.Version.Number, ".")
	if n, err := strconv.Atoi(major); err != nil || n < 8 {
		return nil, datastore.Permanent(s.errorf("connect: Elasticsearch %q is not supported: need 8 or later", info.Version.Number))
	}
	return &info, nil
}

func (s *Sink) putTemplate(ctx context.Context, client *es.Client) error {
	put := client.Indices.PutIndexTemplate
	res, err := put(s.opts.Template, bytes.NewReader(s.Template()), put.WithContext(ctx))
	if err != nil {
		return s.errorf("put index template %s: %w", s.opts.Template, err)
	}
	defer drain(res)
	if res.IsError() {
		return s.statusErr(res, "put index template "+s.opts.Template)
	}
	return nil
}

// bulkResponse is the part of a _bulk response Write reads (see
// filterPath).
type bulkResponse struct {
	Errors bool                      `json:"errors"`
	Items  []map[string]bulkItemResp `json:"items"`
}

type bulkItemResp struct {
	Status int      `json:"status"`
	Error  *esError `json:"error"`
}

type esError struct {
	Type     string   `json:"type"`
	Reason   string   `json:"reason"`
	CausedBy *esError `json:"caused_by"`
}

func (e *esError) String() string {
	s := e.Type + ": " + e.Reason
	if e.CausedBy != nil {
		s += " (caused by " + e.CausedBy.String() + ")"
	}
	return s
}

// filterPath keeps of a _bulk response the status of every item (so that
// items keep their positions: Elasticsearch drops items left empty by a
// filter) and the errors, instead of ~250 bytes of metadata per item.
var filterPath = []string{"errors", "items.*.status", "items.*.error"}

// Write sends batch as one _bulk request of create actions, with the
// record ID as document id, so that a replayed batch creates nothing twice:
// a document that exists already answers 409, which counts as stored.
// (index would overwrite it with the same content, re-indexing it and
// bumping its version for nothing.)
//
// The outcome, for the whole request and for each item:
//
//	request: transport error, timeout     temporary error (the batch is retried)
//	request: 429, 5xx, 408                temporary error
//	request: 401, 403                     temporary error: credentials the operator can fix
//	                                      on the cluster while records wait in the spool
//	request: 400, 413, other 4xx          Permanent error (the batch is dead-lettered)
//	item:    2xx, 409 version conflict    stored (409: by an earlier attempt)
//	item:    429, 5xx                     temporary item
//	item:    403 cluster_block_exception  temporary item (disk flood-stage read-only block)
//	item:    other 4xx (mapping errors)   Permanent item, with Elasticsearch's reason
//	record that cannot be encoded         Permanent item, not sent
//	  (NaN in Extra, no id, id over 512 bytes)
//
// A JSON payload that no mapping could index (see jsonView) is not a
// failure: the record is stored without payload_json, with the reason in
// payload_json_skipped, and its raw payload as always.
func (s *Sink) Write(ctx context.Context, batch []datastore.Record) error {
	client := s.client.Load()
	if client == nil {
		return s.errorf("not connected")
	}
	var items []datastore.ItemError
	var body bytes.Buffer
	sent := make([]int, 0, len(batch)) // batch index of each bulk item
	for i := range batch {
		if err := s.appendItem(&body, &batch[i]); err != nil {
			items = append(items, datastore.ItemError{Index: i, Permanent: true, Reason: "not sent: " + err.Error()})
			continue
		}
		sent = append(sent, i)
	}
	if len(sent) > 0 {
		resp, err := s.bulk(ctx, client, body.Bytes())
		if err != nil {
			return err
		}
		if len(resp.Items) != len(sent) {
			// Unattributable; a replay is harmless, so let the Runner retry.
			return s.errorf("bulk: %d items in the response for %d documents", len(resp.Items), len(sent))
		}
		if resp.Errors {
			for j, it := range resp.Items {
				if e := itemError(it); e != nil {
					e.Index = sent[j]
					items = append(items, *e)
				}
			}
		}
	}
	if len(items) == 0 {
		return nil
	}
	sortItems(items)
	if perm := countPermanent(items); perm > 0 {
		if ok, suppressed := s.warn.Allow("records rejected"); ok {
			s.log.Warn("records rejected", "rejected", perm, "batch", len(batch), "first_reason", firstPermanent(items), "suppressed_warnings", suppressed)
		}
	}
	return &datastore.PartialError{Items: items}
}

func (s *Sink) bulk(ctx context.Context, client *es.Client, body []byte) (*bulkResponse, error) {
	bulk := client.Bulk
	res, err := bulk(bytes.NewReader(body), bulk.WithContext(ctx), bulk.WithFilterPath(filterPath...),
		bulk.WithHeader(map[string]string{"Content-Type": "application/x-ndjson"})) // the _bulk media type
	if err != nil {
		return nil, s.errorf("bulk: %w", err)
	}
	defer drain(res)
	if res.IsError() {
		return nil, s.statusErr(res, "bulk")
	}
	var resp bulkResponse
	if err := json.NewDecoder(res.Body).Decode(&resp); err != nil {
		// A response cut short: the documents may or may not be stored,
		// and a replay settles it.
		return nil, s.errorf("bulk: decode response: %w", err)
	}
	return &resp, nil
}

// temporaryStatus reports whether a whole request failing with status may
// succeed later unchanged: overload and unavailability, and refused
// credentials, which the operator can fix on the cluster while the records
// wait in the spool.
func temporaryStatus(status int) bool {
	switch {
	case status == http.StatusTooManyRequests, status >= 500,
		status == http.StatusUnauthorized, status == http.StatusForbidden,
		status == http.StatusRequestTimeout:
		return true
	}
	return false
}

// itemError classifies one bulk item; nil means stored.
func itemError(m map[string]bulkItemResp) *datastore.ItemError {
	for _, it := range m { // one key: the action
		switch {
		case it.Status >= 200 && it.Status < 300:
			return nil
		case it.Status == http.StatusConflict && (it.Error == nil || it.Error.Type == "version_conflict_engine_exception"):
			return nil // create of an id that exists: this record, stored by an earlier attempt
		}
		reason := fmt.Sprintf("status %d", it.Status)
		if it.Error != nil {
			reason += ": " + it.Error.String()
		}
		temporary := it.Status == http.StatusTooManyRequests || it.Status >= 500 ||
			// An index blocked read-only by the disk flood-stage watermark
			// (403 before Elasticsearch 7.x started answering 429) is
			// released when disk frees up.
			(it.Status == http.StatusForbidden && it.Error != nil && it.Error.Type == "cluster_block_exception")
		return &datastore.ItemError{Permanent: !temporary, Reason: reason}
	}
	return &datastore.ItemError{Permanent: false, Reason: "empty bulk item"}
}

// Search runs a search request body (the JSON of a _search request: query,
// aggs, size, ...) against index, an index name, a comma-separated list or
// a pattern; empty searches every index the sink writes to. It returns the
// decoded response (hits, aggregations) with JSON numbers as float64, or an
// error naming Elasticsearch's error type and reason.
func (s *Sink) Search(ctx context.Context, index string, body []byte) (map[string]any, error) {
	client := s.client.Load()
	if client == nil {
		return nil, s.errorf("not connected")
	}
	if index == "" {
		index = s.ix.pattern
	}
	search := client.Search
	opts := []func(*esapi.SearchRequest){search.WithContext(ctx), search.WithIndex(index)}
	if len(bytes.TrimSpace(body)) > 0 {
		opts = append(opts, search.WithBody(bytes.NewReader(body)))
	}
	res, err := search(opts...)
	if err != nil {
		return nil, s.errorf("search %s: %w", index, err)
	}
	defer drain(res)
	if res.IsError() {
		return nil, s.responseError(res, "search "+index)
	}
	var out map[string]any
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		return nil, s.errorf("search %s: decode response: %w", index, err)
	}
	return out, nil
}

// Close releases the client's connections.
func (s *Sink) Close(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	client := s.client.Swap(nil)
	if client == nil {
		return nil
	}
	if err := client.Close(ctx); err != nil {
		return s.errorf("close: %w", err)
	}
	return nil
}

func (s *Sink) errorf(format string, args ...any) error {
	return fmt.Errorf("elasticsearch sink %q: "+format, append([]any{s.name}, args...)...)
}

// responseError describes an error response with Elasticsearch's error
// type and reason, whichever of its two shapes the body has.
func (s *Sink) responseError(res *esapi.Response, what string) error {
	b, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	var full struct {
		Error json.RawMessage `json:"error"`
	}
	detail := strings.TrimSpace(string(b))
	if json.Unmarshal(b, &full) == nil && len(full.Error) > 0 {
		var e esError
		var bare string
		switch {
		case json.Unmarshal(full.Error, &e) == nil && e.Type != "":
			detail = e.String()
		case json.Unmarshal(full.Error, &bare) == nil:
			detail = bare
		}
	}
	if len(detail) > 1000 {
		detail = detail[:1000] + "..."
	}
	return &statusError{msg: fmt.Sprintf("elasticsearch sink %q: %s: status %d: %s", s.name, what, res.StatusCode, detail), Status: res.StatusCode}
}

// statusErr is responseError marked Permanent unless temporaryStatus.
func (s *Sink) statusErr(res *esapi.Response, what string) error {
	err := s.responseError(res, what)
	if !temporaryStatus(res.StatusCode) {
		return datastore.Permanent(err)
	}
	return err
}

// statusError is an error response; Status lets callers tell them apart.
type statusError struct {
	msg    string
	Status int
}

func (e *statusError) Error() string { return e.msg }

// drain reads what is left of a response so that its connection is reused.
func drain(res *esapi.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 1<<20))
	res.Body.Close()
}

func countPermanent(items []datastore.ItemError) int {
	n := 0
	for _, it := range items {
		if it.Permanent {
			n++
		}
	}
	return n
}

func firstPermanent(items []datastore.ItemError) string {
	for _, it := range items {
		if it.Permanent {
			return it.Reason
		}
	}
	return ""
}

func sortItems(items []datastore.ItemError) {
	// Insertion sort: encoding failures come first, then the bulk's items
	// in order, so the slice is nearly sorted.
	for i := 1; i < len(items); i++ {
		for j := i; j > 0 && items[j].Index < items[j-1].Index; j-- {
			items[j], items[j-1] = items[j-1], items[j]
		}
	}
}
