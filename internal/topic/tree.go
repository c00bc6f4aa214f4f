package topic

import (
	"strings"
	"sync"
)

// Tree indexes subscriptions, (filter, key) pairs each holding a value of type V, so
// that every subscription matching a published topic name is found without testing
// each filter. A key identifies a subscriber (a client id); one key may hold any number
// of filters, overlapping ones included, and one filter any number of keys.
//
// Shared subscriptions are stored under their full filter string ("$share/g/a/+") and
// match on the filter inside it ("a/+"), as MQTT 5.0 section 4.8.2 requires. [Tree.Match]
// passes the full string to its callback, so the caller recognises a shared
// subscription with [ParseShared] and delivers to one member of each group. A filter
// that begins with "$share/" but that ParseShared refuses is stored and matched
// literally.
//
// Tree does not validate: it stores any string and matches it exactly as [Match] does,
// so the two agree on every input. A server validates with [ValidFilter] and
// [ParseShared] first, since it must refuse an invalid filter in its SUBACK anyway.
//
// A Tree is safe for concurrent use. [Tree.Add] and [Tree.Remove] take a write lock;
// [Tree.Match] and [Tree.Len] take a read lock, so matches proceed in parallel with each
// other and wait only for writers. Nodes left empty by Remove are freed at once, so the
// memory held depends on the subscriptions present, not on how many came and went.
//
// The zero Tree is empty and ready to use. A Tree must not be copied after first use.
type Tree[V any] struct {
	mu   sync.RWMutex
	root node[V]
	n    int // number of (filter, key) pairs
}

// node is one level of the tree. The path from the root spells the levels of the
// filters stored in subs.
type node[V any] struct {
	children map[string]*node[V] // literal levels, including a "#" that is not last
	plus     *node[V]            // level "+"
	hash     *node[V]            // last level "#"; it has subs and never children
	// subs holds the subscriptions whose filter ends at this node: full filter string
	// to key to value. Ordinary filters ending here all have the same string; shared
	// ones differ by share name.
	subs map[string]map[string]V
}

// Add stores v for the subscription of key to filter and reports whether that
// subscription existed already, in which case its value is replaced.
func (t *Tree[V]) Add(filter, key string, v V) (replaced bool) {
	path := matchPath(filter)
	t.mu.Lock()
	defer t.mu.Unlock()
	n := &t.root
	for {
		level, rest, more := strings.Cut(path, "/")
		n = n.childOrNew(level, more)
		if !more {
			break
		}
		path = rest
	}
	keys := n.subs[filter]
	if keys == nil {
		if n.subs == nil {
			n.subs = make(map[string]map[string]V)
		}
		keys = make(map[string]V)
		n.subs[filter] = keys
	}
	_, replaced = keys[key]
	keys[key] = v
	if !replaced {
		t.n++
	}
	return replaced
}

// Remove deletes the subscription of key to filter and reports whether it existed.
// Nodes it leaves empty are unlinked.
func (t *Tree[V]) Remove(filter, key string) bool {
	path := matchPath(filter)
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.root.remove(path, filter, key) {
		return false
	}
	t.n--
	return true
}

// Len returns the number of subscriptions, (filter, key) pairs, in the tree.
func (t *Tree[V]) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.n
}

// Match calls fn once for every subscription whose filter matches the topic name by the
// rules of [Match], shared subscriptions by their inner filter. filter is the string
// given to [Tree.Add], "$share/..." included. The order of the calls is unspecified.
//
// fn runs under the tree's read lock: it must not call Add or Remove on the same tree
// (that deadlocks) and should be quick, since writers wait for it. Match itself does
// not allocate.
func (t *Tree[V]) Match(name string, fn func(filter, key string, v V)) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	// A name beginning with '$' is not matched by a first level "+" or "#".
	t.root.match(name, name != "" && name[0] == '$', fn)
}

// matchPath returns the filter whose levels place filter in the tree: the inner filter
// of a valid shared subscription, filter itself otherwise.
func matchPath(filter string) string {
	if _, inner, shared, err := ParseShared(filter); shared && err == nil {
		return inner
	}
	return filter
}

// childOrNew returns the child of n for level, creating it if needed. more reports
// whether further levels follow, so that only a last "#" is taken as the wildcard.
func (n *node[V]) childOrNew(level string, more bool) *node[V] {
	switch {
	case level == "+":
		if n.plus == nil {
			n.plus = new(node[V])
		}
		return n.plus
	case level == "#" && !more:
		if n.hash == nil {
			n.hash = new(node[V])
		}
		return n.hash
	}
	c := n.children[level]
	if c == nil {
		if n.children == nil {
			n.children = make(map[string]*node[V])
		}
		c = new(node[V])
		n.children[level] = c
	}
	return c
}

// remove deletes (filter, key) from the node that path leads to below n, unlinks every
// node on the way that is left empty, and reports whether the subscription existed.
func (n *node[V]) remove(path, filter, key string) bool {
	level, rest, more := strings.Cut(path, "/")
	var c *node[V]
	switch {
	case level == "+":
		c = n.plus
	case level == "#" && !more:
		c = n.hash
	default:
		c = n.children[level]
	}
	if c == nil {
		return false
	}
	if more {
		if !c.remove(rest, filter, key) {
			return false
		}
	} else {
		keys := c.subs[filter]
		if _, ok := keys[key]; !ok {
			return false
		}
		delete(keys, key)
		if len(keys) == 0 {
			delete(c.subs, filter)
		}
	}
	if c.empty() {
		switch {
		case c == n.plus:
			n.plus = nil
		case c == n.hash:
			n.hash = nil
		default:
			delete(n.children, level)
		}
	}
	return true
}

// empty reports whether n holds no subscription and no child, so it can be unlinked.
func (n *node[V]) empty() bool {
	return len(n.subs) == 0 && len(n.children) == 0 && n.plus == nil && n.hash == nil
}

// match visits the subscriptions matching name below n, where name is what is left of
// the topic name and holds at least one level. noWild is true at the root for a name
// beginning with '$'.
func (n *node[V]) match(name string, noWild bool, fn func(filter, key string, v V)) {
	if n.hash != nil && !noWild {
		n.hash.visit(fn) // "#" matches this and every level below
	}
	level, rest, more := strings.Cut(name, "/")
	if c := n.children[level]; c != nil {
		c.matchRest(rest, more, fn)
	}
	if n.plus != nil && !noWild {
		n.plus.matchRest(rest, more, fn)
	}
}

// matchRest continues at n, the node reached by the last level taken from the name,
// with the rest of the name; more is false when no level is left.
func (n *node[V]) matchRest(rest string, more bool, fn func(filter, key string, v V)) {
	if more {
		n.match(rest, false, fn)
		return
	}
	n.visit(fn)
	if n.hash != nil {
		n.hash.visit(fn) // "sport/#" matches "sport"
	}
}

// visit calls fn for every subscription stored at n.
func (n *node[V]) visit(fn func(filter, key string, v V)) {
	for filter, keys := range n.subs {
		for key, v := range keys {
			fn(filter, key, v)
		}
	}
}
