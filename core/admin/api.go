package admin

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tidemq/tide/core/topic"
)

// Limits of the API's input.
const (
	// maxBody bounds a POST body: a payload at the broker's largest packet
	// size (256 MiB) is not for an admin API; 4 MiB holds a 3 MiB payload
	// in base64.
	maxBody = 4 << 20
	// defaultRetainedLimit and maxRetainedLimit bound GET /api/retained.
	defaultRetainedLimit = 100
	maxRetainedLimit     = 10000
)

func (a *Admin) handler() http.Handler {
	metrics := promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{
		ErrorLog:      promLogger{a},
		ErrorHandling: promhttp.ContinueOnError,
	})
	mux := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.EscapedPath()
		if p == "/healthz" {
			if allow(w, r, http.MethodGet) {
				writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
			}
			return
		}
		if !a.authorized(w, r) {
			return
		}
		switch {
		case p == "/metrics":
			if allow(w, r, http.MethodGet) {
				metrics.ServeHTTP(w, r)
			}
		case p == "/api/clients":
			if allow(w, r, http.MethodGet) {
				a.listClients(w, r)
			}
		case strings.HasPrefix(p, "/api/clients/"):
			id, ok := pathParam(w, p, "/api/clients/", "client id")
			if !ok {
				return
			}
			switch {
			case r.Method == http.MethodGet || r.Method == http.MethodHead:
				a.getClient(w, id)
			case r.Method == http.MethodDelete:
				a.disconnectClient(w, r, id)
			default:
				methodNotAllowed(w, http.MethodGet, http.MethodDelete)
			}
		case p == "/api/retained":
			if allow(w, r, http.MethodGet) {
				a.listRetained(w, r)
			}
		case strings.HasPrefix(p, "/api/retained/"):
			name, ok := pathParam(w, p, "/api/retained/", "topic")
			if ok && allow(w, r, http.MethodDelete) {
				a.deleteRetained(w, name)
			}
		case p == "/api/publish":
			if allow(w, r, http.MethodPost) {
				a.publish(w, r)
			}
		case p == "/api/reload":
			if allow(w, r, http.MethodPost) {
				a.callReload(w)
			}
		case p == "/api/backup":
			if allow(w, r, http.MethodGet) {
				a.streamBackup(w)
			}
		case p == "/api/jobs":
			if allow(w, r, http.MethodGet) {
				a.listJobs(w)
			}
		default:
			writeError(w, http.StatusNotFound, "not found: %s", r.URL.Path)
		}
	})
	// A page in a browser must not drive the API: its unsafe cross-origin
	// requests (by Sec-Fetch-Site or Origin) are refused.
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusForbidden, "cross-origin request refused")
	}))
	return cop.Handler(mux)
}

// authorized checks the credentials when any are configured, answering 401
// itself when they are missing or wrong.
func (a *Admin) authorized(w http.ResponseWriter, r *http.Request) bool {
	o := a.opts
	if o.Token == "" && o.Username == "" && o.Password == "" {
		return true
	}
	ok := false
	if o.Token != "" {
		if scheme, tok, found := strings.Cut(r.Header.Get("Authorization"), " "); found && strings.EqualFold(scheme, "Bearer") {
			ok = equal(strings.TrimSpace(tok), o.Token)
		}
	}
	if !ok && (o.Username != "" || o.Password != "") {
		if u, p, found := r.BasicAuth(); found {
			// Both compared, so the time does not tell which was wrong.
			uok, pok := equal(u, o.Username), equal(p, o.Password)
			ok = uok && pok
		}
	}
	if ok {
		return true
	}
	a.authFailures.Inc()
	if log, suppressed := a.limiter.Allow("auth"); log {
		a.log.Warn("admin API request refused: missing or wrong credentials",
			"remote", r.RemoteAddr, "path", r.URL.Path, "refused_since_last_log", suppressed+1)
	}
	if o.Token != "" {
		w.Header().Add("WWW-Authenticate", `Bearer realm="tide"`)
	}
	if o.Username != "" || o.Password != "" {
		w.Header().Add("WWW-Authenticate", `Basic realm="tide", charset="UTF-8"`)
	}
	writeError(w, http.StatusUnauthorized, "unauthorized: missing or wrong credentials")
	return false
}

// equal compares in constant time, lengths included (hashing first).
func equal(got, want string) bool {
	g, w := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}

// clientJSON is a client as the API shows it.
type clientJSON struct {
	ID              string    `json:"id"`
	Username        string    `json:"username"`
	RemoteAddr      string    `json:"remote_addr"`
	Listener        string    `json:"listener"`
	Protocol        string    `json:"protocol"`
	ProtocolLevel   byte      `json:"protocol_level"`
	CleanStart      bool      `json:"clean_start"`
	KeepAliveSecs   int64     `json:"keep_alive_seconds"`
	ConnectedAt     time.Time `json:"connected_at"`
	ConnectedSecs   int64     `json:"connected_seconds"`
	Subscriptions   []string  `json:"subscriptions"`
	QueueDepth      int       `json:"queue_depth"`
	InflightMessage int       `json:"inflight"`
}

