package sandbox

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	lua "github.com/yuin/gopher-lua"
)

// run loads src as the script main.lua of a fresh folder and runs it in a
// sandboxed state; it returns the error message, or "".
func run(t *testing.T, env *Env, src string) string {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "main.lua")
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "util.lua"), []byte(`return {answer = 42}`), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := Load(p)
	if err != nil {
		return err.Error()
	}
	env.Script = s
	L := NewState()
	defer L.Close()
	env.Install(L)
	L.Push(L.NewFunctionFromProto(s.Proto))
	if err := L.PCall(0, 0, nil); err != nil {
		msg, _, _ := strings.Cut(err.Error(), "\n")
		return msg
	}
	return ""
}

func TestEnv(t *testing.T) {
	printed := ""
	env := func() *Env {
		return &Env{Kind: "job", Names: []string{"greet"}, MaxString: 1000,
			Modules: map[string]lua.LGFunction{"greet": func(L *lua.LState) int { L.Push(lua.LString("hello")); return 1 }},
			Print:   func(L *lua.LState) int { printed = L.CheckString(1); return 0 }}
	}
	cases := []struct{ src, want string }{
		{`assert(require("greet") == "hello")`, ""},
		{`assert(require("util").answer == 42)`, ""},
		{`print("hi")`, ""},
		{`require("../x")`, `module "../x" is not available: a job may require greet, or a .lua file`},
		{`require("os")`, `module "os" is not available: not a built-in module (greet), and no file os.lua in the script's folder`},
		{`string.rep("x", 2000)`, "string.rep: a result of 2000 bytes would exceed the limit of 1000"},
		{`string.format("%100d", 1)`, `string.format: invalid format "%100d"`},
		{`assert(os.execute == nil and io == nil and debug == nil and collectgarbage == nil)`, ""},
		{`local x = = 1`, "main.lua:1:11: syntax error near '='"},
	}
	for _, tc := range cases {
		got := run(t, env(), tc.src)
		if tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
			t.Errorf("%s: got %q, want %q", tc.src, got, tc.want)
		}
	}
	run(t, env(), `print("hi")`)
	if printed != "hi" {
		t.Errorf("print went to %q, want hi", printed)
	}
	if got := run(t, &Env{}, `print("no print function given")`); got != "" {
		t.Errorf("print without a Print function: %q", got)
	}
}

func TestCheckFormat(t *testing.T) {
	for f, ok := range map[string]bool{"%5.2f": true, "%%": true, "%-10s": true, "%100d": false, "%.100f": false, "%99.99f": true} {
		if _, got := checkFormat(f); got != ok {
			t.Errorf("checkFormat(%q) = %v, want %v", f, got, ok)
		}
	}
}
