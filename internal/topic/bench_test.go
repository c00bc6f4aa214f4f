package topic

import (
	"fmt"
	"testing"
)

func BenchmarkMatch(b *testing.B) {
	cases := []struct{ label, filter, name string }{
		{"literal", "site/7/device/107/temp", "site/7/device/107/temp"},
		{"plus", "site/+/device/+/temp", "site/7/device/107/temp"},
		{"hash", "site/7/#", "site/7/device/107/temp"},
		{"miss", "site/8/device/+/temp", "site/7/device/107/temp"},
		{"dollar", "#", "$SYS/broker/uptime"},
	}
	for _, c := range cases {
		b.Run(c.label, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Match(c.filter, c.name)
			}
		})
	}
}

// benchTree builds a tree shaped like a gateway's broker: n subscriptions over 50 sites
// and n/10 devices, 2000 clients; 60% exact device topics, 10% each per-device "+",
// per-site "#", shared per-site subscriptions in 5 groups and per-device "#" across
// sites; plus one "#" and one "$SYS/#". Clients repeat (key i%2000), so some of
// these collapse into one subscription; the benchmarks report how many each name
// visits as subs/op.
func benchTree(n int) *Tree[int] {
	var tr Tree[int]
	for i := 0; tr.Len() < n; i++ {
		dev := i / 10
		site := dev % 50
		var filter string
		switch i % 10 {
		case 0:
			filter = fmt.Sprintf("site/%d/device/%d/+", site, dev)
		case 1:
			filter = fmt.Sprintf("site/%d/#", site)
		case 2:
			filter = fmt.Sprintf("$share/g%d/site/%d/device/+/temp", (dev/50)%5, site)
		case 3:
			filter = fmt.Sprintf("site/+/device/%d/#", dev)
		default:
			filter = fmt.Sprintf("site/%d/device/%d/temp", site, dev)
		}
		tr.Add(filter, fmt.Sprintf("client-%d", i%2000), i)
	}
	tr.Add("#", "logger", -1)
	tr.Add("$SYS/#", "monitor", -2)
	return &tr
}

func BenchmarkTreeMatch(b *testing.B) {
	tr := benchTree(10000)
	for _, name := range []string{"site/7/device/107/temp", "site/7/device/99999/other", "$SYS/broker/uptime"} {
		b.Run(name, func(b *testing.B) {
			visited := 0
			fn := func(_, _ string, _ int) { visited++ }
			b.ReportAllocs()
			for b.Loop() {
				tr.Match(name, fn)
			}
			b.ReportMetric(float64(visited)/float64(b.N), "subs/op")
		})
	}
}

func BenchmarkTreeMatchParallel(b *testing.B) {
	tr := benchTree(10000)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		fn := func(_, _ string, _ int) {}
		for pb.Next() {
			tr.Match("site/7/device/107/temp", fn)
		}
	})
}

func BenchmarkTreeAddRemove(b *testing.B) {
	tr := benchTree(10000)
	b.ReportAllocs()
	for b.Loop() {
		tr.Add("site/7/device/new/+", "client-x", 1)
		tr.Remove("site/7/device/new/+", "client-x")
	}
}
