package topic

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// key identifies a subscription the way the Trie does.
func key(s *Subscription) string { return s.ClientID + "\x00" + s.Group + "\x00" + s.Filter }

// subKeys returns the sorted keys of the non-shared matches.
func subKeys(m *Matches) []string {
	out := make([]string, 0, len(m.Subs))
	for _, s := range m.Subs {
		out = append(out, key(s))
	}
	slices.Sort(out)
	return out
}

// groupKeys returns the sorted (group, filter) keys of the shared matches.
func groupKeys(m *Matches) []string {
	out := make([]string, 0, len(m.Groups))
	for _, g := range m.Groups {
		out = append(out, g.Name()+"\x00"+g.Filter())
	}
	slices.Sort(out)
	return out
}

// nodeWalk counts the nodes reachable below the root.
func nodeWalk(n *node) int {
	c := 0
	visit := func(k *node) { c += 1 + nodeWalk(k) }
	if k := n.plus.Load(); k != nil {
		visit(k)
	}
	if k := n.hash.Load(); k != nil {
		visit(k)
	}
	if t := n.kids.Load(); t != nil {
		t.each(func(_ string, k *node) { visit(k) })
	}
	return c
}

func (t *Trie) nodeCount(tb testing.TB) int {
	tb.Helper()
	t.mu.Lock()
	defer t.mu.Unlock()
	if w := nodeWalk(&t.root); w != t.nodes {
		tb.Fatalf("reachable nodes = %d, counted nodes = %d", w, t.nodes)
	}
	return t.nodes
}

func TestTrieMatchTable(t *testing.T) {
	var m Matches
	for _, c := range matchCases {
		tr := NewTrie()
		tr.Subscribe(Subscription{ClientID: "c", Filter: c.filter, QoS: 1})
		tr.Subscribe(Subscription{ClientID: "c", Group: "g", Filter: c.filter})
		tr.Match(c.name, &m)
		if got := len(m.Subs) == 1; got != c.want || len(m.Subs) > 1 {
			t.Errorf("filter %q name %q: %d subscriptions matched, want match=%v", c.filter, c.name, len(m.Subs), c.want)
		}
		if got := len(m.Groups) == 1; got != c.want || len(m.Groups) > 1 {
			t.Errorf("filter %q name %q: %d groups matched, want match=%v", c.filter, c.name, len(m.Groups), c.want)
		}
	}
}

func TestTrieAllFiltersAtOnce(t *testing.T) {
	// Every filter of the table in one trie: each name must match exactly the
	// filters the table (through Match) says, no more.
	tr := NewTrie()
	filters := map[string]bool{}
	for i, c := range matchCases {
		if !filters[c.filter] {
			filters[c.filter] = true
			tr.Subscribe(Subscription{ClientID: fmt.Sprint("c", i), Filter: c.filter})
		}
	}
	var m Matches
	for _, c := range matchCases {
		tr.Match(c.name, &m)
		var got, want []string
		for _, s := range m.Subs {
			got = append(got, s.Filter)
		}
		for f := range filters {
			if Match(f, c.name) {
				want = append(want, f)
			}
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("name %q: matched %q, want %q", c.name, got, want)
		}
	}
}

