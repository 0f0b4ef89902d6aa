package topic

import (
	"strings"
	"sync"
)

// Retained is the index of retained messages: one value per topic name, found
// by topic filter. It is a trie of the stored names, so Match walks only the
// branches the filter can reach instead of scanning every name.
//
// The broker applies the retain rules and calls Set and Delete accordingly: a
// retained PUBLISH replaces the stored message [MQTT-3.3.1-5]; one with an empty
// payload deletes it and is not stored [MQTT-3.3.1-6] [MQTT-3.3.1-7] (3.1.1:
// [MQTT-3.3.1-10] [MQTT-3.3.1-11]); on SUBSCRIBE, Retain Handling decides
// whether Match is called at all [MQTT-3.3.1-9] [MQTT-3.3.1-10] [MQTT-3.3.1-11].
//
// Retained is safe for concurrent use. Retained lookups happen on SUBSCRIBE,
// not per PUBLISH, so a read-write mutex suffices. Match and Range call fn
// after releasing it, so a slow fn never holds up a publisher's Set.
type Retained[T any] struct {
	mu   sync.RWMutex
	root rnode[T]
	n    int
}

type rnode[T any] struct {
	level  string
	parent *rnode[T]
	kids   map[string]*rnode[T]
	name   string // the full topic name, when has
	has    bool
	v      T
}

// NewRetained returns an empty index.
func NewRetained[T any]() *Retained[T] { return &Retained[T]{} }

// Len returns the number of retained names.
func (r *Retained[T]) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.n
}

// find returns the node for name, or nil. Caller holds the lock.
func (r *Retained[T]) find(name string) *rnode[T] {
	n := &r.root
	rest := name
	for {
		level, tail, more := strings.Cut(rest, "/")
		if n = n.kids[level]; n == nil {
			return nil
		}
		if !more {
			return n
		}
		rest = tail
	}
}

// Set stores v as the retained value of the topic name, replacing any previous
// one. name should be valid (ValidName).
func (r *Retained[T]) Set(name string, v T) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := &r.root
	rest := name
	for {
		level, tail, more := strings.Cut(rest, "/")
		c := n.kids[level]
		if c == nil {
			c = &rnode[T]{level: level, parent: n}
			if n.kids == nil {
				n.kids = make(map[string]*rnode[T], 1)
			}
			n.kids[level] = c
		}
		n = c
		if !more {
			break
		}
		rest = tail
	}
	if !n.has {
		r.n++
	}
	n.name, n.has, n.v = name, true, v
}

// Delete removes the retained value of the topic name and reports whether
// there was one. Nodes left empty are pruned.
func (r *Retained[T]) Delete(name string) (deleted bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.find(name)
	if n == nil || !n.has {
		return false
	}
	var zero T
	n.name, n.has, n.v = "", false, zero
	r.n--
	for n != &r.root && !n.has && len(n.kids) == 0 {
		p := n.parent
		delete(p.kids, n.level)
		if len(p.kids) == 0 {
			p.kids = nil
		}
		n = p
	}
	return true
}

// Get returns the retained value of the topic name.
func (r *Retained[T]) Get(name string) (T, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if n := r.find(name); n != nil && n.has {
		return n.v, true
	}
	var zero T
	return zero, false
}

type retainedItem[T any] struct {
	name string
	v    T
}

// Match calls fn for each retained topic name matched by filter, under the
// same rules as Match (the function), including [MQTT-4.7.2-1]: a filter
// starting with '+' or '#' does not match names starting with '$'. fn returns
// false to stop. The values are those stored when Match was called, in no
// particular order; fn runs without the lock held and may use r.
func (r *Retained[T]) Match(filter string, fn func(name string, v T) bool) {
	if filter == "" {
		return
	}
	r.mu.RLock()
	var items []retainedItem[T]
	if r.n > 0 {
		noDollar := filter[0] == '+' || filter[0] == '#'
		items = r.root.match(filter, noDollar, items)
	}
	r.mu.RUnlock()
	for _, it := range items {
		if !fn(it.name, it.v) {
			return
		}
	}
}

// match appends the values below n matched by the filter levels in rest. At
// the root, noDollar skips names whose first level starts with '$'.
func (n *rnode[T]) match(rest string, noDollar bool, out []retainedItem[T]) []retainedItem[T] {
	level, tail, more := strings.Cut(rest, "/")
	switch {
	case level == "#":
		if more {
			return out // not a valid filter: '#' must be last
		}
		// [MQTT-4.7.1-1] (3.1.1: [MQTT-4.7.1-2]) the parent level and everything below.
		if n.has {
			out = append(out, retainedItem[T]{n.name, n.v})
		}
		for l, c := range n.kids {
			if noDollar && strings.HasPrefix(l, "$") {
				continue // [MQTT-4.7.2-1]
			}
			out = c.all(out)
		}
	case level == "+":
		for l, c := range n.kids {
			if noDollar && strings.HasPrefix(l, "$") {
				continue // [MQTT-4.7.2-1]
			}
			out = c.next(tail, more, out)
		}
	default:
		if c := n.kids[level]; c != nil {
			out = c.next(tail, more, out)
		}
	}
	return out
}

// next continues below c, which matched one filter level.
func (c *rnode[T]) next(tail string, more bool, out []retainedItem[T]) []retainedItem[T] {
	if more {
		return c.match(tail, false, out)
	}
	if c.has {
		out = append(out, retainedItem[T]{c.name, c.v})
	}
	return out
}

// all appends every value at or below n.
func (n *rnode[T]) all(out []retainedItem[T]) []retainedItem[T] {
	if n.has {
		out = append(out, retainedItem[T]{n.name, n.v})
	}
	for _, c := range n.kids {
		out = c.all(out)
	}
	return out
}

// Range calls fn for every retained name and value, in no particular order,
// until fn returns false. Like Match, it works on a snapshot and calls fn
// without the lock held.
func (r *Retained[T]) Range(fn func(name string, v T) bool) {
	r.mu.RLock()
	items := make([]retainedItem[T], 0, r.n)
	items = r.root.all(items)
	r.mu.RUnlock()
	for _, it := range items {
		if !fn(it.name, it.v) {
			return
		}
	}
}
