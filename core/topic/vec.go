package topic

import (
	"slices"
	"sync/atomic"
)

// The subscribers of one trie node, and the members of one share group, live in
// a persistent vector: an immutable radix tree with 32-way fan-out whose
// updates copy only the path from the root to the changed leaf. Readers load
// the current root with one atomic load and see an exact snapshot without any
// lock; a writer replaces one element, appends or pops in O(log32 n), so
// building a node with 100,000 subscribers costs O(n log n), not O(n²) as
// copying a flat slice on every change would.

const (
	vecBits  = 5
	vecWidth = 1 << vecBits
	vecMask  = vecWidth - 1
)

// vnode is a node of a subVec: a leaf holds subs, an interior node kids.
// Nodes are never modified once reachable from a published subVec.
type vnode struct {
	kids []*vnode
	subs []*Subscription
}

// subVec is an immutable vector of subscriptions. Elements fill the tree from
// the left, so index i is found by taking vecBits bits of i per level.
type subVec struct {
	n     int
	shift uint  // 0: root is a leaf
	root  vnode // by value: a one-leaf vector is a single allocation plus its slice
}

// length returns the number of elements; v may be nil.
func (v *subVec) length() int {
	if v == nil {
		return 0
	}
	return v.n
}

// get returns element i.
func (v *subVec) get(i int) *Subscription {
	nd := &v.root
	for shift := v.shift; shift > 0; shift -= vecBits {
		nd = nd.kids[(i>>shift)&vecMask]
	}
	return nd.subs[i&vecMask]
}

// appendTo appends every element to dst in index order without allocating
// beyond dst's growth.
func (v *subVec) appendTo(dst []*Subscription) []*Subscription {
	if v == nil {
		return dst
	}
	if v.shift == 0 {
		return append(dst, v.root.subs...)
	}
	return v.root.appendTo(dst, v.shift)
}

func (nd *vnode) appendTo(dst []*Subscription, shift uint) []*Subscription {
	if shift == 0 {
		return append(dst, nd.subs...)
	}
	for _, k := range nd.kids {
		dst = k.appendTo(dst, shift-vecBits)
	}
	return dst
}

// push returns a vector with s appended; v may be nil.
func (v *subVec) push(s *Subscription) *subVec {
	if v == nil || v.n == 0 {
		return &subVec{n: 1, root: vnode{subs: []*Subscription{s}}}
	}
	if v.n == 1<<(v.shift+vecBits) {
		// The tree is full: grow a level, the old root becoming the left child.
		old := v.root
		return &subVec{
			n:     v.n + 1,
			shift: v.shift + vecBits,
			root:  vnode{kids: []*vnode{&old, newPath(v.shift, s)}},
		}
	}
	return &subVec{n: v.n + 1, shift: v.shift, root: pushPath(&v.root, v.shift, v.n, s)}
}

// newPath returns a fresh spine of the given height ending in a leaf holding s.
func newPath(shift uint, s *Subscription) *vnode {
	if shift == 0 {
		return &vnode{subs: []*Subscription{s}}
	}
	return &vnode{kids: []*vnode{newPath(shift-vecBits, s)}}
}

// pushPath copies the rightmost path of nd and places s at index i (= length).
func pushPath(nd *vnode, shift uint, i int, s *Subscription) vnode {
	if shift == 0 {
		subs := make([]*Subscription, len(nd.subs)+1)
		copy(subs, nd.subs)
		subs[len(nd.subs)] = s
		return vnode{subs: subs}
	}
	ci := (i >> shift) & vecMask
	if ci < len(nd.kids) {
		kids := slices.Clone(nd.kids)
		c := pushPath(nd.kids[ci], shift-vecBits, i, s)
		kids[ci] = &c
		return vnode{kids: kids}
	}
	kids := make([]*vnode, len(nd.kids)+1)
	copy(kids, nd.kids)
	kids[ci] = newPath(shift-vecBits, s)
	return vnode{kids: kids}
}

