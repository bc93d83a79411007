package shutdown_test

import (
	"bytes"
	"io"
	"math"
	"net"
	"net/http"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/wsshutdown/wsshutdown/internal/thirdparty/wstest"
	"github.com/wsshutdown/wsshutdown/shutdown"
)

// rawClient sends a plain GET over one keep-alive connection and reads
// its answer, allocating nothing itself, so that the allocations counted
// around a round trip are the server's: net/http's and the middleware's.
type rawClient struct {
	conn net.Conn
	buf  []byte // one whole answer: the response has a fixed length
}

var rawGet = []byte("GET / HTTP/1.1\r\nHost: bench\r\n\r\n")

// dialRaw connects to addr and learns the length of okHandler's answer,
// which is the same for every request (the Date header has a fixed width).
func dialRaw(tb testing.TB, addr string) *rawClient {
	tb.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	if _, err := conn.Write(rawGet); err != nil {
		tb.Fatal(err)
	}
	var got []byte
	buf := make([]byte, 4096)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			tb.Fatal(err)
		}
		got = append(got, buf[:n]...)
		if i := bytes.Index(got, []byte("\r\n\r\n")); i >= 0 && len(got) >= i+4+len(okBody) {
			if !bytes.HasPrefix(got, []byte("HTTP/1.1 200 OK\r\n")) || !bytes.HasSuffix(got, okBody) {
				tb.Fatalf("answer %q", got)
			}
			return &rawClient{conn: conn, buf: make([]byte, len(got))}
		}
	}
}

// roundTrip sends one request and reads its whole answer.
func (c *rawClient) roundTrip(tb testing.TB) {
	if _, err := c.conn.Write(rawGet); err != nil {
		tb.Fatal(err)
	}
	if _, err := io.ReadFull(c.conn, c.buf); err != nil {
		tb.Fatal(err)
	}
	if !bytes.HasSuffix(c.buf, okBody) {
		tb.Fatalf("answer %q", c.buf)
	}
}

// serveOn serves h from a real http.Server on loopback, with hook's
// ConnContext and ConnState if hook is set, and dials a raw client.
func serveOn(tb testing.TB, h http.Handler, hook *shutdown.Shutdowner) *rawClient {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: time.Minute}
	if hook != nil {
		srv.ConnContext, srv.ConnState = hook.ConnContext, hook.ConnState
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln) // ErrServerClosed, at Close
	}()
	tb.Cleanup(func() {
		srv.Close()
		<-done
	})
	return dialRaw(tb, ln.Addr().String())
}

// servedHandlers are the plain request's handlers compared through a real
// server: bare, the seed's WaitGroup, the middleware, and the middleware
// on a server with the Shutdowner's ConnContext and ConnState hooks.
func servedHandlers() []struct {
	name string
	h    http.Handler
	hook *shutdown.Shutdowner
} {
	var wg sync.WaitGroup
	plain, hooked := new(shutdown.Shutdowner), new(shutdown.Shutdowner)
	return []struct {
		name string
		h    http.Handler
		hook *shutdown.Shutdowner
	}{
		{"bare", okHandler, nil},
		{"waitgroup", waitGroupMiddleware(&wg, okHandler), nil},
		{"shutdown", plain.Middleware(okHandler), nil},
		{"shutdown-hooked", hooked.Middleware(okHandler), hooked},
	}
}