func TestTrieSubscribeReplace(t *testing.T) {
	tr := NewTrie()
	if tr.Subscribe(Subscription{ClientID: "c", Filter: "a/+", QoS: 0, ID: 1}) {
		t.Fatal("first subscribe reported replaced")
	}
	var m Matches
	tr.Match("a/b", &m)
	old := m.Subs[0]
	// [MQTT-3.8.4-3] an identical filter replaces the subscription.
	if !tr.Subscribe(Subscription{ClientID: "c", Filter: "a/+", QoS: 2, NoLocal: true, RetainHandling: 2, ID: 7}) {
		t.Fatal("second subscribe not reported replaced")
	}
	if got := tr.Count(); got != 1 {
		t.Fatalf("Count = %d, want 1", got)
	}
	tr.Match("a/b", &m)
	if len(m.Subs) != 1 {
		t.Fatalf("matched %d, want 1", len(m.Subs))
	}
	want := Subscription{ClientID: "c", Filter: "a/+", QoS: 2, NoLocal: true, RetainHandling: 2, ID: 7}
	if got := *m.Subs[0]; got != want {
		t.Fatalf("after replace got %+v, want %+v", got, want)
	}
	// The pointer handed out before is immutable.
	if old.QoS != 0 || old.ID != 1 {
		t.Fatalf("old subscription mutated: %+v", *old)
	}
	// A different filter, group or client is a different key.
	for _, s := range []Subscription{
		{ClientID: "c", Filter: "a/#"},
		{ClientID: "c", Filter: "a/b"},
		{ClientID: "c", Group: "g", Filter: "a/+"},
		{ClientID: "d", Filter: "a/+"},
	} {
		if tr.Subscribe(s) {
			t.Errorf("Subscribe(%+v) reported replaced", s)
		}
	}
	if got := tr.Count(); got != 5 {
		t.Fatalf("Count = %d, want 5", got)
	}
	tr.Match("a/b", &m)
	// Client c appears once per matching filter.
	if got := len(m.Subs); got != 4 {
		t.Fatalf("matched %d subscriptions, want 4: %q", got, subKeys(&m))
	}
	// Replacing a group member.
	if !tr.Subscribe(Subscription{ClientID: "c", Group: "g", Filter: "a/+", QoS: 1}) {
		t.Fatal("group re-subscribe not reported replaced")
	}
	tr.Match("a/b", &m)
	if len(m.Groups) != 1 || m.Groups[0].Len() != 1 || m.Groups[0].Pick(nil).QoS != 1 {
		t.Fatalf("group after replace: %d groups", len(m.Groups))
	}
}

func TestTrieMatchesReuse(t *testing.T) {
	tr := NewTrie()
	tr.Subscribe(Subscription{ClientID: "a", Filter: "x/#"})
	tr.Subscribe(Subscription{ClientID: "b", Filter: "x/y"})
	var m Matches
	tr.Match("x/y", &m)
	if len(m.Subs) != 2 {
		t.Fatalf("matched %d, want 2", len(m.Subs))
	}
	tr.Match("x/z", &m)
	if got := subKeys(&m); len(got) != 1 || got[0] != "a\x00\x00x/#" {
		t.Fatalf("second match = %q, want only a's x/#", got)
	}
	tr.Match("nothing", &m)
	if len(m.Subs) != 0 || len(m.Groups) != 0 {
		t.Fatalf("match on unrelated name returned %d subs, %d groups", len(m.Subs), len(m.Groups))
	}
}

func TestTrieUnsubscribe(t *testing.T) {
	tr := NewTrie()
	tr.Subscribe(Subscription{ClientID: "c", Filter: "a/b"})
	tr.Subscribe(Subscription{ClientID: "c", Filter: "a/#"})
	tr.Subscribe(Subscription{ClientID: "c", Group: "g", Filter: "a/b"})
	cases := []struct {
		client, group, filter string
		want                  bool
	}{
		{"c", "", "a/+", false}, // [MQTT-3.10.4-1] compared character by character, not matched
		{"c", "", "a", false},
		{"c", "", "a/b/c", false},
		{"d", "", "a/b", false},
		{"c", "h", "a/b", false},
		{"c", "g", "a/#", false},
		{"c", "", "A/b", false},
		{"c", "", "a/b", true},
		{"c", "", "a/b", false}, // already gone
		{"c", "g", "a/b", true},
		{"c", "", "a/#", true},
	}
	for _, c := range cases {
		if got := tr.Unsubscribe(c.client, c.group, c.filter); got != c.want {
			t.Errorf("Unsubscribe(%q, %q, %q) = %v, want %v", c.client, c.group, c.filter, got, c.want)
		}
	}
	if got := tr.Count(); got != 0 {
		t.Errorf("Count = %d, want 0", got)
	}
	if got := tr.nodeCount(t); got != 0 {
		t.Errorf("nodes = %d, want 0", got)
	}
}

