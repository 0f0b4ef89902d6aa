package plugins

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tidemq/tide/conf"
	"github.com/tidemq/tide/core/event"
)

// probe runs code inside a hook under pcall and returns "true <result>" or
// "false <error>".
func probe(t *testing.T, m *Manager, code string) string {
	t.Helper()
	msg := testMessage()
	msg.Payload = []byte(code)
	d := m.OnPublish(ctx, testClient, msg)
	if d.Verdict != event.Deny {
		t.Fatalf("probe %q: verdict %v (%s)", code, d.Verdict, d.Reason)
	}
	return d.Reason
}

const probeScript = `
function on_publish(client, msg)
  local fn, err = loadstring(msg.payload, "probe")
  if not fn then return false, "false compile: " .. err end
  local ok, res = pcall(fn)
  return false, tostring(ok) .. " " .. tostring(res)
end`

func sandboxManager(t *testing.T) (*Manager, string) {
	t.Helper()
	root := t.TempDir()
	dir := filepath.Join(root, "scripts")
	writeScript(t, dir, "lib/util.lua", `local M = {} function M.twice(x) return 2 * x end return M`)
	writeScript(t, dir, "cycle_a.lua", `return require("cycle_b")`)
	writeScript(t, dir, "cycle_b.lua", `return require("cycle_a")`)
	writeScript(t, dir, "users.txt", "alice:x\n")
	writeScript(t, dir, "broken.lua", "local x = = 1\n")
	writeScript(t, root, "secret.lua", `return "secret"`)
	if err := os.Symlink(filepath.Join(root, "secret.lua"), filepath.Join(dir, "link.lua")); err != nil {
		t.Fatal(err)
	}
	m, _ := withScriptIn(t, dir, probeScript, func(p *conf.Plugin) { p.Timeout.Duration = 5 * time.Second })
	return m, root
}

// withScriptIn is withScript with the script in a given folder.
func withScriptIn(t *testing.T, dir, src string, edit ...func(*conf.Plugin)) (*Manager, *logBuffer) {
	t.Helper()
	lg, lb := newLogger()
	m := newManager(t, Options{Logger: lg, MaxStringBytes: 1 << 20})
	p := plugin("p", writeScript(t, dir, "p.lua", src))
	for _, e := range edit {
		e(&p)
	}
	load(t, m, p)
	return m, lb
}

func TestSandboxRefusals(t *testing.T) {
	m, root := sandboxManager(t)
	cases := []struct{ code, want string }{
		{`return os.execute("touch /tmp/pwned")`, "false probe:1: attempt to call a non-function object"},
		{`return os.exit(1)`, "false probe:1: attempt to call a non-function object"},
		{`return os.getenv("HOME")`, "false probe:1: attempt to call a non-function object"},
		{`return os.remove("/tmp/x")`, "false probe:1: attempt to call a non-function object"},
		{`return io`, "true nil"},
		{`return io.open("/etc/passwd")`, "false probe:1: attempt to index a non-table object(nil) with key 'open'"},
		{`return getmetatable("").__index.rep("x", 1e9)`, "false probe:1: string.rep: a result of 1000000000 bytes would exceed the limit"},
		{`return _G.os.execute`, "true nil"},
		{`return debug`, "true nil"},
		{`return package`, "true nil"},
		{`return collectgarbage`, "true nil"},
		{`return getfenv`, "true nil"},
		{`return string.dump`, "true nil"},
		{`return require("os")`, `false probe:1: module "os" is not available: not a built-in module (json, log, crypto, broker, kv, http, sql, sink), and no file os.lua in the script's folder`},
		{`return require("io")`, `false probe:1: module "io" is not available`},
		{`return require("debug")`, `false probe:1: module "debug" is not available`},
		{`return require("../secret")`, `false probe:1: module "../secret" is not available: a plugin may require`},
		{`return require("/etc/passwd")`, `false probe:1: module "/etc/passwd" is not available`},
		{`return require("link")`, `false probe:1: module "link" is not available`},
		{`return loadfile("/etc/passwd")`, `true nil`},
		{`return select(2, loadfile("/etc/passwd"))`, `true loadfile: "/etc/passwd": absolute paths are not allowed`},
		{`return select(2, loadfile("../secret.lua"))`, `true loadfile: "../secret.lua" is outside the script's folder`},
		{`return select(2, loadfile("link.lua"))`, `true loadfile: "link.lua" leads outside the script's folder`},
		{`return dofile("../secret.lua")`, `false probe:1: dofile: "../secret.lua" is outside the script's folder`},
		{`return select(2, readfile("../secret.lua"))`, `true readfile: "../secret.lua" is outside the script's folder`},
		{`return select(2, readfile(` + "`" + `/etc/passwd` + "`" + `))`, `false compile`},
		{`return select(2, readfile("/etc/passwd"))`, `true readfile: "/etc/passwd": absolute paths are not allowed`},
		{`return string.rep("x", 1e9)`, "false probe:1: string.rep: a result of 1000000000 bytes would exceed the limit of 1048576"},
		{`return ("ab"):rep(1e6)`, "false probe:1: string.rep: a result of 2000000 bytes would exceed the limit of 1048576"},
		{`return string.format("%999999d", 1)`, `false probe:1: string.format: invalid format "%999999d" (width or precision too long)`},
		{`return string.format("%.100f", 1)`, `false probe:1: string.format: invalid format "%.100f" (width or precision too long)`},
		{`return string.gsub(string.rep("x", 1000), "x", string.rep("y", 2000))`, "false probe:1: string.gsub: the result could reach"},
		{`return os.date(string.rep("%c", 200))`, "false probe:1: os.date: format longer than 256 characters"},
		{`local function f(n) return 1 + f(n + 1) end return f(1)`, "false probe:1: stack overflow"},
		{`return unpack({}, 1, 1e7)`, "false"},
		{`return require("cycle_a")`, `false cycle_b.lua:1: require "cycle_a": circular require`},
		{`return require("broken")`, `false probe:1: require "broken": broken.lua:1:11: syntax error near '='`},
	}
	for _, tc := range cases {
		got := probe(t, m, tc.code)
		if !strings.HasPrefix(got, tc.want) {
			t.Errorf("%s\n = %q\nwant prefix %q", tc.code, got, tc.want)
		}
	}
	if _, err := os.Stat("/tmp/pwned"); err == nil {
		t.Error("os.execute ran")
	}
	_ = root
}

