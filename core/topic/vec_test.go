package topic

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

func vecSlice(v *subVec) []*Subscription {
	var out []*Subscription
	out = v.appendTo(out)
	if len(out) != v.length() {
		panic(fmt.Sprintf("appendTo gave %d elements, length %d", len(out), v.length()))
	}
	for i := range out {
		if v.get(i) != out[i] {
			panic(fmt.Sprintf("get(%d) disagrees with appendTo", i))
		}
	}
	return out
}

// checkShape verifies the invariants the index arithmetic relies on: every
// subtree but the rightmost is full, and the root is not a needless level.
func checkShape(t *testing.T, v *subVec) {
	t.Helper()
	if v == nil {
		return
	}
	if v.shift > 0 && len(v.root.kids) < 2 {
		t.Fatalf("n=%d: root with %d kids at shift %d", v.n, len(v.root.kids), v.shift)
	}
	if v.n > 1<<(v.shift+vecBits) || (v.shift > 0 && v.n <= 1<<v.shift) {
		t.Fatalf("n=%d does not fit shift %d", v.n, v.shift)
	}
	var walk func(nd *vnode, shift uint, rightmost bool) int
	walk = func(nd *vnode, shift uint, rightmost bool) int {
		if shift == 0 {
			if len(nd.subs) == 0 || (!rightmost && len(nd.subs) != vecWidth) {
				t.Fatalf("n=%d: leaf of %d (rightmost %v)", v.n, len(nd.subs), rightmost)
			}
			return len(nd.subs)
		}
		if len(nd.kids) == 0 || (!rightmost && len(nd.kids) != vecWidth) {
			t.Fatalf("n=%d: interior of %d (rightmost %v)", v.n, len(nd.kids), rightmost)
		}
		c := 0
		for i, k := range nd.kids {
			c += walk(k, shift-vecBits, rightmost && i == len(nd.kids)-1)
		}
		return c
	}
	if c := walk(&v.root, v.shift, true); c != v.n {
		t.Fatalf("tree holds %d, n=%d", c, v.n)
	}
}

func TestSubVecRandomAgainstSlice(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	subs := make([]*Subscription, 3000)
	for i := range subs {
		subs[i] = &Subscription{ClientID: fmt.Sprint(i)}
	}
	var v *subVec
	var model []*Subscription
	type snap struct {
		v     *subVec
		model []*Subscription
	}
	var snaps []snap
	maxLen := 0
	for step := range 30000 {
		// Drift up to ~2000 elements (three levels) and back down to empty.
		pPush := 6 // of 10; the rest split between set and pop
		if step >= 15000 {
			pPush = 1
		}
		switch x := r.IntN(10); {
		case x < pPush || len(model) == 0:
			s := subs[r.IntN(len(subs))]
			v = v.push(s)
			model = append(model, s)
		case x < pPush+(10-pPush)/2:
			i := r.IntN(len(model))
			s := subs[r.IntN(len(subs))]
			v = v.set(i, s)
			model[i] = s
		default:
			v = v.pop()
			model = model[:len(model)-1]
		}
		if v.length() != len(model) {
			t.Fatalf("step %d: length %d, want %d", step, v.length(), len(model))
		}
		if step%97 == 0 {
			checkShape(t, v)
			if got := vecSlice(v); !slices.Equal(got, model) {
				t.Fatalf("step %d: contents differ", step)
			}
			snaps = append(snaps, snap{v, slices.Clone(model)})
		}
		maxLen = max(maxLen, len(model))
	}
	if maxLen <= vecWidth*vecWidth || len(model) > 100 {
		t.Fatalf("drifted to %d and back to %d; want three levels and back near empty", maxLen, len(model))
	}
	// Every snapshot taken along the way is unchanged: updates never write
	// into a published vector.
	for i, s := range snaps {
		if got := vecSlice(s.v); !slices.Equal(got, s.model) {
			t.Fatalf("snapshot %d changed", i)
		}
	}
}

