package shutdown_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsshutdown/wsshutdown/internal/thirdparty/wstest"
	"github.com/wsshutdown/wsshutdown/shutdown"
)

// rollingResult is what one rolling restart measured.
type rollingResult struct {
	moved       int           // clients of the drained instance
	clean       int           // of those, clients that saw 1001
	signalPeak  int           // most drain signals of the drained instance's handlers that fired within any 100 ms
	peak        int           // most reconnects arriving at the survivor within any 100 ms
	reconnected time.Duration // from the drain's start until every moved client was connected again
}

// rollingRestart runs two instances on loopback, each with its own
// Shutdowner made with opts, and n websocket clients spread across them that
// reconnect to the other instance as soon as theirs says goodbye. It drains
// the first instance and measures when its handlers' drain signals fire,
// and the reconnects at the second.
func rollingRestart(tb testing.TB, n int, opts ...shutdown.Option) rollingResult {
	tb.Helper()
	type instance struct {
		s  *shutdown.Shutdowner
		ts *httptest.Server

		mu        sync.Mutex
		arrivals  []time.Time
		signals   []time.Time
		recorders sync.WaitGroup // the goroutines that append to signals
	}
	newInstance := func() *instance {
		in := &instance{s: shutdown.New(opts...)}
		ws := wstest.Server(make(chan struct{}, 2*n))
		in.ts = httptest.NewServer(in.s.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			in.mu.Lock()
			in.arrivals = append(in.arrivals, time.Now())
			in.mu.Unlock()
			in.recorders.Go(func() { // ends when the signal fires: at the latest, when the instance drains
				<-shutdown.Draining(r.Context())
				in.mu.Lock()
				in.signals = append(in.signals, time.Now())
				in.mu.Unlock()
			})
			ws.ServeHTTP(w, r)
		})))
		return in
	}
	a, b := newInstance(), newInstance()
	defer a.ts.Close()
	defer b.ts.Close()

	// A client of a reads until a's goodbye, then moves to b and stays.
	type moved struct {
		clean bool
		err   error
	}
	movedc := make(chan moved, n)
	var clients sync.WaitGroup
	dialed := make(chan error, n)
	dialer := &websocket.Dialer{HandshakeTimeout: 30 * time.Second}
	dial := func(url string) (*websocket.Conn, error) {
		c, resp, err := dialer.Dial(url, nil)
		if err == nil {
			resp.Body.Close()
		}
		return c, err
	}
	sem := make(chan struct{}, 32) // dials at once: the listen backlog is finite
	for i := range n {
		onA := i%2 == 0
		clients.Go(func() {
			sem <- struct{}{}
			url := wsURL(b.ts)
			if onA {
				url = wsURL(a.ts)
			}
			c, err := dial(url)
			<-sem
			dialed <- err
			if err != nil {
				return
			}
			g := <-wstest.Read(c)
			if !onA {
				return
			}
			c2, err := dial(wsURL(b.ts))
			movedc <- moved{clean: g.Code == websocket.CloseGoingAway, err: err}
			if err == nil {
				<-wstest.Read(c2)
			}
		})
	}
	defer clients.Wait()
	defer func() { // on a failure, end the clients for clients.Wait
		expired, cancel := context.WithCancel(context.Background())
		cancel()
		_ = a.s.Shutdown(expired)
		_ = b.s.Shutdown(expired)
	}()
	for range n {
		if err := <-dialed; err != nil {
			tb.Fatalf("dial: %v", err)
		}
	}
	b.mu.Lock()
	b.arrivals = b.arrivals[:0]
	b.mu.Unlock()

	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := a.s.ShutdownWithServer(ctx, a.ts.Config); err != nil {
		tb.Fatalf("draining the first instance: %v", err)
	}
	res := rollingResult{moved: (n + 1) / 2}
	for range res.moved {
		m := <-movedc
		if m.err != nil {
			tb.Fatalf("reconnect: %v", m.err)
		}
		if m.clean {
			res.clean++
		}
	}
	b.mu.Lock()
	arrivals := slices.Clone(b.arrivals) // in order: appended as they came
	b.mu.Unlock()
	a.recorders.Wait()
	a.mu.Lock()
	res.signalPeak = wstest.PeakWithin(a.signals, 100*time.Millisecond) // in order too
	a.mu.Unlock()
	if len(arrivals) > 0 {
		res.reconnected = arrivals[len(arrivals)-1].Sub(start)
	}
	res.peak = wstest.PeakWithin(arrivals, 100*time.Millisecond)
	// Stop the survivor: its clients, the moved ones included, end.
	if err := b.s.ShutdownWithServer(ctx, b.ts.Config); err != nil {
		tb.Fatalf("draining the second instance: %v", err)
	}
	return res
}