func TestSandboxAllows(t *testing.T) {
	m, _ := sandboxManager(t)
	cases := []struct{ code, want string }{
		{`return require("lib.util").twice(21)`, "true 42"},
		{`return require("lib.util") == require("lib.util")`, "true true"},
		{`return loadfile("lib/util.lua")().twice(2)`, "true 4"},
		{`return dofile("lib/util.lua").twice(3)`, "true 6"},
		{`return readfile("users.txt")`, "true alice:x\n"},
		{`return require("json").encode({a = 1})`, `true {"a":1}`},
		{`return type(os.time()) .. type(os.clock()) .. type(os.date("%Y"))`, "true numbernumberstring"},
		{`return string.format("%5.2f|%-3d|%%|%s", 3.14159, 7, "x")`, "true  3.14|7  |%|x"},
		{`return ("x"):rep(3) .. string.rep("ab", 2)`, "true xxxabab"},
		{`return (string.gsub("hello world", "o", "0"))`, "true hell0 w0rld"},
		{`return loadstring("return 1 + 1")()`, "true 2"},
		{`return math.max(1, 5) + #table.concat({"a", "b"})`, "true 7"},
		{`return type(config)`, "true table"},
	}
	for _, tc := range cases {
		if got := probe(t, m, tc.code); got != tc.want {
			t.Errorf("%s\n = %q\nwant %q", tc.code, got, tc.want)
		}
	}
}

func TestLoadErrorsNameFileAndLine(t *testing.T) {
	dir := t.TempDir()
	m := newManager(t, Options{})
	cases := []struct{ src, want string }{
		{"function on_publish(c, m)\n  return true\nend end\n", "bad.lua:3:7: syntax error near 'end'"},
		{"function on_publish(c, m)\n  local x = \"unclosed\nend\n", "bad.lua:3:0: unterminated string"},
		{"local t = nil\nlocal y = t.x\n", "bad.lua:2: attempt to index a non-table object(nil) with key 'x'"},
		{"function init()\n  error(\"cannot reach the user table\")\nend\n", "bad.lua:2: cannot reach the user table"},
		{"while true do end\n", "timed out"},
	}
	for _, tc := range cases {
		p := plugin("bad", writeScript(t, dir, "bad.lua", tc.src))
		m.opts.InitTimeout = 200 * time.Millisecond
		err := m.Reload([]conf.Plugin{p})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("load of %q: %v, want an error containing %q", tc.src, err, tc.want)
		}
	}
	if err := m.Reload([]conf.Plugin{plugin("gone", filepath.Join(dir, "missing.lua"))}); err == nil || !strings.Contains(err.Error(), "missing.lua: no such file or directory") {
		t.Errorf("missing script: %v", err)
	}
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	good := writeScript(t, dir, "good.lua", "function on_publish() return true end")
	bad := writeScript(t, dir, "bad.lua", "function on_publish(\n")
	if err := Check([]conf.Plugin{plugin("good", good)}); err != nil {
		t.Errorf("Check(good) = %v", err)
	}
	err := Check([]conf.Plugin{plugin("good", good), plugin("bad", bad), plugin("missing", filepath.Join(dir, "none.lua")), {Name: "noscript"}})
	if err == nil {
		t.Fatal("Check accepted a broken configuration")
	}
	for _, want := range []string{"plugin bad: " + bad + ": at end of file", "plugin missing: script " + filepath.Join(dir, "none.lua") + ": no such file", "plugin noscript: script is missing"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Check error does not contain %q:\n%v", want, err)
		}
	}
}
