package topic

import (
	"strings"
	"sync"
	"sync/atomic"
)

// Subscription is one client's subscription to one topic filter. The Trie
// stores its own copy, and the pointers it hands out never change: a second
// Subscribe with the same key stores a new value.
type Subscription struct {
	// ClientID identifies the subscribing session.
	ClientID string
	// Filter is the topic filter without any "$share/{group}/" prefix.
	Filter string
	// Group is the share group (ShareName), "" when not shared.
	Group string
	// QoS is the maximum QoS granted.
	QoS byte
	// NoLocal: do not deliver the client's own messages [MQTT-3.8.3-3]. The
	// broker rejects it on shared subscriptions [MQTT-3.8.3-4].
	NoLocal bool
	// RetainAsPublished: keep the RETAIN flag when forwarding [MQTT-3.3.1-12]
	// [MQTT-3.3.1-13].
	RetainAsPublished bool
	// RetainHandling: 0 send retained messages on subscribe, 1 only if the
	// subscription is new, 2 never [MQTT-3.3.1-9] [MQTT-3.3.1-10] [MQTT-3.3.1-11].
	RetainHandling byte
	// ID is the subscription identifier, 0 for none.
	ID uint32
}

// Matches receives the result of Trie.Match. Reuse one value per goroutine:
// Match resets the slices and keeps their capacity, so a warm Matches makes
// Match allocation-free. The pointers it holds are read-only.
type Matches struct {
	// Subs holds every matching non-shared subscription. A client appears once
	// per matching filter; merging overlapping subscriptions (maximum QoS, all
	// subscription identifiers [MQTT-3.3.4-2] [MQTT-3.3.4-3]) is the caller's.
	Subs []*Subscription
	// Groups holds every matching share group, one per (group, filter); the
	// caller picks one member of each [MQTT-4.8.2-3].
	Groups []*Group
}

// Group is a share group on one topic filter: its members share the messages
// matching the filter, each message going to one of them. The same ShareName on
// two filters makes two groups.
type Group struct {
	name, filter string
	members      subSet
	next         atomic.Uint64
}

// Name returns the ShareName.
func (g *Group) Name() string { return g.name }

// Filter returns the topic filter, without the "$share/{group}/" prefix.
func (g *Group) Filter() string { return g.filter }

// Len returns the number of members.
func (g *Group) Len() int { return g.members.load().length() }

// Pick returns the next member in rotation for which ok returns true (for
// instance: its session is online and its queue has room), trying each member
// at most once, or nil if none qualifies. A nil ok accepts every member. A
// member that is skipped does not take a turn away from the others, and the
// rotation continues after the member picked. Pick is safe for concurrent use:
// the rotation is one atomic counter, and concurrent picks start at different
// members.
func (g *Group) Pick(ok func(*Subscription) bool) *Subscription {
	v := g.members.load()
	n := uint64(v.length())
	if n == 0 {
		return nil
	}
	start := g.next.Add(1) - 1
	for k := range n {
		s := v.get(int((start + k) % n))
		if ok == nil || ok(s) {
			if k > 0 {
				g.next.Add(k) // continue the rotation after the member picked
			}
			return s
		}
	}
	return nil
}

// node is a trie node: one level of the filters that pass through it.
//
// Readers (Match) use only the atomic fields and never lock. Writers hold the
// Trie's mutex, which also guards the plain fields.
type node struct {
	level  string
	parent *node

	kids   atomic.Pointer[kidTable] // literal children
	plus   atomic.Pointer[node]     // '+' child
	hash   atomic.Pointer[node]     // '#' child
	subs   subSet                   // non-shared subscriptions ending here
	groups atomic.Pointer[[]*Group] // share groups ending here, copy-on-write (few per filter)

	nkids int // writer only: number of literal children
}

// empty reports whether n holds nothing and can be pruned. Writer only.
func (n *node) empty() bool {
	return n.nkids == 0 && n.plus.Load() == nil && n.hash.Load() == nil &&
		n.subs.load() == nil && n.groups.Load() == nil
}

// child returns n's child for level, or nil.
func (n *node) child(level string) *node {
	switch level {
	case "+":
		return n.plus.Load()
	case "#":
		return n.hash.Load()
	}
	if t := n.kids.Load(); t != nil {
		return t.get(level)
	}
	return nil
}

// group returns n's group called name, or nil.
func (n *node) group(name string) *Group {
	if gs := n.groups.Load(); gs != nil {
		for _, g := range *gs {
			if g.name == name {
				return g
			}
		}
	}
	return nil
}

// Trie is the subscription index: it finds every subscription whose filter
// matches a topic name.
//
// Match is lock-free and may run on any number of goroutines concurrently with
// Subscribe and Unsubscribe, which are serialised by one mutex. Every structure
// a reader can reach is either immutable or swapped in whole through an
// atomic pointer, so a Match sees each node as it was at some moment during
// the call; a subscription added or removed concurrently may or may not be
// reported, and none is reported twice.
type Trie struct {
	mu    sync.Mutex
	root  node
	count atomic.Int64
	nodes int // writer only: nodes below the root, for leak tests
}

