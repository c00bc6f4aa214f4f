package topic

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// sub is one visited (filter, key) pair.
type sub struct{ filter, key string }

// collect returns what t.Match(name) visits, sorted, and fails t if a pair is visited
// twice or with the wrong value.
func collect(t *testing.T, tr *Tree[string], name string) []sub {
	t.Helper()
	var got []sub
	tr.Match(name, func(filter, key, v string) {
		if want := filter + "|" + key; v != want {
			t.Errorf("Match(%q) visited (%q, %q) with value %q, want %q", name, filter, key, v, want)
		}
		got = append(got, sub{filter, key})
	})
	slices.SortFunc(got, cmpSub)
	for i := 1; i < len(got); i++ {
		if got[i] == got[i-1] {
			t.Errorf("Match(%q) visited %v twice", name, got[i])
		}
	}
	return got
}

func cmpSub(a, b sub) int {
	if c := strings.Compare(a.filter, b.filter); c != 0 {
		return c
	}
	return strings.Compare(a.key, b.key)
}

// subMatch is the rule Tree documents: a valid shared subscription matches by its inner
// filter, anything else as Match does.
func subMatch(filter, name string) bool {
	if _, inner, shared, err := ParseShared(filter); shared && err == nil {
		return refMatch(inner, name)
	}
	return refMatch(filter, name)
}

// bruteForce returns the subscriptions in subs that match name, sorted.
func bruteForce(subs map[sub]bool, name string) []sub {
	var want []sub
	for s := range subs {
		if subMatch(s.filter, name) {
			want = append(want, s)
		}
	}
	slices.SortFunc(want, cmpSub)
	return want
}

// nodes counts the nodes of tr below the root, to show that Remove prunes.
func nodes[V any](tr *Tree[V]) int {
	tr.mu.RLock()
	defer tr.mu.RUnlock()
	var count func(n *node[V]) int
	count = func(n *node[V]) int {
		c := 0
		for _, ch := range n.children {
			c += 1 + count(ch)
		}
		for _, ch := range []*node[V]{n.plus, n.hash} {
			if ch != nil {
				c += 1 + count(ch)
			}
		}
		return c
	}
	return count(&tr.root)
}

func TestTreeSpecExamples(t *testing.T) {
	// Every filter of matchCases subscribed by one client; every name published. The
	// tree must visit exactly the filters Match accepts.
	var tr Tree[string]
	subs := map[sub]bool{}
	for _, tt := range matchCases {
		s := sub{tt.filter, "c1"}
		if !subs[s] {
			subs[s] = true
			tr.Add(s.filter, s.key, s.filter+"|"+s.key)
		}
	}
	for _, tt := range matchCases {
		got := collect(t, &tr, tt.name)
		want := bruteForce(subs, tt.name)
		if !slices.Equal(got, want) {
			t.Errorf("Tree.Match(%q) = %v, want %v", tt.name, got, want)
		}
		if found := slices.Contains(got, sub{tt.filter, "c1"}); found != tt.want && !strings.HasPrefix(tt.filter, SharePrefix) {
			t.Errorf("Tree.Match(%q) visited %q: %v, want %v", tt.name, tt.filter, found, tt.want)
		}
	}
}

func TestTreeOverlapSharedAndDollar(t *testing.T) {
	var tr Tree[string]
	add := func(filter, key string) {
		t.Helper()
		if tr.Add(filter, key, filter+"|"+key) {
			t.Fatalf("Add(%q, %q) reported a replacement on first add", filter, key)
		}
	}
	// One client, overlapping filters: each is delivered separately.
	add("sport/tennis/+", "c1")
	add("sport/#", "c1")
	add("#", "c1")
	add("sport/tennis/player1", "c1")
	// Another client on one of the same filters.
	add("sport/#", "c2")
	// Shared subscriptions, two groups, two members in one.
	add("$share/g1/sport/tennis/+", "c3")
	add("$share/g1/sport/tennis/+", "c4")
	add("$share/g2/sport/tennis/+", "c3")
	add("$share/g1/#", "c5")
	// $SYS.
	add("$SYS/#", "mon")
	add("+/monitor/Clients", "mon")
	// A malformed shared filter is stored and matched literally.
	add("$share/g/a+", "odd")

	if got, want := tr.Len(), 12; got != want {
		t.Errorf("Len() = %d, want %d", got, want)
	}
	tests := []struct {
		name string
		want []sub
	}{
		{"sport/tennis/player1", []sub{
			{"#", "c1"},
			{"$share/g1/#", "c5"},
			{"$share/g1/sport/tennis/+", "c3"},
			{"$share/g1/sport/tennis/+", "c4"},
			{"$share/g2/sport/tennis/+", "c3"},
			{"sport/#", "c1"},
			{"sport/#", "c2"},
			{"sport/tennis/+", "c1"},
			{"sport/tennis/player1", "c1"},
		}},
		{"sport", []sub{{"#", "c1"}, {"$share/g1/#", "c5"}, {"sport/#", "c1"}, {"sport/#", "c2"}}},
		{"$SYS/monitor/Clients", []sub{{"$SYS/#", "mon"}}},
		{"$share/g1/sport/tennis/x", []sub{}}, // shared filters do not match on their own string
		{"$share/g/a+", []sub{{"$share/g/a+", "odd"}}},
		{"x/monitor/Clients", []sub{{"#", "c1"}, {"$share/g1/#", "c5"}, {"+/monitor/Clients", "mon"}}},
	}
	for _, tt := range tests {
		got := collect(t, &tr, tt.name)
		if len(got) == 0 {
			got = []sub{}
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("Match(%q) =\n  %v\nwant\n  %v", tt.name, got, tt.want)
		}
	}
}