func toClientJSON(c ClientInfo, now time.Time) clientJSON {
	subs := c.Subscriptions
	if subs == nil {
		subs = []string{}
	}
	return clientJSON{
		ID:              c.ID,
		Username:        c.Username,
		RemoteAddr:      c.RemoteAddr,
		Listener:        c.Listener,
		Protocol:        protocolName(c.Protocol),
		ProtocolLevel:   c.Protocol,
		CleanStart:      c.CleanStart,
		KeepAliveSecs:   int64(c.KeepAlive / time.Second),
		ConnectedAt:     c.ConnectedAt.UTC(),
		ConnectedSecs:   int64(now.Sub(c.ConnectedAt) / time.Second),
		Subscriptions:   subs,
		QueueDepth:      c.QueueDepth,
		InflightMessage: c.Inflight,
	}
}

func protocolName(level byte) string {
	switch level {
	case 3:
		return "3.1"
	case 4:
		return "3.1.1"
	case 5:
		return "5.0"
	}
	return "unknown"
}

func (a *Admin) listClients(w http.ResponseWriter, _ *http.Request) {
	now := time.Now()
	cl := a.b.Clients()
	out := make([]clientJSON, 0, len(cl))
	for _, c := range cl {
		out = append(out, toClientJSON(c, now))
	}
	writeJSON(w, http.StatusOK, map[string]any{"clients": out, "count": len(out)})
}

func (a *Admin) getClient(w http.ResponseWriter, id string) {
	c, ok := a.b.Client(id)
	if !ok {
		writeError(w, http.StatusNotFound, "client %q is not connected", id)
		return
	}
	writeJSON(w, http.StatusOK, toClientJSON(c, time.Now()))
}

func (a *Admin) disconnectClient(w http.ResponseWriter, r *http.Request, id string) {
	reason := r.URL.Query().Get("reason")
	if !a.b.DisconnectClient(id, reason) {
		writeError(w, http.StatusNotFound, "client %q is not connected", id)
		return
	}
	a.log.Info("client disconnected by the admin API", "client", id, "reason", reason, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, map[string]any{"disconnected": id})
}

// messageJSON is a retained message as the API shows it: the payload as
// text when it is valid UTF-8, else in base64.
type messageJSON struct {
	Topic      string     `json:"topic"`
	Payload    string     `json:"payload"`
	Encoding   string     `json:"encoding"` // "utf-8" or "base64"
	QoS        byte       `json:"qos"`
	ReceivedAt *time.Time `json:"received_at,omitempty"`
}

func toMessageJSON(m Message) messageJSON {
	j := messageJSON{Topic: m.Topic, QoS: m.QoS, Payload: string(m.Payload), Encoding: "utf-8"}
	if !utf8.Valid(m.Payload) {
		j.Payload, j.Encoding = base64.StdEncoding.EncodeToString(m.Payload), "base64"
	}
	if !m.Received.IsZero() {
		t := m.Received.UTC()
		j.ReceivedAt = &t
	}
	return j
}

func (a *Admin) listRetained(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	filter := "#"
	if q.Has("filter") {
		filter = q.Get("filter")
	}
	if err := topic.ValidFilter(filter); err != nil {
		writeError(w, http.StatusBadRequest, "filter %q: %v (a # in a URL is written %%23)", filter, err)
		return
	}
	limit := defaultRetainedLimit
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxRetainedLimit {
			writeError(w, http.StatusBadRequest, "limit %q: must be a number from 1 to %d", s, maxRetainedLimit)
			return
		}
		limit = n
	}
	msgs := a.b.RetainedMatch(filter, limit+1)
	truncated := len(msgs) > limit
	if truncated {
		msgs = msgs[:limit]
	}
	out := make([]messageJSON, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, toMessageJSON(m))
	}
	writeJSON(w, http.StatusOK, map[string]any{"retained": out, "count": len(out), "truncated": truncated})
}

func (a *Admin) deleteRetained(w http.ResponseWriter, name string) {
	if err := topic.ValidName(name); err != nil {
		writeError(w, http.StatusBadRequest, "topic %q: %v", name, err)
		return
	}
	if !a.b.DeleteRetained(name) {
		writeError(w, http.StatusNotFound, "no retained message on %q", name)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"deleted": name})
}

// publishRequest is the body of POST /api/publish.
type publishRequest struct {
	Topic         string  `json:"topic"`
	Payload       *string `json:"payload"`
	PayloadBase64 *string `json:"payload_base64"`
	QoS           *int    `json:"qos"`
	Retain        bool    `json:"retain"`
}