func TestTrieUnsubscribePrunesNodes(t *testing.T) {
	tr := NewTrie()
	filters := []string{
		"a", "a/b", "a/b/c", "a/+/c", "a/#", "+", "#", "/", "//", "+/+/#", "$SYS/#",
		"a/#/b", // invalid, but must not leak either
	}
	for i := range 2000 {
		filters = append(filters, fmt.Sprintf("devices/%d/+/temp", i), fmt.Sprintf("x/%d", i))
	}
	for cycle := range 3 {
		for i, f := range filters {
			tr.Subscribe(Subscription{ClientID: fmt.Sprint("c", i%7), Filter: f})
			tr.Subscribe(Subscription{ClientID: fmt.Sprint("s", i%5), Group: "g", Filter: f})
			tr.Subscribe(Subscription{ClientID: fmt.Sprint("s", i%3), Group: "h", Filter: f})
		}
		if tr.nodeCount(t) == 0 {
			t.Fatal("no nodes after subscribing")
		}
		// Unsubscribe in a different order from the one subscribed.
		r := rand.New(rand.NewPCG(uint64(cycle), 1))
		order := r.Perm(len(filters))
		for _, i := range order {
			f := filters[i]
			for _, u := range [][2]string{{fmt.Sprint("c", i%7), ""}, {fmt.Sprint("s", i%5), "g"}, {fmt.Sprint("s", i%3), "h"}} {
				if !tr.Unsubscribe(u[0], u[1], f) {
					t.Fatalf("cycle %d: Unsubscribe(%q, %q, %q) = false", cycle, u[0], u[1], f)
				}
			}
		}
		if got := tr.Count(); got != 0 {
			t.Fatalf("cycle %d: Count = %d, want 0", cycle, got)
		}
		if got := tr.nodeCount(t); got != 0 {
			t.Fatalf("cycle %d: nodes = %d, want 0", cycle, got)
		}
		if tr.root.kids.Load() != nil || tr.root.plus.Load() != nil || tr.root.hash.Load() != nil {
			t.Fatalf("cycle %d: root still has children", cycle)
		}
	}
}

func TestSharedGroupRotation(t *testing.T) {
	tr := NewTrie()
	for _, c := range []string{"A", "B", "C"} {
		tr.Subscribe(Subscription{ClientID: c, Group: "g", Filter: "jobs/+"})
	}
	var m Matches
	tr.Match("jobs/1", &m)
	if len(m.Subs) != 0 || len(m.Groups) != 1 {
		t.Fatalf("matched %d subs, %d groups, want 0, 1", len(m.Subs), len(m.Groups))
	}
	g := m.Groups[0]
	if g.Name() != "g" || g.Filter() != "jobs/+" || g.Len() != 3 {
		t.Fatalf("group = (%q, %q, %d), want (g, jobs/+, 3)", g.Name(), g.Filter(), g.Len())
	}
	pick := func(ok func(*Subscription) bool) string {
		if s := g.Pick(ok); s != nil {
			return s.ClientID
		}
		return "<nil>"
	}
	// Three members get messages in turn.
	var got []string
	for range 6 {
		got = append(got, pick(nil))
	}
	want := []string{got[0], got[1], got[2], got[0], got[1], got[2]}
	if !slices.Equal(got, want) || got[0] == got[1] || got[1] == got[2] || got[0] == got[2] {
		t.Fatalf("rotation = %q, want each of A, B, C in turn", got)
	}
	// A member for which ok is false is skipped and does not swallow the
	// message; the others keep alternating.
	notB := func(s *Subscription) bool { return s.ClientID != "B" }
	counts := map[string]int{}
	prev := ""
	for range 10 {
		c := pick(notB)
		if c == "B" || c == "<nil>" {
			t.Fatalf("picked %q with B offline", c)
		}
		if c == prev {
			t.Fatalf("picked %q twice in a row with two members online", c)
		}
		prev = c
		counts[c]++
	}
	if counts["A"] != 5 || counts["C"] != 5 {
		t.Fatalf("with B offline got %v, want A and C 5 each", counts)
	}
	// Nobody online: nil, and every member was asked exactly once.
	asked := map[string]int{}
	if s := g.Pick(func(s *Subscription) bool { asked[s.ClientID]++; return false }); s != nil {
		t.Fatalf("Pick with none online = %q, want nil", s.ClientID)
	}
	if len(asked) != 3 || asked["A"] != 1 || asked["B"] != 1 || asked["C"] != 1 {
		t.Fatalf("asked %v, want each member once", asked)
	}
}