func TestTreeAddReplaceRemove(t *testing.T) {
	var tr Tree[int]
	if tr.Add("a/+", "c1", 1) {
		t.Error("first Add reported replaced")
	}
	if !tr.Add("a/+", "c1", 2) {
		t.Error("second Add of the same (filter, key) did not report replaced")
	}
	if got := tr.Len(); got != 1 {
		t.Errorf("Len() after replace = %d, want 1", got)
	}
	var seen []int
	tr.Match("a/b", func(_, _ string, v int) { seen = append(seen, v) })
	if !slices.Equal(seen, []int{2}) {
		t.Errorf("Match after replace saw values %v, want [2]", seen)
	}
	if tr.Remove("a/+", "c2") {
		t.Error("Remove of an absent key reported true")
	}
	if tr.Remove("a/#", "c1") {
		t.Error("Remove of an absent filter reported true")
	}
	if tr.Remove("a/+/b", "c1") {
		t.Error("Remove of a filter below an existing one reported true")
	}
	if !tr.Remove("a/+", "c1") {
		t.Error("Remove of a present subscription reported false")
	}
	if tr.Remove("a/+", "c1") {
		t.Error("second Remove reported true")
	}
	if got := tr.Len(); got != 0 {
		t.Errorf("Len() after Remove = %d, want 0", got)
	}
	if got := nodes(&tr); got != 0 {
		t.Errorf("%d nodes left after removing everything, want 0", got)
	}
}

func TestTreePrunesOnlyEmptyNodes(t *testing.T) {
	var tr Tree[int]
	tr.Add("a/b/c", "k", 1)
	tr.Add("a/b", "k", 2)
	tr.Add("a/b/#", "k", 3)
	tr.Add("a/+/c", "k", 4)
	tr.Add("$share/g/a/b", "k", 5)
	before := nodes(&tr) // a, a/b, a/b/c, a/b/#, a/+, a/+/c
	if before != 6 {
		t.Fatalf("nodes = %d, want 6", before)
	}
	tr.Remove("a/b/c", "k")
	if got := nodes(&tr); got != 5 {
		t.Errorf("after removing a/b/c: nodes = %d, want 5", got)
	}
	tr.Remove("a/b", "k") // a/b still holds the shared one and has child #
	if got := nodes(&tr); got != 5 {
		t.Errorf("after removing a/b: nodes = %d, want 5", got)
	}
	var got []int
	tr.Match("a/b", func(_, _ string, v int) { got = append(got, v) })
	slices.Sort(got)
	if !slices.Equal(got, []int{3, 5}) {
		t.Errorf("Match(a/b) values = %v, want [3 5]", got)
	}
	tr.Remove("$share/g/a/b", "k")
	tr.Remove("a/b/#", "k")
	if got := nodes(&tr); got != 3 {
		t.Errorf("after removing a/b/# and the shared one: nodes = %d, want 3 (a, a/+, a/+/c)", got)
	}
	tr.Remove("a/+/c", "k")
	if got := nodes(&tr); got != 0 {
		t.Errorf("after removing everything: nodes = %d, want 0", got)
	}
}

// randomLevels draws topic levels from a small alphabet so that random filters and
// names collide often: wildcards, empty levels, '$' levels, the share prefix.
var randomLevels = []string{"a", "b", "", "$SYS", "$x", "+", "#", "$share", "g", "a+", "c#"}

func randomTopic(r *rand.Rand, wildcards bool) string {
	n := 1 + r.IntN(4)
	levels := make([]string, n)
	for i := range levels {
		for {
			l := randomLevels[r.IntN(len(randomLevels))]
			if wildcards || !strings.ContainsAny(l, "+#") {
				levels[i] = l
				break
			}
		}
	}
	return strings.Join(levels, "/")
}

