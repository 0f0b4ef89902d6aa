package topic

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
)

func retainedMatch[T any](r *Retained[T], filter string) []string {
	var got []string
	r.Match(filter, func(name string, _ T) bool {
		got = append(got, name)
		return true
	})
	slices.Sort(got)
	return got
}

func TestRetainedSetGetDelete(t *testing.T) {
	r := NewRetained[string]()
	if _, ok := r.Get("a"); ok {
		t.Fatal("Get on empty index found a value")
	}
	r.Set("a/b", "1")
	r.Set("a", "2")
	r.Set("a/b", "3") // [MQTT-3.3.1-5] replaces
	if got := r.Len(); got != 2 {
		t.Fatalf("Len = %d, want 2", got)
	}
	for _, c := range []struct {
		name string
		want string
		ok   bool
	}{{"a/b", "3", true}, {"a", "2", true}, {"a/", "", false}, {"A/b", "", false}, {"a/b/c", "", false}, {"b", "", false}} {
		if v, ok := r.Get(c.name); v != c.want || ok != c.ok {
			t.Errorf("Get(%q) = (%q, %v), want (%q, %v)", c.name, v, ok, c.want, c.ok)
		}
	}
	if r.Delete("a/b/c") || r.Delete("x") {
		t.Fatal("Delete of an absent name reported true")
	}
	if !r.Delete("a") {
		t.Fatal("Delete(a) = false")
	}
	if r.Delete("a") {
		t.Fatal("second Delete(a) = true")
	}
	if v, ok := r.Get("a/b"); !ok || v != "3" {
		t.Fatalf("Delete(a) disturbed a/b: (%q, %v)", v, ok)
	}
	if !r.Delete("a/b") || r.Len() != 0 {
		t.Fatalf("after deleting all, Len = %d", r.Len())
	}
	if r.root.kids != nil {
		t.Fatal("empty index keeps nodes")
	}
}

func TestRetainedMatchTable(t *testing.T) {
	// The shared match table, one retained name at a time.
	for _, c := range matchCases {
		r := NewRetained[int]()
		r.Set(c.name, 1)
		got := len(retainedMatch(r, c.filter)) == 1
		if got != c.want {
			t.Errorf("Retained with %q, Match(%q) = %v, want %v", c.name, c.filter, got, c.want)
		}
	}
}

func TestRetainedMatch(t *testing.T) {
	r := NewRetained[int]()
	names := []string{
		"a", "a/b", "a/b/c", "a/c", "a/", "a//b", "/", "/a", "b", "A/b",
		"$SYS/broker/uptime", "$SYS", "$x/a", "sport/tennis/player1", "sport/tennis/player1/ranking",
	}
	for i, n := range names {
		r.Set(n, i)
	}
	cases := []struct {
		filter string
		want   []string
	}{
		{"#", []string{"/", "/a", "A/b", "a", "a/", "a//b", "a/b", "a/b/c", "a/c", "b", "sport/tennis/player1", "sport/tennis/player1/ranking"}},
		{"+", []string{"a", "b"}},
		{"+/+", []string{"/", "/a", "A/b", "a/", "a/b", "a/c"}},
		{"a/#", []string{"a", "a/", "a//b", "a/b", "a/b/c", "a/c"}},
		{"a/+", []string{"a/", "a/b", "a/c"}},
		{"a/+/c", []string{"a/b/c"}},
		{"a/+/b", []string{"a//b"}},
		{"+/b", []string{"A/b", "a/b"}},
		{"/#", []string{"/", "/a"}},
		{"a/b", []string{"a/b"}},
		{"$SYS/#", []string{"$SYS", "$SYS/broker/uptime"}},
		{"$SYS/+/uptime", []string{"$SYS/broker/uptime"}},
		{"+/broker/uptime", nil},
		{"+/#", []string{"/", "/a", "A/b", "a", "a/", "a//b", "a/b", "a/b/c", "a/c", "b", "sport/tennis/player1", "sport/tennis/player1/ranking"}},
		{"sport/tennis/player1/#", []string{"sport/tennis/player1", "sport/tennis/player1/ranking"}},
		{"nothing/#", nil},
		{"a/#/b", nil},
		{"", nil},
	}
	for _, c := range cases {
		if got := retainedMatch(r, c.filter); !slices.Equal(got, c.want) {
			t.Errorf("Match(%q) = %q, want %q", c.filter, got, c.want)
		}
	}
	// Values come with their names.
	r.Match("sport/#", func(name string, v int) bool {
		if names[v] != name {
			t.Errorf("Match gave %q with the value of %q", name, names[v])
		}
		return true
	})
	// Stop early.
	calls := 0
	r.Match("#", func(string, int) bool { calls++; return calls < 3 })
	if calls != 3 {
		t.Errorf("Match called fn %d times after it returned false, want 3", calls)
	}
	calls = 0
	r.Range(func(string, int) bool { calls++; return false })
	if calls != 1 {
		t.Errorf("Range called fn %d times, want 1", calls)
	}
	var all []string
	r.Range(func(name string, _ int) bool { all = append(all, name); return true })
	slices.Sort(all)
	want := slices.Clone(names)
	slices.Sort(want)
	if !slices.Equal(all, want) {
		t.Errorf("Range = %q, want %q", all, want)
	}
}