func TestSharedGroupsPerFilter(t *testing.T) {
	tr := NewTrie()
	// The same ShareName on two filters makes two groups.
	tr.Subscribe(Subscription{ClientID: "A", Group: "g", Filter: "a/#"})
	tr.Subscribe(Subscription{ClientID: "B", Group: "g", Filter: "a/+"})
	tr.Subscribe(Subscription{ClientID: "C", Group: "h", Filter: "a/+"})
	tr.Subscribe(Subscription{ClientID: "D", Filter: "a/+"})
	var m Matches
	tr.Match("a/b", &m)
	wantGroups := []string{"g\x00a/#", "g\x00a/+", "h\x00a/+"}
	if got := groupKeys(&m); !slices.Equal(got, wantGroups) {
		t.Fatalf("groups = %q, want %q", got, wantGroups)
	}
	if got := subKeys(&m); len(got) != 1 || !strings.HasPrefix(got[0], "D\x00") {
		t.Fatalf("subs = %q, want only D", got)
	}
	for _, g := range m.Groups {
		if g.Len() != 1 {
			t.Fatalf("group %q on %q has %d members, want 1", g.Name(), g.Filter(), g.Len())
		}
	}
	// A member leaving leaves the group; the last one leaving removes it.
	tr.Subscribe(Subscription{ClientID: "E", Group: "g", Filter: "a/+"})
	tr.Match("a/b", &m)
	var ga *Group
	for _, g := range m.Groups {
		if g.Name() == "g" && g.Filter() == "a/+" {
			ga = g
		}
	}
	if ga == nil || ga.Len() != 2 {
		t.Fatal("group g on a/+ should have 2 members")
	}
	tr.Unsubscribe("B", "g", "a/+")
	if ga.Len() != 1 || ga.Pick(nil).ClientID != "E" {
		t.Fatalf("after B left: %d members", ga.Len())
	}
	tr.Unsubscribe("E", "g", "a/+")
	if ga.Len() != 0 || ga.Pick(nil) != nil {
		t.Fatal("empty group still picks")
	}
	tr.Match("a/b", &m)
	if got := groupKeys(&m); !slices.Equal(got, []string{"g\x00a/#", "h\x00a/+"}) {
		t.Fatalf("groups after last member left = %q", got)
	}
	// Re-joining creates a fresh group.
	tr.Subscribe(Subscription{ClientID: "B", Group: "g", Filter: "a/+"})
	tr.Match("a/b", &m)
	if len(m.Groups) != 3 {
		t.Fatalf("groups after rejoin = %q", groupKeys(&m))
	}
}

func TestSharedGroupConcurrentPick(t *testing.T) {
	tr := NewTrie()
	const members = 4
	for i := range members {
		tr.Subscribe(Subscription{ClientID: fmt.Sprint("m", i), Group: "g", Filter: "q"})
	}
	var m Matches
	tr.Match("q", &m)
	g := m.Groups[0]
	var counts [members]atomic.Int64
	var wg sync.WaitGroup
	const per = 2000
	for range 4 {
		wg.Go(func() {
			for range per {
				s := g.Pick(nil)
				counts[s.ClientID[1]-'0'].Add(1)
			}
		})
	}
	wg.Wait()
	for i := range counts {
		// Round robin: everyone gets exactly its share of 4*per picks.
		if got := counts[i].Load(); got != per {
			t.Errorf("member %d picked %d times, want %d", i, got, per)
		}
	}
}

// randFilter and randName draw from a small alphabet so that collisions,
// empty levels, '$' levels and wildcards are all frequent.
var levels = []string{"a", "b", "", "$s", "A"}

func randName(r *rand.Rand) string {
	n := 1 + r.IntN(4)
	parts := make([]string, n)
	for i := range parts {
		parts[i] = levels[r.IntN(len(levels))]
	}
	if s := strings.Join(parts, "/"); s != "" {
		return s
	}
	return "a" // names are never empty [MQTT-4.7.3-1]
}

func randFilter(r *rand.Rand) string {
	n := 1 + r.IntN(4)
	parts := make([]string, n)
	for i := range parts {
		switch x := r.IntN(10); {
		case x < 3:
			parts[i] = "+"
		case x < 4 && i == n-1:
			parts[i] = "#"
		default:
			parts[i] = levels[r.IntN(len(levels))]
		}
	}
	if s := strings.Join(parts, "/"); s != "" {
		return s
	}
	return "+" // filters are never empty [MQTT-4.7.3-1]
}

func TestTrieRandomAgainstBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(42, 7))
	tr := NewTrie()
	live := map[string]Subscription{} // key -> subscription
	var m Matches
	for step := range 20000 {
		s := Subscription{
			ClientID: fmt.Sprint("c", r.IntN(6)),
			Filter:   randFilter(r),
			QoS:      byte(r.IntN(3)),
		}
		if r.IntN(4) == 0 {
			s.Group = fmt.Sprint("g", r.IntN(2))
		}
		k := key(&s)
		if r.IntN(3) == 0 {
			_, had := live[k]
			if got := tr.Unsubscribe(s.ClientID, s.Group, s.Filter); got != had {
				t.Fatalf("step %d: Unsubscribe(%q) = %v, want %v", step, k, got, had)
			}
			delete(live, k)
		} else {
			_, had := live[k]
			if got := tr.Subscribe(s); got != had {
				t.Fatalf("step %d: Subscribe(%q) = %v, want %v", step, k, got, had)
			}
			live[k] = s
		}
		if tr.Count() != len(live) {
			t.Fatalf("step %d: Count = %d, want %d", step, tr.Count(), len(live))
		}
		if step%10 != 0 {
			continue
		}
		name := randName(r)
		tr.Match(name, &m)
		var wantSubs []string
		wantGroups := map[string][]string{} // group\0filter -> member client ids
		for k, s := range live {
			if !Match(s.Filter, name) {
				continue
			}
			if s.Group == "" {
				wantSubs = append(wantSubs, k)
			} else {
				gk := s.Group + "\x00" + s.Filter
				wantGroups[gk] = append(wantGroups[gk], s.ClientID)
			}
		}
		slices.Sort(wantSubs)
		if got := subKeys(&m); !slices.Equal(got, wantSubs) {
			t.Fatalf("step %d: Match(%q) subs = %q, want %q", step, name, got, wantSubs)
		}
		for _, s := range m.Subs {
			if want := live[key(s)]; *s != want {
				t.Fatalf("step %d: stale subscription %+v, want %+v", step, *s, want)
			}
		}
		if len(m.Groups) != len(wantGroups) {
			t.Fatalf("step %d: Match(%q) groups = %q, want %d", step, name, groupKeys(&m), len(wantGroups))
		}
		for _, g := range m.Groups {
			want := wantGroups[g.Name()+"\x00"+g.Filter()]
			var got []string
			v := g.members.load()
			for i := range v.length() {
				got = append(got, v.get(i).ClientID)
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("step %d: group %q/%q members = %q, want %q", step, g.Name(), g.Filter(), got, want)
			}
		}
	}
	// Unsubscribe everything: nothing may be left behind.
	for _, s := range live {
		if !tr.Unsubscribe(s.ClientID, s.Group, s.Filter) {
			t.Fatalf("final Unsubscribe(%q) = false", key(&s))
		}
	}
	if tr.Count() != 0 || tr.nodeCount(t) != 0 {
		t.Fatalf("after removing all: Count = %d, nodes = %d", tr.Count(), tr.nodeCount(t))
	}
}

