package estest

import (
	"bytes"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// bulkOp is one parsed bulk action.
type bulkOp struct {
	action       string // index, create, delete
	index, id    string
	idSet        bool
	src          []byte
	pipeline     string
	requireAlias bool
	ifSeqNo      int64
	ifTerm       int64
	hasIf        bool
	// filled during execution
	fail *failure
}

type failure struct {
	status      int
	typ, reason string
}

// parseBulk follows Elasticsearch's BulkRequestParser: action lines and source lines separated by
// '\n', the body terminated by '\n', blank action lines skipped, a trailing action without a
// source line dropped.
func parseBulk(data []byte, defIndex, defPipeline string, defRequireAlias bool) ([]*bulkOp, *esErr) {
	var ops []*bulkOp
	line, from := 0, 0
	nextLine := func() (int, *esErr) {
		i := bytes.IndexByte(data[from:], '\n')
		if i < 0 {
			if from != len(data) {
				return -1, badRequest("The bulk request must be terminated by a newline [\\n]")
			}
			return -1, nil
		}
		return from + i, nil
	}
	for {
		end, e := nextLine()
		if e != nil {
			return nil, e
		}
		if end < 0 {
			break
		}
		line++
		actionLine := data[from:end]
		from = end + 1
		if len(bytes.TrimSpace(actionLine)) == 0 {
			continue
		}
		root, err := parseJSON(actionLine)
		if err != nil {
			return nil, parseErr(400, "x_content_parse_exception", actionLine, err)
		}
		if root.kind != 'o' {
			return nil, badRequest("Malformed action/metadata line [%d], expected START_OBJECT but found [%s]", line, tokenName(root))
		}
		if len(root.keys) == 0 {
			return nil, badRequest("Malformed action/metadata line [%d], expected FIELD_NAME but found [END_OBJECT]", line)
		}
		op := &bulkOp{action: root.keys[0], index: defIndex, pipeline: defPipeline, requireAlias: defRequireAlias}
		switch op.action {
		case "index", "create", "delete":
		case "update":
			return nil, unsupported("bulk action [update]")
		default:
			return nil, badRequest("Malformed action/metadata line [%d], expected field [create], [delete], [index] or [update] but found [%s]", line, op.action)
		}
		meta := root.vals[0]
		if meta.kind != 'o' {
			return nil, badRequest("Malformed action/metadata line [%d], expected START_OBJECT or END_OBJECT but found [%s]", line, tokenName(meta))
		}
		for i, k := range meta.keys {
			v := meta.vals[i]
			switch v.kind {
			case 'z':
				continue
			case 'a', 'o':
				if k == "_source" || k == "dynamic_templates" {
					return nil, unsupported("bulk action parameter [%s]", k)
				}
				return nil, badRequest("Malformed action/metadata line [%d], expected a simple value for field [%s] but found [%s]", line, k, tokenName(v))
			}
			text := v.s
			if v.kind == 'b' {
				text = strconv.FormatBool(v.b)
			}
			switch k {
			case "_index":
				op.index = text
			case "_id":
				op.id, op.idSet = text, true
			case "routing", "retry_on_conflict", "_source":
			case "op_type":
				switch text {
				case "create":
					if op.action == "index" {
						op.action = "create"
					}
				case "index":
				default:
					return nil, badRequest("opType must be 'create' or 'index', found: [%s]", text)
				}
			case "pipeline":
				op.pipeline = text
			case "require_alias":
				op.requireAlias = text == "true"
			case "if_seq_no", "if_primary_term":
				n, err := strconv.ParseInt(text, 10, 64)
				if err != nil {
					return nil, badRequest("Failed to parse long for [%s]: %s", k, text)
				}
				op.hasIf = true
				if k == "if_seq_no" {
					op.ifSeqNo = n
				} else {
					op.ifTerm = n
				}
			case "version", "version_type":
				return nil, unsupported("bulk action parameter [%s]", k)
			default:
				return nil, badRequest("Action/metadata line [%d] contains an unknown parameter [%s]", line, k)
			}
		}
		if op.action != "delete" {
			end, e := nextLine()
			if e != nil {
				return nil, e
			}
			if end < 0 {
				break
			}
			line++
			op.src = bytes.TrimSuffix(data[from:end], []byte("\r"))
			from = end + 1
		}
		ops = append(ops, op)
	}
	var msgs []string
	for _, op := range ops {
		switch {
		case op.index == "":
			msgs = append(msgs, "index is missing")
		case op.action == "delete" && !op.idSet:
			msgs = append(msgs, "id is missing")
		case op.idSet && op.id == "":
			msgs = append(msgs, "if _id is specified it must not be empty")
		case len(op.id) > 512:
			msgs = append(msgs, fmt.Sprintf("id [%s] is too long, must be no longer than 512 bytes but was: %d", op.id, len(op.id)))
		case op.hasIf && (op.ifSeqNo < 0 || op.ifTerm <= 0):
			msgs = append(msgs, "ifSeqNo is set, but primary term is [0]")
		}
	}
	if len(ops) == 0 {
		msgs = append(msgs, "no requests added")
	}
	if len(msgs) > 0 {
		return nil, validationErr(msgs...)
	}
	return ops, nil
}

// requestFailure is the body Elasticsearch sends when a whole _bulk is refused with status.
func requestFailure(status int) *esErr {
	switch status {
	case 503:
		return newErr(503, "cluster_block_exception", "blocked by: [SERVICE_UNAVAILABLE/2/no master];")
	case 429:
		return newErr(429, "es_rejected_execution_exception", "%s", ReasonRejected)
	case 403:
		return newErr(403, "security_exception", "action [indices:data/write/bulk] is unauthorized for user [estest] with effective roles [], this action is granted by the index privileges [create_doc,create,index,write,all]")
	case 408, 504:
		return newErr(status, "timeout_exception", "estest: injected timeout")
	}
	return newErr(status, "exception", "estest: injected failure with status [%d]", status)
}

func refreshParam(c *call) (force, refresh bool, e *esErr) {
	if !c.params.Has("refresh") {
		return false, false, nil
	}
	switch v := c.params.Get("refresh"); v {
	case "", "true":
		return true, true, nil
	case "wait_for":
		return false, true, nil
	case "false":
		return false, false, nil
	default:
		return false, false, badRequest("Unknown value for refresh: [%s].", v)
	}
}

func (s *Server) bulk(c *call) {
	s.mu.Lock()
	if s.failN > 0 {
		s.failN--
		status := s.failStatus
		s.mu.Unlock()
		if status == 413 {
			s.writeEmpty(c, 413)
			return
		}
		s.fail(c, requestFailure(status))
		return
	}
	failer := s.failItems
	s.mu.Unlock()

	force, refresh, e := refreshParam(c)
	if e != nil {
		s.fail(c, e)
		return
	}
	requireAlias, e := boolParam(c, "require_alias", false)
	if e != nil {
		s.fail(c, e)
		return
	}
	if c.params.Has("require_data_stream") || c.params.Has("list_executed_pipelines") {
		s.fail(c, unsupported("_bulk data stream parameters"))
		return
	}
	ops, e := parseBulk(c.body, c.vars["index"], c.params.Get("pipeline"), requireAlias)
	if e != nil {
		s.fail(c, e)
		return
	}
	for _, op := range ops {
		if !op.idSet && op.action != "delete" {
			op.id = randomID(20)
		}
		if failer != nil {
			if st, typ, reason := failer(op.action, op.index, op.id, op.src); st != 0 {
				op.fail = &failure{status: st, typ: typ, reason: reason}
			}
		}
	}

	s.mu.Lock()
	items := make([]any, len(ops))
	errors := false
	touched := map[*index]bool{}
	for i, op := range ops {
		res, ix, e := s.execute(op, force)
		if ix != nil {
			touched[ix] = true
		}
		if e != nil {
			errors = true
			var id any = op.id
			if op.id == "" {
				id = nil
			}
			items[i] = o(op.action, o("_index", op.index, "_id", id, "status", e.status, "error", e.cause_(true)))
			continue
		}
		items[i] = o(op.action, res)
	}
	if refresh {
		now := s.now()
		for ix := range touched {
			ix.refresh(now)
		}
	}
	s.mu.Unlock()
	s.reply(c, 200, o("errors", errors, "took", c.took(), "items", items))
}

// execute applies one write. The caller holds s.mu. res is the success response with its status.
func (s *Server) execute(op *bulkOp, forced bool) (res obj, ix *index, e *esErr) {
	if e := checkIndexName(op.index); e != nil {
		return nil, nil, e
	}
	if op.pipeline != "" && op.pipeline != "_none" {
		return nil, nil, badRequest("pipeline with id [%s] does not exist", op.pipeline)
	}
	ix = s.indices[op.index]
	if ix == nil {
		switch {
		case op.action == "delete":
			return nil, nil, indexNotFound(op.index, "index_or_alias")
		case op.requireAlias:
			e := indexNotFound(op.index, "index_or_alias")
			e.reason = fmt.Sprintf("no such index [%s] and [require_alias] request flag is [true] and [%s] is not an alias", op.index, op.index)
			return nil, nil, e
		}
		if ix, e = s.createIndex(op.index, nil, nil); e != nil {
			return nil, nil, e
		}
	} else if op.requireAlias {
		e := indexNotFound(op.index, "index_or_alias")
		e.reason = fmt.Sprintf("[require_alias] request flag is [true] and [%s] is not an alias", op.index)
		return nil, ix, e
	}
	if f := op.fail; f != nil {
		return nil, ix, newErr(f.status, f.typ, "%s", f.reason)
	}
	old := ix.docs[op.id]
	if op.hasIf {
		if old == nil {
			return nil, ix, conflict(ix, op.id, fmt.Sprintf("required seqNo [%d], primary term [%d]. but no document was found", op.ifSeqNo, op.ifTerm))
		}
		if old.seq != op.ifSeqNo || op.ifTerm != 1 {
			return nil, ix, conflict(ix, op.id, fmt.Sprintf("required seqNo [%d], primary term [%d]. current document has seqNo [%d] and primary term [1]", op.ifSeqNo, op.ifTerm, old.seq))
		}
	}
	var status int
	var result string
	var version int64 = 1
	switch op.action {
	case "delete":
		if old == nil {
			status, result = 404, "not_found"
		} else {
			status, result, version = 200, "deleted", old.version+1
			delete(ix.docs, op.id)
		}
	default:
		if len(bytes.TrimSpace(op.src)) == 0 {
			return nil, ix, newErr(400, "document_parsing_exception", "failed to parse, document is empty")
		}
		root, err := parseJSON(op.src)
		if err != nil {
			je := err.(*jsonErr)
			e := newErr(400, "document_parsing_exception", "%s failed to parse: %s", loc(op.src, je.off), je.msg)
			e.cause = parseErr(400, "x_content_parse_exception", op.src, err)
			return nil, ix, e
		}
		p := &docParser{src: op.src, id: op.id, mappings: deepCopy(ix.mappings).(map[string]any)}
		if e := p.parse(root); e != nil {
			return nil, ix, e
		}
		if old != nil && op.action == "create" {
			return nil, ix, conflict(ix, op.id, fmt.Sprintf("document already exists (current version [%d])", old.version))
		}
		ix.mappings = p.mappings
		status, result = 201, "created"
		if old != nil {
			status, result, version = 200, "updated", old.version+1
		}
		ix.docs[op.id] = &doc{id: op.id, src: append([]byte(nil), op.src...), parsed: root.any(), version: version, seq: ix.seq}
	}
	seq := ix.seq
	ix.seq++
	ix.dirty = true
	res = o("_index", ix.name, "_id", op.id, "_version", version, "result", result)
	if forced {
		res = append(res, kv{"forced_refresh", true})
	}
	res = append(res, o("_shards", o("total", 2, "successful", 1, "failed", 0), "_seq_no", seq, "_primary_term", 1, "status", status)...)
	return res, ix, nil
}

func conflict(ix *index, id, what string) *esErr {
	e := newErr(409, "version_conflict_engine_exception", "[%s]: version conflict, %s", id, what)
	e.extra = o("index_uuid", ix.uuid, "shard", "0", "index", ix.name)
	return e
}

// indexDoc serves PUT/POST <index>/_doc[/<id>] and <index>/_create/<id>.
func (s *Server) indexDoc(c *call) {
	force, refresh, e := refreshParam(c)
	if e != nil {
		s.fail(c, e)
		return
	}
	op := &bulkOp{action: "index", index: c.vars["index"], src: c.body, pipeline: c.params.Get("pipeline")}
	if strings.Contains(c.r.URL.Path, "/_create/") || c.params.Get("op_type") == "create" {
		op.action = "create"
	}
	if id, ok := c.vars["id"]; ok {
		op.id, op.idSet = id, true
	} else {
		op.id = randomID(20)
	}
	if c.params.Has("if_seq_no") {
		op.hasIf = true
		op.ifSeqNo, _ = strconv.ParseInt(c.params.Get("if_seq_no"), 10, 64)
		op.ifTerm, _ = strconv.ParseInt(c.params.Get("if_primary_term"), 10, 64)
	}
	if c.params.Has("version") || c.params.Has("require_data_stream") {
		s.fail(c, unsupported("external versioning and data streams"))
		return
	}
	if len(bytes.TrimSpace(c.body)) == 0 {
		s.fail(c, newErr(400, "parse_exception", "request body is required"))
		return
	}
	s.singleWrite(c, op, force, refresh)
}

func (s *Server) deleteDoc(c *call) {
	force, refresh, e := refreshParam(c)
	if e != nil {
		s.fail(c, e)
		return
	}
	op := &bulkOp{action: "delete", index: c.vars["index"], id: c.vars["id"], idSet: true}
	if c.params.Has("if_seq_no") {
		op.hasIf = true
		op.ifSeqNo, _ = strconv.ParseInt(c.params.Get("if_seq_no"), 10, 64)
		op.ifTerm, _ = strconv.ParseInt(c.params.Get("if_primary_term"), 10, 64)
	}
	s.singleWrite(c, op, force, refresh)
}

func (s *Server) singleWrite(c *call, op *bulkOp, force, refresh bool) {
	s.mu.Lock()
	failer := s.failItems
	s.mu.Unlock()
	if failer != nil {
		if st, typ, reason := failer(op.action, op.index, op.id, op.src); st != 0 {
			op.fail = &failure{status: st, typ: typ, reason: reason}
		}
	}
	s.mu.Lock()
	res, ix, e := s.execute(op, force)
	if e == nil && refresh {
		ix.refresh(s.now())
	}
	s.mu.Unlock()
	if e != nil {
		s.fail(c, e)
		return
	}
	status := res[len(res)-1].v.(int)
	s.reply(c, status, res[:len(res)-1])
}

func (s *Server) getDoc(c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	name, id := c.vars["index"], c.vars["id"]
	ix := s.indices[name]
	if ix == nil {
		if c.r.Method == http.MethodHead {
			s.writeEmpty(c, 404)
			return
		}
		s.fail(c, indexNotFound(name, "index_expression"))
		return
	}
	d := ix.docs[id]
	if c.r.Method == http.MethodHead {
		if d == nil {
			s.writeEmpty(c, 404)
		} else {
			s.writeEmpty(c, 200)
		}
		return
	}
	if d == nil {
		s.reply(c, 404, o("_index", name, "_id", id, "found", false))
		return
	}
	out := o("_index", name, "_id", id, "_version", d.version, "_seq_no", d.seq, "_primary_term", 1, "found", true)
	if src, e := boolParam(c, "_source", true); e != nil {
		s.fail(c, unsupported("_source filtering on GET"))
		return
	} else if src {
		out = append(out, kv{"_source", d.src})
	}
	s.reply(c, 200, out)
}