// TestTreeMatchesBruteForce is the property test behind FuzzTreeMatch, at a size that
// runs in every test run: random subscriptions, random names, random churn, and the
// tree must always visit exactly what checking every filter with Match visits.
func TestTreeMatchesBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var tr Tree[string]
	subs := map[sub]bool{}
	keys := []string{"c1", "c2", "c3"}
	names := make([]string, 300)
	for i := range names {
		names[i] = randomTopic(r, false)
	}
	check := func(round int) {
		t.Helper()
		if tr.Len() != len(subs) {
			t.Fatalf("round %d: Len() = %d, want %d", round, tr.Len(), len(subs))
		}
		for _, name := range names {
			got := collect(t, &tr, name)
			want := bruteForce(subs, name)
			if !slices.Equal(got, want) {
				t.Fatalf("round %d: Match(%q) =\n  %v\nwant\n  %v", round, name, got, want)
			}
		}
	}
	for round := range 20 {
		for range 150 {
			var filter string
			if r.IntN(5) == 0 {
				filter = "$share/" + randomLevels[r.IntN(len(randomLevels))] + "/" + randomTopic(r, true)
			} else {
				filter = randomTopic(r, true)
			}
			s := sub{filter, keys[r.IntN(len(keys))]}
			if replaced := tr.Add(s.filter, s.key, s.filter+"|"+s.key); replaced != subs[s] {
				t.Fatalf("Add(%q, %q) replaced = %v, want %v", s.filter, s.key, replaced, subs[s])
			}
			subs[s] = true
		}
		check(round)
		// Remove about half, and a few that were never there.
		for s := range subs {
			if r.IntN(2) == 0 {
				if !tr.Remove(s.filter, s.key) {
					t.Fatalf("Remove(%q, %q) = false for a present subscription", s.filter, s.key)
				}
				delete(subs, s)
			}
		}
		for range 20 {
			s := sub{randomTopic(r, true), "absent"}
			if tr.Remove(s.filter, s.key) {
				t.Fatalf("Remove(%q, %q) = true for an absent subscription", s.filter, s.key)
			}
		}
		check(round)
	}
	for s := range subs {
		tr.Remove(s.filter, s.key)
	}
	if tr.Len() != 0 || nodes(&tr) != 0 {
		t.Errorf("after removing everything: Len() = %d, nodes = %d, want 0 and 0", tr.Len(), nodes(&tr))
	}
}

func TestTreeMatchDoesNotAllocate(t *testing.T) {
	tr := benchTree(1000)
	var visited int
	fn := func(_, _ string, _ int) { visited++ }
	allocs := testing.AllocsPerRun(100, func() {
		tr.Match("site/7/device/107/temp", fn)
		tr.Match("$SYS/broker/uptime", fn)
	})
	if allocs != 0 {
		t.Errorf("Tree.Match allocates %v times per run, want 0", allocs)
	}
	if visited == 0 {
		t.Error("Tree.Match visited nothing; the allocation check measured no work")
	}
}

func TestTreeConcurrentReadersDoNotBlockEachOther(t *testing.T) {
	var tr Tree[int]
	tr.Add("a/#", "k", 1)
	inFirst, inSecond := make(chan struct{}), make(chan struct{})
	firstSawSecond := make(chan bool, 1)
	go func() {
		tr.Match("a/b", func(_, _ string, _ int) {
			close(inFirst)
			// Hold the read lock until a second Match is inside its callback too. With
			// an exclusive lock that cannot happen and the deadline fails the test.
			select {
			case <-inSecond:
				firstSawSecond <- true
			case <-time.After(10 * time.Second):
				firstSawSecond <- false
			}
		})
	}()
	<-inFirst
	tr.Match("a/c", func(_, _ string, _ int) { close(inSecond) })
	if !<-firstSawSecond {
		t.Fatal("a second Match could not run while the first was inside its callback")
	}
}

func TestTreeConcurrentAddRemoveMatch(t *testing.T) {
	// Writers churn their own subscriptions while readers match; -race checks the
	// locking, and the end state must be exactly the subscriptions left behind.
	var tr Tree[string]
	const writers, perWriter = 4, 300
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprintf("w%d", w)
			for i := range perWriter {
				filter := fmt.Sprintf("s/%d/+/#", i%17)
				tr.Add(filter, key, filter+"|"+key)
				if i%2 == 1 {
					tr.Remove(filter, key)
				}
			}
		}()
	}
	var readers sync.WaitGroup
	for range 2 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				tr.Match("s/3/x/y", func(filter, key, v string) {
					if v != filter+"|"+key {
						t.Errorf("visited (%q, %q) with value %q", filter, key, v)
					}
				})
				tr.Len()
			}
		}()
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	// Each writer adds i%17 for every i and removes the odd i; with 300 adds every
	// filter s/0..16 was added on an even i at some point, and the last operation on it
	// decides whether it stays.
	want := 0
	for f := range 17 {
		last := -1
		for i := range perWriter {
			if i%17 == f {
				last = i
			}
		}
		if last%2 == 0 {
			want += writers
		}
	}
	if got := tr.Len(); got != want {
		t.Errorf("Len() = %d, want %d", got, want)
	}
}