// compareRollingRestarts runs a rolling restart without and with a stagger
// window of one second and checks what a fleet needs: every moved client saw
// a clean close, and the stagger cut the peak of drain signals to a quarter
// at most. The signals, which the library times, rather than the reconnects,
// which also wait on the clients' dials and the survivor's accepts: a stalled
// machine bunches those up by itself.
func compareRollingRestarts(tb testing.TB, n int) (plain, staggered rollingResult) {
	tb.Helper()
	plain = rollingRestart(tb, n)
	staggered = rollingRestart(tb, n, shutdown.WithStagger(time.Second))
	for _, r := range []rollingResult{plain, staggered} {
		if r.clean != r.moved {
			tb.Errorf("%d of %d moved clients saw a clean close", r.clean, r.moved)
		}
	}
	if 4*staggered.signalPeak > plain.signalPeak {
		tb.Errorf("peak drain signals per 100 ms: %d with a 1 s stagger, %d without: want at most a quarter",
			staggered.signalPeak, plain.signalPeak)
	}
	return plain, staggered
}

// A small rolling restart, in every test run: 200 clients move, so that
// with the stagger the even share is 20 signals per 100 ms against a bound
// of 50, which only a stall of 300 ms could cross.
func TestRollingRestart(t *testing.T) {
	plain, staggered := compareRollingRestarts(t, 400)
	for _, r := range []struct {
		name string
		rollingResult
	}{{"no stagger", plain}, {"1 s stagger", staggered}} {
		t.Logf("%s: %d of %d clean, peak %d signals and %d reconnects per 100 ms, all back after %v",
			r.name, r.clean, r.moved, r.signalPeak, r.peak, r.reconnected)
	}
}

// BenchmarkRollingRestart measures a rolling restart of 2,000 websocket
// clients, half of which move, without and with a one-second stagger window.
// Run it with -benchtime 1x: each run is one restart of each kind.
func BenchmarkRollingRestart(b *testing.B) {
	const n = 2000
	for range b.N {
		plain, staggered := compareRollingRestarts(b, n)
		b.ReportMetric(float64(plain.clean), "clean-closes")
		b.ReportMetric(float64(plain.signalPeak), "signal-peak/100ms")
		b.ReportMetric(float64(staggered.signalPeak), "stagger-signal-peak/100ms")
		b.ReportMetric(float64(plain.peak), "peak/100ms")
		b.ReportMetric(float64(plain.reconnected.Milliseconds()), "reconnect-ms")
		b.ReportMetric(float64(staggered.clean), "stagger-clean-closes")
		b.ReportMetric(float64(staggered.peak), "stagger-peak/100ms")
		b.ReportMetric(float64(staggered.reconnected.Milliseconds()), "stagger-reconnect-ms")
	}
}

func TestPeakWithin(t *testing.T) {
	at := func(ms ...int) []time.Time {
		var ts []time.Time
		for _, m := range ms {
			ts = append(ts, time.Unix(0, 0).Add(time.Duration(m)*time.Millisecond))
		}
		return ts
	}
	for _, tc := range []struct {
		ms   []int
		want int
	}{
		{nil, 0},
		{[]int{5}, 1},
		{[]int{0, 50, 99, 100, 250}, 3},
		{[]int{90, 95, 105, 110, 300}, 4}, // across a bucket's edge
		{[]int{0, 100, 200}, 1},
	} {
		if got := wstest.PeakWithin(at(tc.ms...), 100*time.Millisecond); got != tc.want {
			t.Errorf("wstest.PeakWithin(%v ms) = %d, want %d", tc.ms, got, tc.want)
		}
	}
}
