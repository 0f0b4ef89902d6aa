package topic

import (
	"strconv"
	"testing"
)

// Figures: go test -run x -bench . -benchmem ./core/topic/

const benchSubs = 100_000

// benchTrie holds 100,000 distinct filters devices/<i>/+/temp, one client
// each, plus a few wildcard and shared subscriptions that also match
// benchName.
func benchTrie(tb testing.TB) *Trie {
	tb.Helper()
	t := NewTrie()
	for i := range benchSubs {
		t.Subscribe(Subscription{ClientID: "dev" + strconv.Itoa(i), Filter: "devices/" + strconv.Itoa(i) + "/+/temp", QoS: 1})
	}
	for _, f := range []string{"devices/#", "devices/+/+/temp", "+/+/+/temp", "devices/+/room/#", "#", "$SYS/#", "devices/+/other"} {
		t.Subscribe(Subscription{ClientID: "wild", Filter: f})
	}
	for i := range 3 {
		t.Subscribe(Subscription{ClientID: "worker" + strconv.Itoa(i), Group: "workers", Filter: "devices/+/+/temp"})
	}
	return t
}

const benchName = "devices/4242/room/temp"

func TestTrieMatchDoesNotAllocate(t *testing.T) {
	tr := benchTrie(t)
	var m Matches
	tr.Match(benchName, &m) // warm
	// 1 exact + 5 wildcard subscriptions, 1 group.
	if len(m.Subs) != 6 || len(m.Groups) != 1 {
		t.Fatalf("matched %d subs and %d groups, want 6 and 1", len(m.Subs), len(m.Groups))
	}
	if n := testing.AllocsPerRun(100, func() { tr.Match(benchName, &m) }); n != 0 {
		t.Fatalf("Trie.Match allocs = %v, want 0", n)
	}
	g := m.Groups[0]
	if n := testing.AllocsPerRun(100, func() { g.Pick(nil) }); n != 0 {
		t.Fatalf("Group.Pick allocs = %v, want 0", n)
	}
}

func BenchmarkTrieMatch(b *testing.B) {
	t := benchTrie(b)
	var m Matches
	t.Match(benchName, &m)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		t.Match(benchName, &m)
	}
}

func BenchmarkTrieMatchMiss(b *testing.B) {
	t := benchTrie(b)
	var m Matches
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		t.Match("nothing/here/at/all", &m)
	}
}

func BenchmarkTrieMatchParallel(b *testing.B) {
	t := benchTrie(b)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var m Matches
		names := []string{benchName, "devices/17/room/temp", "devices/99999/x/temp", "devices/5/room/humidity"}
		i := 0
		for pb.Next() {
			t.Match(names[i&3], &m)
			i++
		}
	})
}

// BenchmarkTrieMatchParallelWithWriter matches while one goroutine keeps
// subscribing and unsubscribing: readers take no lock, so they should barely
// notice.
func BenchmarkTrieMatchParallelWithWriter(b *testing.B) {
	t := benchTrie(b)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			f := "devices/" + strconv.Itoa(i%1000) + "/+/temp"
			t.Subscribe(Subscription{ClientID: "churn", Filter: f})
			t.Unsubscribe("churn", "", f)
		}
	}()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var m Matches
		for pb.Next() {
			t.Match(benchName, &m)
		}
	})
	b.StopTimer()
	close(stop)
	<-done
}

// BenchmarkTrieMatchFanOut matches a name with 100,000 subscribers on one
// filter: the cost is copying 100,000 pointers into Matches.
func BenchmarkTrieMatchFanOut(b *testing.B) {
	t := NewTrie()
	for i := range benchSubs {
		t.Subscribe(Subscription{ClientID: "c" + strconv.Itoa(i), Filter: "fan/out"})
	}
	var m Matches
	t.Match("fan/out", &m)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		t.Match("fan/out", &m)
	}
}

func BenchmarkTrieSubscribe(b *testing.B) {
	filters := make([]string, b.N)
	for i := range filters {
		filters[i] = "devices/" + strconv.Itoa(i) + "/+/temp"
	}
	t := NewTrie()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		t.Subscribe(Subscription{ClientID: "c", Filter: filters[i]})
	}
}