// NewTrie returns an empty Trie.
func NewTrie() *Trie { return &Trie{} }

// Count returns the number of subscriptions, shared ones included.
func (t *Trie) Count() int { return int(t.count.Load()) }

// Subscribe adds s, keyed by (ClientID, Group, Filter). If that key exists, its
// options are replaced and replaced is true [MQTT-3.8.4-3]. s.Filter must be a
// valid filter without the share prefix (see ValidFilter, ParseShared); an
// invalid one is stored but matches nothing.
func (t *Trie) Subscribe(s Subscription) (replaced bool) {
	sub := new(Subscription)
	*sub = s
	t.mu.Lock()
	defer t.mu.Unlock()
	n := &t.root
	rest := s.Filter
	for {
		level, tail, more := strings.Cut(rest, "/")
		c := n.child(level)
		if c == nil {
			c = &node{level: level, parent: n}
			t.nodes++
			switch level {
			case "+":
				n.plus.Store(c)
			case "#":
				n.hash.Store(c)
			default:
				n.kidAdd(level, c)
			}
		}
		n = c
		if !more {
			break
		}
		rest = tail
	}
	if s.Group == "" {
		replaced = n.subs.put(sub)
	} else {
		g := n.group(s.Group)
		if g == nil {
			g = &Group{name: s.Group, filter: s.Filter}
			var gs []*Group
			if old := n.groups.Load(); old != nil {
				gs = append(gs, *old...)
			}
			gs = append(gs, g)
			n.groups.Store(&gs)
		}
		replaced = g.members.put(sub)
	}
	if !replaced {
		t.count.Add(1)
	}
	return replaced
}

// Unsubscribe removes the subscription keyed by (clientID, group, filter),
// comparing the filter byte for byte [MQTT-3.10.4-1], and reports whether it
// existed. A group whose last member leaves is removed, and so are trie nodes
// left empty, so memory does not grow with subscribe/unsubscribe churn.
func (t *Trie) Unsubscribe(clientID, group, filter string) (removed bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := &t.root
	rest := filter
	for {
		level, tail, more := strings.Cut(rest, "/")
		if n = n.child(level); n == nil {
			return false
		}
		if !more {
			break
		}
		rest = tail
	}
	if group == "" {
		removed = n.subs.remove(clientID)
	} else if g := n.group(group); g != nil {
		if removed = g.members.remove(clientID); removed && g.members.load() == nil {
			n.removeGroup(g)
		}
	}
	if !removed {
		return false
	}
	t.count.Add(-1)
	for n != &t.root && n.empty() {
		p := n.parent
		switch n.level {
		case "+":
			p.plus.Store(nil)
		case "#":
			p.hash.Store(nil)
		default:
			p.kidRemove(n.level)
		}
		t.nodes--
		n = p
	}
	return true
}

// removeGroup unpublishes g from n. Writer only.
func (n *node) removeGroup(g *Group) {
	old := *n.groups.Load()
	if len(old) == 1 {
		n.groups.Store(nil)
		return
	}
	gs := make([]*Group, 0, len(old)-1)
	for _, x := range old {
		if x != g {
			gs = append(gs, x)
		}
	}
	n.groups.Store(&gs)
}

// Match fills m with the subscriptions and share groups whose filters match
// the topic name, after resetting m. name should be valid (ValidName). Match
// takes no lock and, once m's slices have grown to fit, allocates nothing.
func (t *Trie) Match(name string, m *Matches) {
	m.Subs = m.Subs[:0]
	m.Groups = m.Groups[:0]
	// [MQTT-4.7.2-1] filters starting with a wildcard do not match $-topics.
	dollar := len(name) > 0 && name[0] == '$'
	matchLevel(&t.root, name, m, dollar)
}

// matchLevel matches the levels in rest (at least one, possibly empty) below n.
func matchLevel(n *node, rest string, m *Matches, noWild bool) {
	level, tail, more := strings.Cut(rest, "/")
	if !noWild {
		if h := n.hash.Load(); h != nil {
			collect(h, m) // '#' matches this level and all below it
		}
		if p := n.plus.Load(); p != nil {
			matchNext(p, tail, more, m) // '+' matches this level, even empty
		}
	}
	if k := n.kids.Load(); k != nil {
		if c := k.get(level); c != nil {
			matchNext(c, tail, more, m)
		}
	}
}

// matchNext continues below c, which matched a level of the name.
func matchNext(c *node, tail string, more bool, m *Matches) {
	if more {
		matchLevel(c, tail, m, false)
		return
	}
	collect(c, m)
	// [MQTT-4.7.1-1] (3.1.1: [MQTT-4.7.1-2]) "sport/#" also matches "sport".
	if h := c.hash.Load(); h != nil {
		collect(h, m)
	}
}

// collect appends n's subscriptions and groups to m.
func collect(n *node, m *Matches) {
	m.Subs = n.subs.load().appendTo(m.Subs)
	if gs := n.groups.Load(); gs != nil {
		m.Groups = append(m.Groups, *gs...)
	}
}
