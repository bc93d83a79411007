package shutdown

import (
	"testing"
	"time"
)

// The end game is kept at the end of a drain's time for the connections
// left, each counted once, and never takes more than three quarters of it:
// with Fx's 2 s stop (a 1.6 s drain) and thousands of streams the drain
// still waits more than a second, and connections that never sent a
// request (Open alone) do not take its time away below a quarter.
func TestEndGameReserve(t *testing.T) {
	for _, tc := range []struct {
		name string
		left time.Duration
		st   Stats
		want time.Duration
	}{
		{"nothing open", 1600 * time.Millisecond, Stats{}, 50 * time.Millisecond},
		{"2,000 streams", 1600 * time.Millisecond, Stats{Active: 2000, Open: 2000}, 250 * time.Millisecond},
		{"4,000 streams", 1600 * time.Millisecond, Stats{Active: 4000, Open: 4000}, 450 * time.Millisecond},
		{"30,000 streams, a 15 s stop", 12 * time.Second, Stats{Active: 30000, Open: 30000}, 3050 * time.Millisecond},
		{"30,000 streams, a 2 s stop", 1600 * time.Millisecond, Stats{Active: 30000, Open: 30000}, 1200 * time.Millisecond},
		{"10,000 idle connections", 2400 * time.Millisecond, Stats{Open: 10000}, 1050 * time.Millisecond},
		{"100,000 idle connections", 2400 * time.Millisecond, Stats{Open: 100000}, 1800 * time.Millisecond},
		{"2,000 streams without the ConnState hook", 1600 * time.Millisecond, Stats{Active: 2000}, 250 * time.Millisecond},
		{"1,000 websockets whose handlers run", time.Second, Stats{Active: 1000, Hijacked: 1000}, 150 * time.Millisecond},
		{"1,000 websockets of the chat shape", time.Second, Stats{Hijacked: 1000}, 150 * time.Millisecond},
		{"websockets and streams", 10 * time.Second, Stats{Active: 3000, Hijacked: 1000, Open: 2000}, 350 * time.Millisecond},
		{"no time left", 0, Stats{Active: 10}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := endGameReserve(tc.left, tc.st)
			if got != tc.want {
				t.Fatalf("endGameReserve(%v, %+v) = %v, want %v", tc.left, tc.st, got, tc.want)
			}
			if wait := tc.left - got; wait < tc.left/4 {
				t.Fatalf("the drain waits %v of %v, less than a quarter", wait, tc.left)
			}
		})
	}
}
