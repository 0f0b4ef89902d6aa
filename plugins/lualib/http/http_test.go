package http

import (
	"context"
	"io"
	nethttp "net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"
)

func run(t *testing.T, m *Module, ctx context.Context, src string, args ...lua.LValue) string {
	t.Helper()
	L := lua.NewState()
	defer L.Close()
	if ctx != nil {
		L.SetContext(ctx)
	}
	L.PreloadModule(Name, m.Loader)
	fn, err := L.LoadString(`local http = require("http") local url = ... ` + src)
	if err != nil {
		t.Fatal(err)
	}
	top := L.GetTop()
	L.Push(fn)
	for _, a := range args {
		L.Push(a)
	}
	if err := L.PCall(len(args), lua.MultRet, nil); err != nil {
		return "raised: " + err.Error()
	}
	var out []string
	for i := top + 1; i <= L.GetTop(); i++ {
		out = append(out, L.Get(i).String())
	}
	return strings.Join(out, " ")
}

func TestRequests(t *testing.T) {
	srv := httptest.NewServer(nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Seen", r.Method+" "+r.Header.Get("X-Token")+" "+string(body))
		switch r.URL.Path {
		case "/missing":
			w.WriteHeader(404)
		case "/big":
			w.Write([]byte(strings.Repeat("x", 2000)))
		case "/redirect-file":
			nethttp.Redirect(w, r, "file:///etc/passwd", nethttp.StatusFound)
		case "/redirect":
			nethttp.Redirect(w, r, "/ok", nethttp.StatusFound)
		default:
			w.Write([]byte("hello"))
		}
	}))
	defer srv.Close()
	m := New(Options{MaxBody: 1000})
	defer m.Close()
	u := lua.LString(srv.URL)
	cases := []struct{ src, want string }{
		{`local r = http.get(url .. "/ok") return r.status, r.body, r.headers["x-seen"]`, "200 hello GET"},
		{`local r = http.get(url .. "/ok", {headers = {["X-Token"] = "t1"}}) return r.headers["x-seen"]`, "GET t1"},
		{`local r = http.post(url, "payload", {headers = {["X-Token"] = "t2"}}) return r.headers["x-seen"]`, "POST t2 payload"},
		{`local r = http.request({method = "put", url = url, body = "b"}) return r.status, r.headers["x-seen"]`, "200 PUT  b"},
		{`local r = http.get(url .. "/missing") return r.status`, "404"},
		{`local r = http.get(url .. "/redirect") return r.status, r.body`, "200 hello"},
		{`return http.get(url .. "/big")`, "nil http: GET " + srv.URL + "/big: response larger than 1000 bytes"},
		{`local r, err = http.get(url .. "/redirect-file") return r, err:find("only http and https are allowed", 1, true) ~= nil`, "nil true"},
		{`return http.get("file:///etc/passwd")`, `nil http: "file:///etc/passwd": only http:// and https:// URLs are allowed`},
		{`local r, err = http.get("http://127.0.0.1:1/") return r, err:find("connection refused", 1, true) ~= nil`, "nil true"},
		{`return http.get(url, {timeout = -1})`, "raised: <string>:1: bad argument #2 to get (timeout: invalid number of seconds -1)"},
	}
	for _, tc := range cases {
		if got, _, _ := strings.Cut(run(t, m, nil, tc.src, u), "\nstack traceback"); got != tc.want {
			t.Errorf("%s = %q, want %q", tc.src, got, tc.want)
		}
	}
}

func TestTimeouts(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	m := New(Options{MaxTimeout: time.Second})
	defer m.Close()
	u := lua.LString(srv.URL)

	start := time.Now()
	if got := run(t, m, nil, `return http.get(url, {timeout = 0.1})`, u); got != "nil http: GET "+srv.URL+": timed out" {
		t.Errorf("request timeout: %q", got)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("a 0.1s timeout took %v", took)
	}
	// The caller's context (the hook's deadline) ends the request sooner.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start = time.Now()
	if got := run(t, m, ctx, `return http.get(url, {timeout = 30})`, u); !strings.HasPrefix(got, "nil http:") {
		t.Errorf("request under a short context: %q, want nil and an error", got)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("a request under a 100ms context took %v", took)
	}
}
