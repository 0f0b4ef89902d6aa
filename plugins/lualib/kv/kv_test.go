package kv

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"
)

func run(t *testing.T, s *Store, src string) string {
	t.Helper()
	L := lua.NewState()
	defer L.Close()
	L.PreloadModule(Name, s.Loader)
	top := L.GetTop()
	if err := L.DoString(`local kv = require("kv") ` + src); err != nil {
		t.Fatalf("%s: %v", src, err)
	}
	var out []string
	for i := top + 1; i <= L.GetTop(); i++ {
		out = append(out, L.Get(i).String())
	}
	return strings.Join(out, " ")
}

func newStore(t *testing.T, keys, bytes int) *Store {
	s := NewStore(keys, bytes)
	t.Cleanup(s.Close)
	return s
}

func TestGetSetIncrDel(t *testing.T) {
	s := newStore(t, 0, 0)
	cases := []struct{ src, want string }{
		{`return kv.get("missing")`, "nil"},
		{`return kv.set("a", "x"), kv.get("a")`, "true x"},
		{`return kv.set("n", 1.5), kv.get("n")`, "true 1.5"},
		{`return kv.set("b", false), kv.get("b")`, "true false"},
		{`return kv.incr("c"), kv.incr("c"), kv.incr("c", 10)`, "1 2 12"},
		{`return kv.incr("a")`, `nil kv: incr of "a", which holds a string`},
		{`return kv.set("t", {})`, "nil kv: a value must be a string, number or boolean, not a table (encode tables with json)"},
		{`return kv.del("a"), kv.del("a"), kv.get("a")`, "true false nil"},
	}
	for _, tc := range cases {
		if got := run(t, s, tc.src); got != tc.want {
			t.Errorf("%s = %s, want %s", tc.src, got, tc.want)
		}
	}
}

func TestTTL(t *testing.T) {
	s := newStore(t, 0, 0)
	now := time.Unix(1000, 0)
	s.now = func() time.Time { return now }
	run(t, s, `kv.set("k", "v", 2) kv.incr("w", 1, 1) kv.incr("w", 1, 1)`)
	if got := run(t, s, `return kv.get("k"), kv.get("w")`); got != "v 2" {
		t.Fatalf("before expiry: %s, want v 2", got)
	}
	now = now.Add(1500 * time.Millisecond)
	// The window counter expired: incr starts a new window from 0.
	if got := run(t, s, `return kv.get("k"), kv.incr("w", 1, 1)`); got != "v 1" {
		t.Errorf("after 1.5s: %s, want v 1", got)
	}
	now = now.Add(time.Second)
	if got := run(t, s, `return kv.get("k"), kv.del("w")`); got != "nil false" {
		t.Errorf("after 2.5s: %s, want nil false", got)
	}
	if err := func() error {
		L := lua.NewState()
		defer L.Close()
		L.PreloadModule(Name, s.Loader)
		return L.DoString(`require("kv").set("k", "v", -1)`)
	}(); err == nil || !strings.Contains(err.Error(), "ttl") {
		t.Errorf("negative ttl: %v, want an error about ttl", err)
	}
}

func TestBounds(t *testing.T) {
	s := newStore(t, 3, 1000)
	for _, k := range []string{"a", "b", "c"} {
		if err := s.Set(k, lua.LString("v"), 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Set("d", lua.LString("v"), 0); !errors.Is(err, ErrFull) || !strings.Contains(err.Error(), "limits 3 keys") {
		t.Errorf("fourth key: %v, want ErrFull naming the limit", err)
	}
	if err := s.Set("a", lua.LString("replaced"), 0); err != nil {
		t.Errorf("replacing a key of a full store: %v", err)
	}
	if _, err := s.Incr("e", 1, 0); !errors.Is(err, ErrFull) {
		t.Errorf("incr of a new key: %v, want ErrFull", err)
	}
	if err := s.Set("b", lua.LString(strings.Repeat("x", 2000)), 0); !errors.Is(err, ErrFull) {
		t.Errorf("value beyond the byte limit: %v, want ErrFull", err)
	}
	if err := s.Set("big", lua.LString(strings.Repeat("x", MaxValueBytes)), 0); err == nil || !strings.Contains(err.Error(), "exceed the limit") {
		t.Errorf("value beyond the per-value limit: %v", err)
	}
	// Expired keys make room.
	now := time.Now()
	s.now = func() time.Time { return now }
	s.Del("c")
	if err := s.Set("c", lua.LString("v"), time.Second); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Second)
	if err := s.Set("d", lua.LString("v"), 0); err != nil {
		t.Errorf("with an expired key to sweep: %v", err)
	}
	if s.Len() != 3 || s.FullErrors() != 3 {
		t.Errorf("len %d full errors %d, want 3 and 3", s.Len(), s.FullErrors())
	}
}

// A full store makes room from expired keys in the writer's own shard too
// (whose lock the writer holds), and rewriting an expired key of a full
// store counts it once.
func TestSweepCoversWritersShard(t *testing.T) {
	s := newStore(t, 2, 1000)
	now := time.Now()
	s.now = func() time.Time { return now }
	// Two keys in one shard: the expired one and the new one.
	old, fresh := "k0", ""
	for i := 1; fresh == ""; i++ {
		if k := "k" + strings.Repeat("x", i); s.shard(k) == s.shard(old) {
			fresh = k
		}
	}
	if err := s.Set(old, lua.LString("v"), time.Second); err != nil {
		t.Fatal(err)
	}
	if err := s.Set("other", lua.LString("v"), 0); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Second)
	if err := s.Set(fresh, lua.LString("v"), 0); err != nil {
		t.Fatalf("new key beside the only expired one, in its shard: %v", err)
	}
	if s.Len() != 2 || s.Bytes() != int(size(fresh, lua.LString("v"))+size("other", lua.LString("v"))) {
		t.Errorf("len %d, bytes %d; want the 2 live keys and their bytes", s.Len(), s.Bytes())
	}

	// Byte-bound: rewriting expired "a" larger needs expired "b" swept,
	// while "a" itself stays for the write to replace.
	s = newStore(t, 0, 100)
	s.now = func() time.Time { return now }
	for _, k := range []string{"a", "b"} {
		if err := s.Set(k, lua.LString(strings.Repeat("v", 30)), time.Second); err != nil {
			t.Fatal(err)
		}
	}
	now = now.Add(2 * time.Second)
	big := lua.LString(strings.Repeat("w", 60))
	if err := s.Set("a", big, 0); err != nil {
		t.Fatalf("rewriting an expired key: %v", err)
	}
	if s.Len() != 1 || s.Bytes() != int(size("a", big)) {
		t.Errorf("len %d, bytes %d; want 1 key of %d bytes", s.Len(), s.Bytes(), size("a", big))
	}
}

func TestConcurrentIncr(t *testing.T) {
	s := newStore(t, 0, 0)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				if _, err := s.Incr("n", 1, 0); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if got := s.Get("n"); got != lua.LNumber(8000) {
		t.Errorf("n = %v, want 8000", got)
	}
	if s.Len() != 1 {
		t.Errorf("len = %d, want 1", s.Len())
	}
}