func TestSubVecDeep(t *testing.T) {
	// Past 32³ elements the tree has four levels; fill and drain it.
	const n = 40000
	var v *subVec
	subs := make([]*Subscription, n)
	for i := range subs {
		subs[i] = &Subscription{ID: uint32(i)}
		v = v.push(subs[i])
	}
	checkShape(t, v)
	if v.shift != 3*vecBits {
		t.Fatalf("shift = %d, want %d", v.shift, 3*vecBits)
	}
	for i := range n {
		if v.get(i) != subs[i] {
			t.Fatalf("get(%d) wrong", i)
		}
	}
	for i := n - 1; i >= 0; i-- {
		v = v.pop()
		if v.length() != i {
			t.Fatalf("length %d, want %d", v.length(), i)
		}
		if i%1000 == 0 || i < 40 {
			checkShape(t, v)
		}
	}
	if v != nil {
		t.Fatal("drained vector not nil")
	}
}

func TestSubSetIndex(t *testing.T) {
	// Cross the index threshold up and down; find must stay right on both sides.
	var s subSet
	r := rand.New(rand.NewPCG(3, 4))
	live := map[string]bool{}
	for step := range 5000 {
		c := fmt.Sprint("c", r.IntN(40))
		if r.IntN(2) == 0 {
			if got := s.put(&Subscription{ClientID: c}); got != live[c] {
				t.Fatalf("step %d: put(%s) replaced=%v, want %v", step, c, got, live[c])
			}
			live[c] = true
		} else {
			if got := s.remove(c); got != live[c] {
				t.Fatalf("step %d: remove(%s)=%v, want %v", step, c, got, live[c])
			}
			delete(live, c)
		}
		v := s.load()
		if v.length() != len(live) {
			t.Fatalf("step %d: length %d, want %d", step, v.length(), len(live))
		}
		for i := range v.length() {
			id := v.get(i).ClientID
			if !live[id] {
				t.Fatalf("step %d: %s present but not live", step, id)
			}
			if s.idx != nil && s.idx[id] != i {
				t.Fatalf("step %d: idx[%s]=%d, want %d", step, id, s.idx[id], i)
			}
		}
		if s.idx != nil && len(s.idx) != len(live) {
			t.Fatalf("step %d: idx has %d entries, want %d", step, len(s.idx), len(live))
		}
	}
}

func TestKidTable(t *testing.T) {
	// Grow a node's children through the small and hashed shapes, then shrink
	// back, checking every lookup on the way.
	var n node
	live := map[string]*node{}
	check := func(stage string) {
		t.Helper()
		if n.nkids != len(live) {
			t.Fatalf("%s: nkids %d, want %d", stage, n.nkids, len(live))
		}
		tb := n.kids.Load()
		if len(live) == 0 {
			if tb != nil {
				t.Fatalf("%s: empty node keeps a table", stage)
			}
			return
		}
		count := 0
		tb.each(func(level string, c *node) {
			count++
			if live[level] != c {
				t.Fatalf("%s: each yielded %q wrongly", stage, level)
			}
		})
		if count != len(live) {
			t.Fatalf("%s: each yielded %d, want %d", stage, count, len(live))
		}
		for l, c := range live {
			if tb.get(l) != c {
				t.Fatalf("%s: get(%q) wrong", stage, l)
			}
		}
		if tb.get("absent") != nil {
			t.Fatalf("%s: get(absent) found something", stage)
		}
		if len(live) > smallKids && tb.buckets == nil {
			t.Fatalf("%s: %d children in a small table", stage, len(live))
		}
		if len(tb.buckets) > minBuckets && len(live)*loadPerBuck*4 < len(tb.buckets) {
			t.Fatalf("%s: %d buckets for %d children", stage, len(tb.buckets), len(live))
		}
	}
	const max = 3000
	for i := range max {
		l := fmt.Sprint(i)
		c := &node{level: l}
		n.kidAdd(l, c)
		live[l] = c
		if i < 40 || i%250 == 0 {
			check(fmt.Sprint("add ", i))
		}
	}
	check("full")
	for i := range max {
		l := fmt.Sprint((i * 7) % max) // a different order
		n.kidRemove(l)
		delete(live, l)
		if max-i < 40 || i%250 == 0 {
			check(fmt.Sprint("remove ", i))
		}
	}
	check("empty")
}