// set returns a vector with element i replaced by s.
func (v *subVec) set(i int, s *Subscription) *subVec {
	return &subVec{n: v.n, shift: v.shift, root: setPath(&v.root, v.shift, i, s)}
}

func setPath(nd *vnode, shift uint, i int, s *Subscription) vnode {
	if shift == 0 {
		subs := slices.Clone(nd.subs)
		subs[i&vecMask] = s
		return vnode{subs: subs}
	}
	ci := (i >> shift) & vecMask
	kids := slices.Clone(nd.kids)
	c := setPath(nd.kids[ci], shift-vecBits, i, s)
	kids[ci] = &c
	return vnode{kids: kids}
}

// pop returns a vector without its last element, or nil when it empties.
func (v *subVec) pop() *subVec {
	if v.n <= 1 {
		return nil
	}
	root, _ := popPath(&v.root, v.shift, v.n-1)
	shift := v.shift
	// Drop levels whose root has a single child, keeping the tree shallow.
	for shift > 0 && len(root.kids) == 1 {
		root = *root.kids[0]
		shift -= vecBits
	}
	return &subVec{n: v.n - 1, shift: shift, root: root}
}

// popPath copies the rightmost path of nd without index i (the last); empty
// reports that nothing remains below nd.
func popPath(nd *vnode, shift uint, i int) (_ vnode, empty bool) {
	if shift == 0 {
		if len(nd.subs) <= 1 {
			return vnode{}, true
		}
		return vnode{subs: slices.Clone(nd.subs[:len(nd.subs)-1])}, false
	}
	ci := (i >> shift) & vecMask
	c, cempty := popPath(nd.kids[ci], shift-vecBits, i)
	if cempty {
		if ci == 0 {
			return vnode{}, true
		}
		return vnode{kids: slices.Clone(nd.kids[:ci])}, false
	}
	kids := slices.Clone(nd.kids)
	kids[ci] = &c
	return vnode{kids: kids}, false
}

// indexThreshold is the size above which a subSet keeps a client id index;
// below it a linear scan of the vector is cheaper than the map.
const indexThreshold = 16

// subSet is a set of subscriptions keyed by client id, read lock-free through
// an atomic snapshot and written by one writer at a time (the Trie's mutex).
type subSet struct {
	vec atomic.Pointer[subVec]
	idx map[string]int // writer only: client id -> index, kept when large
}

// load returns the current snapshot, possibly nil.
func (s *subSet) load() *subVec { return s.vec.Load() }

// find returns the index of clientID, or -1. Writer only.
func (s *subSet) find(v *subVec, clientID string) int {
	if s.idx != nil {
		if i, ok := s.idx[clientID]; ok {
			return i
		}
		return -1
	}
	for i := range v.length() {
		if v.get(i).ClientID == clientID {
			return i
		}
	}
	return -1
}

// put adds sub, or replaces the subscription of the same client. Writer only.
func (s *subSet) put(sub *Subscription) (replaced bool) {
	v := s.vec.Load()
	if i := s.find(v, sub.ClientID); i >= 0 {
		s.vec.Store(v.set(i, sub))
		return true
	}
	nv := v.push(sub)
	if s.idx != nil {
		s.idx[sub.ClientID] = v.length()
	} else if nv.n > indexThreshold {
		s.idx = make(map[string]int, nv.n)
		for i := range nv.n {
			s.idx[nv.get(i).ClientID] = i
		}
	}
	s.vec.Store(nv)
	return false
}

// remove deletes the subscription of clientID by moving the last element into
// its place. Writer only.
func (s *subSet) remove(clientID string) (removed bool) {
	v := s.vec.Load()
	i := s.find(v, clientID)
	if i < 0 {
		return false
	}
	last := v.n - 1
	if i != last {
		moved := v.get(last)
		v = v.set(i, moved)
		if s.idx != nil {
			s.idx[moved.ClientID] = i
		}
	}
	nv := v.pop()
	if s.idx != nil {
		delete(s.idx, clientID)
		if nv.length() <= indexThreshold/2 {
			s.idx = nil
		}
	}
	s.vec.Store(nv)
	return true
}
