package shutdown

import (
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
)

// The tracked connections, a list threaded through the conns in each
// shard: every conn added is tracked until dropped, dropping it twice
// reports true once, and tracked returns exactly the conns still in,
// whatever the order of the drops, under concurrent drops too.
func TestTrackedSet(t *testing.T) {
	var s Shutdowner
	const n = 1000
	conns := make([]*conn, n)
	for i := range conns {
		conns[i] = &conn{s: &s}
		s.addConn(conns[i])
	}
	in := make(map[*conn]bool, n)
	for _, c := range conns {
		in[c] = true
	}
	order := rand.Perm(n)
	var wg sync.WaitGroup
	drops := make([]int, n) // how many of two drops of each reported true
	for k, i := range order[:n/2] {
		c := conns[i]
		delete(in, c)
		wg.Go(func() {
			for range 2 {
				if s.dropConn(c) {
					drops[k]++
				}
			}
		})
	}
	wg.Wait()
	for k := range n / 2 {
		if drops[k] != 1 {
			t.Fatalf("conn %d: %d of two drops reported it tracked, want 1", order[k], drops[k])
		}
	}
	got := s.tracked()
	if len(got) != len(in) {
		t.Fatalf("tracked() has %d conns, want %d", len(got), len(in))
	}
	for _, c := range got {
		if !in[c] || !s.open(c) {
			t.Fatalf("tracked() has a conn that was dropped")
		}
	}
	for _, i := range order[:n/2] {
		if s.open(conns[i]) {
			t.Fatalf("a dropped conn is open")
		}
	}
	for _, c := range got {
		s.dropConn(c)
	}
	if left := s.tracked(); len(left) != 0 || slices.ContainsFunc(conns, s.open) {
		t.Fatalf("%d conns tracked after every one was dropped", len(left))
	}
}
