package topic

import (
	"hash/maphash"
	"sync/atomic"
)

// A trie node's literal children are read lock-free by every publisher and
// written by one writer at a time. A node may have a handful of children or
// 100,000 (devices/<id>/#), so the table has two shapes:
//
//   - small: an immutable slice scanned linearly, replaced whole on change;
//   - hashed: a power-of-two array of buckets, each an immutable slice behind
//     its own atomic pointer. An insert or delete copies one short bucket and
//     swaps that pointer; the array itself is rebuilt only when the table
//     doubles or halves, so changes cost amortised O(1).
//
// A lookup touches one bucket, so concurrent changes to other buckets cannot
// tear it. A reader holding a table that was since replaced sees the children
// as they were at the replacement, which is a valid moment to have matched at.

const (
	smallKids   = 8  // most nodes: a linear scan beats hashing
	minBuckets  = 16 // the smallest hashed table
	loadPerBuck = 2  // grow when children exceed 2 per bucket
)

type kidEntry struct {
	level string
	n     *node
}

type kidBucket struct {
	e []kidEntry
}

// kidTable is a node's set of literal children. Its fields never change after
// publication; only the bucket pointers do.
type kidTable struct {
	small   []kidEntry
	buckets []atomic.Pointer[kidBucket] // nil for a small table
	seed    maphash.Seed
}

// get returns the child for level, or nil. It does not allocate.
func (t *kidTable) get(level string) *node {
	if t.buckets == nil {
		for i := range t.small {
			if t.small[i].level == level {
				return t.small[i].n
			}
		}
		return nil
	}
	b := t.bucket(level).Load()
	if b == nil {
		return nil
	}
	for i := range b.e {
		if b.e[i].level == level {
			return b.e[i].n
		}
	}
	return nil
}

func (t *kidTable) bucket(level string) *atomic.Pointer[kidBucket] {
	h := maphash.String(t.seed, level)
	return &t.buckets[h&uint64(len(t.buckets)-1)]
}

// each calls fn for every child.
func (t *kidTable) each(fn func(level string, n *node)) {
	if t.buckets == nil {
		for _, e := range t.small {
			fn(e.level, e.n)
		}
		return
	}
	for i := range t.buckets {
		if b := t.buckets[i].Load(); b != nil {
			for _, e := range b.e {
				fn(e.level, e.n)
			}
		}
	}
}

// entries returns every child, for rebuilding.
func (t *kidTable) entries(extra int) []kidEntry {
	out := make([]kidEntry, 0, extra)
	t.each(func(level string, n *node) { out = append(out, kidEntry{level, n}) })
	return out
}

// newKidTable builds a table holding es, choosing its shape by size.
func newKidTable(es []kidEntry) *kidTable {
	if len(es) <= smallKids {
		return &kidTable{small: es}
	}
	nb := minBuckets
	for nb*loadPerBuck < len(es)*2 { // leave room to grow before the next rebuild
		nb *= 2
	}
	t := &kidTable{buckets: make([]atomic.Pointer[kidBucket], nb), seed: maphash.MakeSeed()}
	lists := make([][]kidEntry, nb)
	for _, e := range es {
		h := maphash.String(t.seed, e.level) & uint64(nb-1)
		lists[h] = append(lists[h], e)
	}
	for i, l := range lists {
		if l != nil {
			t.buckets[i].Store(&kidBucket{e: l})
		}
	}
	return t
}

// kidAdd publishes child c under level in n's table. Writer only; level must
// not be present.
func (n *node) kidAdd(level string, c *node) {
	t := n.kids.Load()
	n.nkids++
	switch {
	case t == nil:
		n.kids.Store(&kidTable{small: []kidEntry{{level, c}}})
	case t.buckets == nil && n.nkids <= smallKids:
		es := make([]kidEntry, len(t.small)+1)
		copy(es, t.small)
		es[len(t.small)] = kidEntry{level, c}
		n.kids.Store(&kidTable{small: es})
	case t.buckets == nil || n.nkids > len(t.buckets)*loadPerBuck:
		es := append(t.entries(n.nkids), kidEntry{level, c})
		n.kids.Store(newKidTable(es))
	default:
		p := t.bucket(level)
		var old []kidEntry
		if b := p.Load(); b != nil {
			old = b.e
		}
		es := make([]kidEntry, len(old)+1)
		copy(es, old)
		es[len(old)] = kidEntry{level, c}
		p.Store(&kidBucket{e: es})
	}
}

// kidRemove unpublishes the child under level. Writer only; level must be
// present.
func (n *node) kidRemove(level string) {
	t := n.kids.Load()
	n.nkids--
	switch {
	case n.nkids == 0:
		n.kids.Store(nil)
	case t.buckets == nil:
		es := make([]kidEntry, 0, len(t.small)-1)
		for _, e := range t.small {
			if e.level != level {
				es = append(es, e)
			}
		}
		n.kids.Store(&kidTable{small: es})
	case n.nkids <= smallKids/2 || (len(t.buckets) > minBuckets && n.nkids*loadPerBuck*4 < len(t.buckets)):
		// Shrink so a node that once had many children does not keep a big
		// table, and so memory returns after subscribe/unsubscribe cycles.
		es := make([]kidEntry, 0, n.nkids)
		t.each(func(l string, c *node) {
			if l != level {
				es = append(es, kidEntry{l, c})
			}
		})
		n.kids.Store(newKidTable(es))
	default:
		p := t.bucket(level)
		old := p.Load().e
		if len(old) == 1 {
			p.Store(nil)
			return
		}
		es := make([]kidEntry, 0, len(old)-1)
		for _, e := range old {
			if e.level != level {
				es = append(es, e)
			}
		}
		p.Store(&kidBucket{e: es})
	}
}