func TestTrieConcurrent(t *testing.T) {
	tr := NewTrie()
	// Stable subscriptions every reader must always see.
	tr.Subscribe(Subscription{ClientID: "stable", Filter: "s/#"})
	tr.Subscribe(Subscription{ClientID: "stable", Filter: "s/+/x"})
	tr.Subscribe(Subscription{ClientID: "stable", Group: "g", Filter: "s/#"})
	// Writers churn until every reader has done its share of matches.
	var stop atomic.Bool
	var wg, readersWG sync.WaitGroup
	var failed atomic.Value
	fail := func(msg string) { failed.CompareAndSwap(nil, msg); stop.Store(true) }
	const writers, readers = 2, 3
	for w := range writers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 99))
			for i := 0; !stop.Load(); i++ {
				c := fmt.Sprint("w", w, "-", r.IntN(50))
				f := fmt.Sprintf("s/%d/x", r.IntN(200)) // hashed children at s/
				switch r.IntN(6) {
				case 0:
					f = "s/+/x" // fan-out on one node
				case 1:
					f = "s/#"
				}
				g := ""
				if r.IntN(4) == 0 {
					g = "g"
				}
				if r.IntN(2) == 0 {
					tr.Subscribe(Subscription{ClientID: c, Group: g, Filter: f, QoS: byte(i % 3)})
				} else {
					tr.Unsubscribe(c, g, f)
				}
			}
		})
	}
	for rd := range readers {
		readersWG.Go(func() {
			var m Matches
			seen := map[string]bool{}
			for i := 0; i < 5000 && !stop.Load(); i++ {
				tr.Match(fmt.Sprintf("s/%d/x", (i+rd)%200), &m)
				clear(seen)
				stable := 0
				for _, s := range m.Subs {
					k := key(s)
					if seen[k] {
						fail("subscription reported twice: " + k)
						return
					}
					seen[k] = true
					if s.ClientID == "stable" {
						stable++
					}
				}
				if stable != 2 {
					fail(fmt.Sprintf("stable subscriptions matched %d times, want 2", stable))
					return
				}
				found := false
				for _, g := range m.Groups {
					if g.Name() == "g" && g.Filter() == "s/#" {
						found = g.Pick(func(s *Subscription) bool { return s.ClientID == "stable" }) != nil
					}
				}
				if !found {
					fail("stable group member not found")
					return
				}
			}
		})
	}
	readersWG.Wait()
	stop.Store(true)
	wg.Wait()
	if msg := failed.Load(); msg != nil {
		t.Fatal(msg)
	}
	// Quiesced: the trie must agree with a brute-force view of itself.
	var m Matches
	tr.Match("s/7/x", &m)
	for _, s := range m.Subs {
		if !Match(s.Filter, "s/7/x") {
			t.Fatalf("matched %q for s/7/x", s.Filter)
		}
	}
}

func TestTrieLargeFanOutAndChildren(t *testing.T) {
	n := 100_000
	if testing.Short() {
		n = 10_000
	}
	tr := NewTrie()
	start := time.Now()
	for i := range n {
		tr.Subscribe(Subscription{ClientID: fmt.Sprint("c", i), Filter: "fan/out"}) // one node, n subscribers
	}
	fanOut := time.Since(start)
	start = time.Now()
	for i := range n {
		tr.Subscribe(Subscription{ClientID: "d", Filter: fmt.Sprintf("devices/%d/#", i)}) // one node, n children
	}
	children := time.Since(start)
	t.Logf("built %d subscribers on one filter in %v, %d children of one node in %v", n, fanOut, n, children)
	if tr.Count() != 2*n {
		t.Fatalf("Count = %d, want %d", tr.Count(), 2*n)
	}
	if !raceEnabled && !testing.Short() && (fanOut > time.Second || children > time.Second) {
		t.Errorf("building took %v and %v, want well under a second each", fanOut, children)
	}
	var m Matches
	tr.Match("fan/out", &m)
	if len(m.Subs) != n {
		t.Fatalf("fan-out matched %d, want %d", len(m.Subs), n)
	}
	tr.Match(fmt.Sprintf("devices/%d/t", n/2), &m)
	if len(m.Subs) != 1 || m.Subs[0].Filter != fmt.Sprintf("devices/%d/#", n/2) {
		t.Fatalf("device match = %q", subKeys(&m))
	}
	// Tear down half of the fan-out from the middle (exercises swap-remove).
	for i := n / 4; i < 3*n/4; i++ {
		if !tr.Unsubscribe(fmt.Sprint("c", i), "", "fan/out") {
			t.Fatalf("Unsubscribe c%d failed", i)
		}
	}
	tr.Match("fan/out", &m)
	if len(m.Subs) != n-n/2 {
		t.Fatalf("after removal fan-out matched %d, want %d", len(m.Subs), n-n/2)
	}
	seen := make(map[string]bool, len(m.Subs))
	for _, s := range m.Subs {
		var i int
		fmt.Sscanf(s.ClientID, "c%d", &i)
		if seen[s.ClientID] || (i >= n/4 && i < 3*n/4) {
			t.Fatalf("unexpected or duplicate member %q", s.ClientID)
		}
		seen[s.ClientID] = true
	}
}