func BenchmarkTrieSubscribeFanOut(b *testing.B) {
	clients := make([]string, b.N)
	for i := range clients {
		clients[i] = "c" + strconv.Itoa(i)
	}
	t := NewTrie()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		t.Subscribe(Subscription{ClientID: clients[i], Filter: "fan/out"})
	}
}

func BenchmarkTrieSubscribeUnsubscribe(b *testing.B) {
	t := benchTrie(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		f := "devices/" + strconv.Itoa(i%benchSubs) + "/+/temp"
		t.Unsubscribe("dev"+strconv.Itoa(i%benchSubs), "", f)
		t.Subscribe(Subscription{ClientID: "dev" + strconv.Itoa(i%benchSubs), Filter: f})
	}
}

// BenchmarkTrieBuild100k times building whole tries of 100,000 subscriptions
// (ns/op is the time for all 100,000) in the three shapes that matter.
func BenchmarkTrieBuild100k(b *testing.B) {
	ids := make([]string, benchSubs)
	distinct := make([]string, benchSubs)
	children := make([]string, benchSubs)
	for i := range ids {
		ids[i] = "c" + strconv.Itoa(i)
		distinct[i] = "devices/" + ids[i] + "/+/temp"
		children[i] = "devices/" + ids[i] + "/#"
	}
	b.Run("distinct-filters", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			t := NewTrie()
			for i := range benchSubs {
				t.Subscribe(Subscription{ClientID: ids[i], Filter: distinct[i]})
			}
		}
	})
	b.Run("one-filter-fan-out", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			t := NewTrie()
			for i := range benchSubs {
				t.Subscribe(Subscription{ClientID: ids[i], Filter: "fan/out"})
			}
		}
	})
	b.Run("one-node-children", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			t := NewTrie()
			for i := range benchSubs {
				t.Subscribe(Subscription{ClientID: "d", Filter: children[i]})
			}
		}
	})
	b.Run("fan-out-teardown", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			b.StopTimer()
			t := NewTrie()
			for i := range benchSubs {
				t.Subscribe(Subscription{ClientID: ids[i], Filter: "fan/out"})
			}
			b.StartTimer()
			for i := range benchSubs {
				t.Unsubscribe(ids[i], "", "fan/out")
			}
		}
	})
}

func BenchmarkGroupPick(b *testing.B) {
	t := NewTrie()
	for i := range 8 {
		t.Subscribe(Subscription{ClientID: "w" + strconv.Itoa(i), Group: "g", Filter: "jobs/#"})
	}
	var m Matches
	t.Match("jobs/1", &m)
	g := m.Groups[0]
	online := func(s *Subscription) bool { return s.ClientID != "w3" }
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		g.Pick(online)
	}
}

func BenchmarkValidName(b *testing.B) {
	b.ReportAllocs()
	for range b.N {
		_ = ValidName(benchName)
	}
}

func BenchmarkValidFilter(b *testing.B) {
	b.ReportAllocs()
	for range b.N {
		_ = ValidFilter("devices/+/room/#")
	}
}

func BenchmarkMatchFunc(b *testing.B) {
	b.ReportAllocs()
	for range b.N {
		Match("devices/+/room/#", benchName)
	}
}

func benchRetained() *Retained[int] {
	r := NewRetained[int]()
	for i := range benchSubs {
		r.Set("devices/"+strconv.Itoa(i)+"/temp", i)
	}
	return r
}

func BenchmarkRetainedMatchOne(b *testing.B) {
	r := benchRetained()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		r.Match("devices/4242/+", func(string, int) bool { return true })
	}
}

func BenchmarkRetainedMatchAll(b *testing.B) {
	r := benchRetained()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		r.Match("devices/+/temp", func(string, int) bool { return true })
	}
}

func BenchmarkRetainedSet(b *testing.B) {
	r := benchRetained()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		r.Set(benchName, i)
	}
}