func (a *Admin) publish(w http.ResponseWriter, r *http.Request) {
	var req publishRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	if req.Topic == "" {
		writeError(w, http.StatusBadRequest, "topic: missing")
		return
	}
	if err := topic.ValidName(req.Topic); err != nil {
		writeError(w, http.StatusBadRequest, "topic %q: %v", req.Topic, err)
		return
	}
	m := Message{Topic: req.Topic, Retain: req.Retain}
	switch {
	case req.Payload != nil && req.PayloadBase64 != nil:
		writeError(w, http.StatusBadRequest, "payload and payload_base64: give one, not both")
		return
	case req.Payload != nil:
		m.Payload = []byte(*req.Payload)
	case req.PayloadBase64 != nil:
		b, err := base64.StdEncoding.DecodeString(*req.PayloadBase64)
		if err != nil {
			writeError(w, http.StatusBadRequest, "payload_base64: %v", err)
			return
		}
		m.Payload = b
	}
	if req.QoS != nil {
		if *req.QoS < 0 || *req.QoS > 2 {
			writeError(w, http.StatusBadRequest, "qos %d: must be 0, 1 or 2", *req.QoS)
			return
		}
		m.QoS = byte(*req.QoS)
	}
	n, err := a.b.Publish(m)
	if err != nil {
		writeError(w, http.StatusBadRequest, "publish: %v", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"delivered": n})
}

func (a *Admin) callReload(w http.ResponseWriter) {
	f := a.reload.Load()
	if f == nil {
		writeError(w, http.StatusNotImplemented, "reload is not available in this program")
		return
	}
	if err := (*f)(); err != nil {
		a.log.Error("reload from the admin API failed", "err", err)
		writeError(w, http.StatusInternalServerError, "reload failed: %v", err)
		return
	}
	a.log.Info("reloaded from the admin API")
	writeJSON(w, http.StatusOK, map[string]any{"status": "reloaded"})
}

func (a *Admin) streamBackup(w http.ResponseWriter) {
	f := a.backup.Load()
	if f == nil {
		writeError(w, http.StatusNotImplemented, "backup is not available: persistence is disabled")
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="tide.db"`)
	n, err := (*f)(w)
	if err != nil {
		// The status is sent; a failed copy ends short, and the log says why.
		a.log.Error("backup failed", "err", err, "bytes", n)
		return
	}
	a.log.Info("backup streamed", "bytes", n)
}

func (a *Admin) listJobs(w http.ResponseWriter) {
	f := a.jobs.Load()
	if f == nil {
		writeError(w, http.StatusNotImplemented, "jobs are not available in this program")
		return
	}
	writeJSON(w, http.StatusOK, (*f)())
}

// decodeJSON reads one JSON object into v, refusing unknown fields, trailing
// data and bodies over maxBody; it answers the error itself.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			err = errors.New("data after the JSON object")
		}
	}
	if err != nil {
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			writeError(w, http.StatusRequestEntityTooLarge, "body larger than %d bytes", mbe.Limit)
		case errors.Is(err, io.EOF):
			writeError(w, http.StatusBadRequest, "empty body: a JSON object is expected")
		default:
			writeError(w, http.StatusBadRequest, "bad JSON body: %v", err)
		}
		return false
	}
	return true
}

// pathParam returns the rest of an escaped path after prefix, unescaped,
// answering 400 itself when it is empty or badly escaped.
func pathParam(w http.ResponseWriter, escaped, prefix, what string) (string, bool) {
	rest := strings.TrimPrefix(escaped, prefix)
	v, err := url.PathUnescape(rest)
	if err != nil {
		writeError(w, http.StatusBadRequest, "%s %q: %v", what, rest, err)
		return "", false
	}
	if v == "" {
		writeError(w, http.StatusBadRequest, "%s: missing", what)
		return "", false
	}
	return v, true
}

// allow answers 405 unless the request's method is one of methods (HEAD
// counting as GET).
func allow(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m || m == http.MethodGet && r.Method == http.MethodHead {
			return true
		}
	}
	methodNotAllowed(w, methods...)
	return false
}

func methodNotAllowed(w http.ResponseWriter, methods ...string) {
	w.Header().Set("Allow", strings.Join(methods, ", "))
	writeError(w, http.StatusMethodNotAllowed, "method not allowed: use %s", strings.Join(methods, " or "))
}

func writeError(w http.ResponseWriter, status int, format string, args ...any) {
	writeJSON(w, status, map[string]string{"error": fmt.Sprintf(format, args...)})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		status = http.StatusInternalServerError
		buf.Reset()
		b, _ := json.Marshal(map[string]string{"error": "encoding the response: " + err.Error()})
		buf.Write(append(b, '\n'))
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// promLogger passes promhttp's errors (a collector that failed) to the log.
type promLogger struct{ a *Admin }

func (l promLogger) Println(v ...any) {
	if ok, suppressed := l.a.limiter.Allow("metrics"); ok {
		l.a.log.Error("metrics collection", "err", fmt.Sprint(v...), "errors_since_last_log", suppressed+1)
	}
}
