package log

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	lua "github.com/yuin/gopher-lua"
)

func TestLevelsAndFields(t *testing.T) {
	var buf bytes.Buffer
	lg := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})).With("script", "s.lua")
	m := New(lg)
	L := lua.NewState()
	defer L.Close()
	L.PreloadModule(Name, m.Loader)
	fn, err := L.LoadString(`local log = require("log")
log.debug("hidden", {x = 1})
log.info("user in", {user = "alice", attempts = 3, ok = true, tags = {"a"}})
log.warn("plain")
log.error("oops", "not a table")`)
	if err != nil {
		t.Fatal(err)
	}
	fn.Proto.SourceName = "s.lua"
	L.Push(fn)
	if err := L.PCall(0, 0, nil); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines, want 3 (debug is off):\n%s", len(lines), out)
	}
	for i, want := range []string{
		`level=INFO msg="user in" script=s.lua attempts=3 ok=true tags=[a] user=alice line=s.lua:3`,
		`level=WARN msg=plain script=s.lua line=s.lua:4`,
		`level=ERROR msg=oops script=s.lua value="not a table" line=s.lua:5`,
	} {
		if !strings.Contains(lines[i], want) {
			t.Errorf("line %d = %s, want it to contain %s", i+1, lines[i], want)
		}
	}
}

func TestPrint(t *testing.T) {
	var buf bytes.Buffer
	m := New(slog.New(slog.NewTextHandler(&buf, nil)))
	L := lua.NewState()
	defer L.Close()
	L.SetGlobal("print", L.NewFunction(m.Print))
	if err := L.DoString(`print("a", 1, nil, true)`); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `msg="a\t1\tnil\ttrue"`) {
		t.Errorf("print logged %s", buf.String())
	}
}