// BenchmarkMiddlewareServer serves the plain request (whose handler never
// calls Header) from a real http.Server on loopback to a client that
// allocates nothing, each wrapped handler alternating with a bare server
// in rounds, so that both see the same machine. It reports, for the
// wrapped one, ns and allocations per request and those over bare: what
// the middleware costs where net/http runs it.
func BenchmarkMiddlewareServer(b *testing.B) {
	handlers := servedHandlers()
	for _, hc := range handlers[1:] {
		b.Run(hc.name, func(b *testing.B) {
			bare := serveOn(b, okHandler, nil)
			wrapped := serveOn(b, hc.h, hc.hook)
			const rounds = 10
			perRound := max(b.N/rounds, 1)
			var bareCost, wrappedCost cost
			b.ResetTimer()
			for round := range rounds {
				if round%2 == 0 {
					bareCost.add(measure(b, bare, perRound))
					wrappedCost.add(measure(b, wrapped, perRound))
				} else {
					wrappedCost.add(measure(b, wrapped, perRound))
					bareCost.add(measure(b, bare, perRound))
				}
			}
			b.StopTimer()
			n := float64(rounds * perRound)
			b.ReportMetric(float64(wrappedCost.took.Nanoseconds())/n, "ns/req")
			b.ReportMetric(float64(wrappedCost.took-bareCost.took)/n, "ns-over-bare/req")
			b.ReportMetric(float64(wrappedCost.took)/float64(bareCost.took), "wrapped/bare")
			b.ReportMetric(float64(wrappedCost.allocs)/n, "allocs/req")
			b.ReportMetric((float64(wrappedCost.allocs)-float64(bareCost.allocs))/n, "allocs-over-bare/req")
			b.ReportMetric((float64(wrappedCost.bytes)-float64(bareCost.bytes))/n, "B-over-bare/req")
		})
	}
}

// cost is what a number of round trips took, in time and allocations.
type cost struct {
	took          time.Duration
	allocs, bytes uint64
}

func (c *cost) add(o cost) {
	c.took += o.took
	c.allocs += o.allocs
	c.bytes += o.bytes
}

// measure makes n round trips with c and returns their cost.
func measure(tb testing.TB, c *rawClient, n int) cost {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	for range n {
		c.roundTrip(tb)
	}
	took := time.Since(start)
	runtime.ReadMemStats(&after)
	return cost{took, after.Mallocs - before.Mallocs, after.TotalAlloc - before.TotalAlloc}
}

// The middleware's allocations where net/http runs it, over a bare
// server's, for a handler that never calls Header: none on a server with
// the Shutdowner's ConnContext and ConnState hooks, one without (the
// writer with its context and the request's copy). A change that makes
// net/http clone the header map, by calling Header before the handler
// does, or that adds an allocation, fails here.
func TestMiddlewareAllocationsOnServer(t *testing.T) {
	if wstest.Race {
		t.Skip("the race detector changes what allocates")
	}
	budget := map[string]float64{"waitgroup": 0, "shutdown": 1, "shutdown-hooked": 0}
	handlers := servedHandlers()
	// The count is the process's: what other goroutines allocate meanwhile
	// (an earlier test's, winding down) only adds, so the least of a few
	// measures is the server's.
	least := func(c *rawClient) float64 {
		n := math.Inf(1)
		for range 3 {
			n = min(n, testing.AllocsPerRun(500, func() { c.roundTrip(t) }))
		}
		return n
	}
	bareAllocs := least(serveOn(t, handlers[0].h, nil))
	t.Logf("bare: %v allocations per request", bareAllocs)
	for _, hc := range handlers[1:] {
		got := least(serveOn(t, hc.h, hc.hook))
		t.Logf("%s: %v allocations per request", hc.name, got)
		want := bareAllocs + budget[hc.name]
		if got > want {
			t.Errorf("%s: %v allocations per request, bare %v: want at most %v", hc.name, got, bareAllocs, want)
		}
	}
}

// BenchmarkServedRequest makes round trips to one server alone, bare or
// wrapped, for instruction counts: under callgrind, the difference in
// instructions between two -benchtime counts, over the difference in
// requests, is a request's cost with the start-up cancelled out. The
// README gives the command.
func BenchmarkServedRequest(b *testing.B) {
	for _, hc := range servedHandlers() {
		b.Run(hc.name, func(b *testing.B) {
			c := serveOn(b, hc.h, hc.hook)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				c.roundTrip(b)
			}
		})
	}
}