func TestRetainedCallbackMayModify(t *testing.T) {
	r := NewRetained[int]()
	for i := range 10 {
		r.Set(fmt.Sprint("t/", i), i)
	}
	// fn runs without the lock, so it may write to the index.
	r.Match("t/+", func(name string, _ int) bool {
		r.Delete(name)
		r.Set("u/"+name, 1)
		return true
	})
	if got := len(retainedMatch(r, "t/#")); got != 0 {
		t.Fatalf("t/# has %d names left, want 0", got)
	}
	if got := len(retainedMatch(r, "u/#")); got != 10 {
		t.Fatalf("u/# has %d names, want 10", got)
	}
}

func TestRetainedRandomAgainstBruteForce(t *testing.T) {
	rnd := rand.New(rand.NewPCG(5, 6))
	r := NewRetained[int]()
	live := map[string]int{}
	for step := range 5000 {
		name := randName(rnd)
		if rnd.IntN(3) == 0 {
			_, had := live[name]
			if got := r.Delete(name); got != had {
				t.Fatalf("step %d: Delete(%q) = %v, want %v", step, name, got, had)
			}
			delete(live, name)
		} else {
			r.Set(name, step)
			live[name] = step
		}
		if step%10 != 0 {
			continue
		}
		filter := randFilter(rnd)
		var want []string
		for n := range live {
			if Match(filter, n) {
				want = append(want, n)
			}
		}
		slices.Sort(want)
		if got := retainedMatch(r, filter); !slices.Equal(got, want) {
			t.Fatalf("step %d: Match(%q) = %q, want %q", step, filter, got, want)
		}
		if r.Len() != len(live) {
			t.Fatalf("step %d: Len = %d, want %d", step, r.Len(), len(live))
		}
	}
	for n := range live {
		r.Delete(n)
	}
	if r.Len() != 0 || r.root.kids != nil {
		t.Fatalf("after deleting all: Len %d, nodes left %v", r.Len(), r.root.kids != nil)
	}
}

func TestRetainedConcurrent(t *testing.T) {
	r := NewRetained[int]()
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			for i := range 2000 {
				n := fmt.Sprintf("w%d/%d", w, i%50)
				if i%3 == 0 {
					r.Delete(n)
				} else {
					r.Set(n, i)
				}
			}
		})
	}
	for range 2 {
		wg.Go(func() {
			for range 500 {
				r.Match("+/#", func(name string, v int) bool { return true })
				r.Get("w0/1")
				r.Len()
			}
		})
	}
	wg.Wait()
}
