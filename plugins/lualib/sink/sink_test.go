package sink

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	lua "github.com/yuin/gopher-lua"
)

type recorder struct {
	got []string
	err error
}

func (r *recorder) Write(name string, rec map[string]any) error {
	if r.err != nil {
		return r.err
	}
	r.got = append(r.got, fmt.Sprintf("%s %v", name, rec))
	return nil
}

func run(t *testing.T, w Writer, src string) (string, error) {
	t.Helper()
	L := lua.NewState()
	defer L.Close()
	m := New(func() Writer { return w })
	L.PreloadModule(Name, m.Loader)
	top := L.GetTop()
	if err := L.DoString(`local sink = require("sink") ` + src); err != nil {
		return "", err
	}
	var out []string
	for i := top + 1; i <= L.GetTop(); i++ {
		out = append(out, L.Get(i).String())
	}
	return strings.Join(out, " "), nil
}

func TestWrite(t *testing.T) {
	r := &recorder{}
	got, err := run(t, r, `return sink.write("ts", {topic = "a/b", value = 21.5, n = 3, tags = {"x"}})`)
	if err != nil || got != "true" {
		t.Fatalf("write = %q, %v; want true", got, err)
	}
	if want := "ts map[n:3 tags:[x] topic:a/b value:21.5]"; len(r.got) != 1 || r.got[0] != want {
		t.Errorf("records = %v, want [%s]", r.got, want)
	}
	r.err = errors.New("queue full")
	if got, _ := run(t, r, `return sink.write("ts", {})`); got != `nil sink.write "ts": queue full` {
		t.Errorf("failed write = %q", got)
	}
	if got, _ := run(t, r, `return sink.write("ts", {1, 2})`); !strings.Contains(got, "not a list") {
		t.Errorf("list record = %q", got)
	}
}

func TestNoDatastore(t *testing.T) {
	_, err := run(t, nil, `return sink.write("ts", {a = 1})`)
	if err == nil || !strings.Contains(err.Error(), "sink module: no datastore configured") {
		t.Errorf("write without a datastore: %v, want the error %q", err, ErrNotConfigured)
	}
}
