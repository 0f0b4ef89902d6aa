// Package http is the Lua module "http": HTTP requests from scripts, for
// identity services, webhooks and enrichment.
//
//	local http = require("http")
//	local resp, err = http.request({method = "POST", url = "https://id.example/auth",
//	    headers = {["Content-Type"] = "application/json"}, body = "{}", timeout = 2})
//	local resp, err = http.get(url [, {headers = ..., timeout = ...}])
//	local resp, err = http.post(url, body [, {headers = ..., timeout = ...}])
//	-- resp = {status = 200, body = "...", headers = {["content-type"] = "..."}}
//
// A request that cannot complete (refused connection, timeout, a response
// larger than the limit) returns nil and a message; any status, 500
// included, is a response. The timeout is in seconds (default 5, capped by
// the module's maximum) and never outlives the calling hook's own deadline.
// Only http and https URLs are allowed, also as redirect targets, and at most
// 5 redirects are followed.
package http

import (
	"context"
	"errors"
	"fmt"
	"io"
	nethttp "net/http"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/tidemq/tide/plugins/lualib/luaconv"
)

// Name is the module's name for require.
const Name = "http"

// Defaults of Options.
const (
	DefaultTimeout  = 5 * time.Second
	DefaultMaxTime  = 30 * time.Second
	DefaultMaxBody  = 10 << 20
	maxRedirections = 5
)

// Options bound what scripts may do.
type Options struct {
	// Timeout applies when a request gives none (default 5s).
	Timeout time.Duration
	// MaxTimeout caps the timeout a request may ask for (default 30s).
	MaxTimeout time.Duration
	// MaxBody bounds a response body (default 10 MiB).
	MaxBody int64
	// Transport, if set, replaces the default transport (tests, proxies).
	Transport nethttp.RoundTripper
}

// Module makes the requests of one broker's scripts; it shares one
// connection pool between them.
type Module struct {
	opts   Options
	client *nethttp.Client
}

// New returns the module with opts (zero fields take the defaults).
func New(opts Options) *Module {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.MaxTimeout <= 0 {
		opts.MaxTimeout = DefaultMaxTime
	}
	if opts.Timeout > opts.MaxTimeout {
		opts.Timeout = opts.MaxTimeout
	}
	if opts.MaxBody <= 0 {
		opts.MaxBody = DefaultMaxBody
	}
	tr := opts.Transport
	if tr == nil {
		t := nethttp.DefaultTransport.(*nethttp.Transport).Clone()
		t.MaxIdleConnsPerHost = 16
		tr = t
	}
	return &Module{opts: opts, client: &nethttp.Client{Transport: tr, CheckRedirect: checkRedirect}}
}

// Close releases idle connections.
func (m *Module) Close() { m.client.CloseIdleConnections() }

func checkRedirect(req *nethttp.Request, via []*nethttp.Request) error {
	if len(via) >= maxRedirections {
		return fmt.Errorf("stopped after %d redirects", maxRedirections)
	}
	if s := req.URL.Scheme; s != "http" && s != "https" {
		return fmt.Errorf("redirect to a %q URL refused: only http and https are allowed", s)
	}
	return nil
}

// Loader is the lua.LGFunction that require calls: it pushes the module.
func (m *Module) Loader(L *lua.LState) int {
	mod := L.NewTable()
	L.SetFuncs(mod, map[string]lua.LGFunction{
		"request": m.luaRequest,
		"get":     m.luaGet,
		"post":    m.luaPost,
	})
	L.Push(mod)
	return 1
}

// request is what a script asks for.
type request struct {
	method  string
	url     string
	headers map[string]string
	body    string
	timeout time.Duration
}

func (m *Module) luaRequest(L *lua.LState) int {
	t := L.CheckTable(1)
	r := request{method: "GET"}
	var err error
	if r.method, err = luaconv.String(t, "method", "GET"); err == nil {
		r.url, err = luaconv.String(t, "url", "")
	}
	if err == nil {
		r.body, err = luaconv.String(t, "body", "")
	}
	if err == nil {
		err = m.options(t, &r)
	}
	if err != nil {
		L.ArgError(1, err.Error())
	}
	return m.do(L, r)
}

