package estest

import (
	"fmt"
	"strings"
)

// esErr is an Elasticsearch exception, rendered in the REST error format:
//
//	{"error":{"root_cause":[{"type":..,"reason":..}],"type":..,"reason":..,"caused_by":{..}},"status":N}
type esErr struct {
	status int
	typ    string
	reason string
	extra  obj    // fields after reason, e.g. index_uuid, index, resource.id, header
	cause  *esErr // caused_by
	roots  []*esErr
	top    obj // fields only on the outermost error (search_phase_execution_exception's phase, failed_shards)
	// bare is the {"error":"reason","status":N} shape Elasticsearch uses for routing and content-type refusals;
	// noStatus drops the status too, as "no handler found" does.
	bare, noStatus bool
	allow          string // the Allow header of a 405
}

func (e *esErr) Error() string { return e.typ + ": " + e.reason }

func newErr(status int, typ, format string, args ...any) *esErr {
	return &esErr{status: status, typ: typ, reason: fmt.Sprintf(format, args...)}
}

func badRequest(format string, args ...any) *esErr {
	return newErr(400, "illegal_argument_exception", format, args...)
}

// unsupported is estest's own refusal: the request is valid Elasticsearch, but estest does not
// emulate it, so it fails loudly rather than answering wrongly.
func unsupported(format string, args ...any) *esErr {
	return newErr(400, "estest_unsupported_exception", "estest: "+format+" is not supported by this fake Elasticsearch", args...)
}

func validationErr(msgs ...string) *esErr {
	var b strings.Builder
	b.WriteString("Validation Failed: ")
	for i, m := range msgs {
		fmt.Fprintf(&b, "%d: %s;", i+1, m)
	}
	return newErr(400, "action_request_validation_exception", "%s", b.String())
}

func parseErr(status int, typ string, d []byte, err error) *esErr {
	if je, ok := err.(*jsonErr); ok {
		if je.eof {
			typ = "x_content_e_o_f_exception"
		}
		return newErr(status, typ, "%s %s", loc(d, je.off), je.msg)
	}
	return newErr(status, typ, "%s", err.Error())
}

func indexNotFound(name, resourceType string) *esErr {
	e := newErr(404, "index_not_found_exception", "no such index [%s]", name)
	e.extra = o("resource.type", resourceType, "resource.id", name, "index_uuid", "_na_", "index", name)
	return e
}

// cause renders the error as a cause object (used in root_cause, caused_by and bulk items).
func (e *esErr) cause_(withCause bool) obj {
	out := o("type", e.typ, "reason", e.reason)
	out = append(out, e.extra...)
	if withCause && e.cause != nil {
		out = append(out, kv{"caused_by", e.cause.cause_(true)})
	}
	return out
}

// body renders the full REST error response.
func (e *esErr) body() obj {
	if e.bare {
		if e.noStatus {
			return o("error", e.reason)
		}
		return o("error", e.reason, "status", e.status)
	}
	roots := e.roots
	if roots == nil {
		roots = []*esErr{e}
	}
	var rc []any
	for _, r := range roots {
		rc = append(rc, r.cause_(false))
	}
	inner := o("root_cause", rc, "type", e.typ, "reason", e.reason)
	inner = append(inner, e.extra...)
	inner = append(inner, e.top...)
	if e.cause != nil {
		inner = append(inner, kv{"caused_by", e.cause.cause_(true)})
	}
	return o("error", inner, "status", e.status)
}

// shardFailure wraps an error raised while executing a search on an index the way Elasticsearch
// reports it: search_phase_execution_exception, "all shards failed".
func shardFailure(ix *index, cause *esErr) *esErr {
	if cause.typ == "estest_unsupported_exception" || cause.status >= 500 {
		return cause
	}
	return &esErr{
		status: cause.status, typ: "search_phase_execution_exception", reason: "all shards failed",
		roots: []*esErr{cause},
		top: o("phase", "query", "grouped", true, "failed_shards", []any{
			o("shard", 0, "index", ix.name, "node", nodeID, "reason", cause.cause_(true)),
		}),
		cause: cause,
	}
}

// queryShardErr is raised while building a query against an index's mappings.
func queryShardErr(ix *index, format string, args ...any) *esErr {
	e := newErr(400, "query_shard_exception", format, args...)
	e.extra = o("index_uuid", ix.uuid, "index", ix.name)
	return e
}

func fielddataErr(ix *index, name string) *esErr {
	return badRequest("Fielddata is disabled on [%s] in [%s]. Text fields are not optimised for operations that require "+
		"per-document field data like aggregations and sorting, so these operations are disabled by default. Please use a "+
		"keyword field instead. Alternatively, set fielddata=true on [%s] in order to load field data by uninverting the "+
		"inverted index. Note that this can use significant memory.", name, ix.name, name)
}