func (m *Module) luaGet(L *lua.LState) int {
	r := request{method: "GET", url: L.CheckString(1)}
	if t := L.OptTable(2, nil); t != nil {
		if err := m.options(t, &r); err != nil {
			L.ArgError(2, err.Error())
		}
	}
	return m.do(L, r)
}

func (m *Module) luaPost(L *lua.LState) int {
	r := request{method: "POST", url: L.CheckString(1), body: L.OptString(2, "")}
	if t := L.OptTable(3, nil); t != nil {
		if err := m.options(t, &r); err != nil {
			L.ArgError(3, err.Error())
		}
	}
	return m.do(L, r)
}

// options reads headers and timeout from a table.
func (m *Module) options(t *lua.LTable, r *request) error {
	secs, err := luaconv.Number(t, "timeout", 0)
	if err != nil {
		return err
	}
	if r.timeout, err = luaconv.Seconds(secs); err != nil {
		return fmt.Errorf("timeout: %w", err)
	}
	switch h := t.RawGetString("headers").(type) {
	case *lua.LNilType:
	case *lua.LTable:
		r.headers = map[string]string{}
		h.ForEach(func(k, v lua.LValue) {
			if err == nil {
				ks, kok := k.(lua.LString)
				if !kok {
					err = fmt.Errorf("headers: a name must be a string, not a %s", k.Type())
					return
				}
				r.headers[string(ks)] = v.String()
			}
		})
	default:
		return fmt.Errorf("headers must be a table, not a %s", h.Type())
	}
	return err
}

func (m *Module) do(L *lua.LState, r request) int {
	resp, err := m.Do(L.Context(), r.method, r.url, r.headers, r.body, r.timeout)
	if err != nil {
		return luaconv.Fail(L, err)
	}
	t := L.CreateTable(0, 3)
	t.RawSetString("status", lua.LNumber(resp.Status))
	t.RawSetString("body", lua.LString(resp.Body))
	h := L.CreateTable(0, len(resp.Headers))
	for k, v := range resp.Headers {
		h.RawSetString(k, lua.LString(v))
	}
	t.RawSetString("headers", h)
	L.Push(t)
	return 1
}

// Response is a completed request.
type Response struct {
	Status int
	Body   []byte
	// Headers have lower-case names; repeated headers are joined with ", ".
	Headers map[string]string
}

// Do performs a request under ctx (the calling hook's context, which may
// end sooner than timeout; 0 means the module's default).
func (m *Module) Do(ctx context.Context, method, url string, headers map[string]string, body string, timeout time.Duration) (*Response, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	if !strings.HasPrefix(url, "http://") && !strings.HasPrefix(url, "https://") {
		return nil, fmt.Errorf("http: %q: only http:// and https:// URLs are allowed", url)
	}
	if timeout <= 0 {
		timeout = m.opts.Timeout
	}
	if timeout > m.opts.MaxTimeout {
		timeout = m.opts.MaxTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := nethttp.NewRequestWithContext(ctx, strings.ToUpper(method), url, rd)
	if err != nil {
		return nil, fmt.Errorf("http: %w", err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := m.client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("http: %s %s: timed out", req.Method, url)
		}
		return nil, fmt.Errorf("http: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, m.opts.MaxBody+1))
	if err != nil {
		return nil, fmt.Errorf("http: %s %s: reading the response: %w", req.Method, url, err)
	}
	if int64(len(data)) > m.opts.MaxBody {
		return nil, fmt.Errorf("http: %s %s: response larger than %d bytes", req.Method, url, m.opts.MaxBody)
	}
	out := &Response{Status: resp.StatusCode, Body: data, Headers: make(map[string]string, len(resp.Header))}
	for k, vs := range resp.Header {
		out.Headers[strings.ToLower(k)] = strings.Join(vs, ", ")
	}
	return out, nil
}
