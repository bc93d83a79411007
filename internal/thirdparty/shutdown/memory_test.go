package shutdown_test

import (
	"context"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsshutdown/wsshutdown/internal/thirdparty/wstest"
	"github.com/wsshutdown/wsshutdown/shutdown"
)

// heapPerConn returns the live heap, in bytes per connection, of n open
// gorilla websockets (server and client ends, in this process) served by a
// handler of the chat shape (handOff: it hands the connection to a goroutine
// and returns) or one that reads itself, with or without the middleware.
func heapPerConn(tb testing.TB, n int, wrapped, handOff bool) float64 {
	tb.Helper()
	connected := make(chan struct{}, n)
	var s shutdown.Shutdowner
	h := wstest.IgnoresDrain(connected, handOff)
	if wrapped {
		h = s.Middleware(h)
	}
	ts := httptest.NewServer(h)
	defer ts.Close()
	conns := make([]*websocket.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	before := liveHeap()
	for range n {
		c, resp, err := websocket.DefaultDialer.Dial(wsURL(ts), nil)
		if err != nil {
			tb.Fatal(err)
		}
		resp.Body.Close()
		conns = append(conns, c)
	}
	wstest.Receive(tb, connected, n)
	if handOff && wrapped {
		// The handlers return after connected: wait until none runs, so
		// that what is measured is what outlives them.
		for deadline := time.Now().Add(30 * time.Second); s.Stats().Active != 0; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				tb.Fatal("the handlers did not return")
			}
		}
	}
	per := float64(liveHeap()-before) / float64(n)
	if wrapped {
		for _, c := range conns {
			c.Close()
		}
		conns = nil
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			tb.Fatal(err)
		}
	}
	return per
}

// connMemory returns heapPerConn bare and wrapped, after a run of
// each that warms up what is allocated once (pools, caches), which would
// otherwise count against whichever runs first.
func connMemory(tb testing.TB, n int, handOff bool) (bare, wrapped float64) {
	tb.Helper()
	heapPerConn(tb, n, false, handOff)
	heapPerConn(tb, n, true, handOff)
	return heapPerConn(tb, n, false, handOff), heapPerConn(tb, n, true, handOff)
}

func liveHeap() int64 {
	runtime.GC()
	runtime.GC() // the finalizers' garbage too
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

var connShapes = []struct {
	name    string
	handOff bool
}{{"chat", true}, {"reads", false}}

// BenchmarkConnMemory reports the live heap per open websocket, bare and
// through the middleware, for a handler of the chat shape and one that
// reads itself, and the difference. Run it with -benchtime 1x.
func BenchmarkConnMemory(b *testing.B) {
	const n = 1000
	for _, shape := range connShapes {
		b.Run(shape.name, func(b *testing.B) {
			for range b.N {
				bare, wrapped := connMemory(b, n, shape.handOff)
				b.ReportMetric(bare, "B/conn-bare")
				b.ReportMetric(wrapped, "B/conn-wrapped")
				b.ReportMetric(wrapped-bare, "B/conn-over")
			}
		})
	}
}

// An open websocket costs at most 256 bytes more through the middleware,
// whether its handler returned (the request, its writer and net/http's
// response buffer are not kept for the connection) or still runs.
func TestConnMemory(t *testing.T) {
	if wstest.Race {
		t.Skip("the race detector changes what allocates")
	}
	const n = 500
	for _, shape := range connShapes {
		t.Run(shape.name, func(t *testing.T) {
			bare, wrapped := connMemory(t, n, shape.handOff)
			t.Logf("%.0f B per connection bare, %.0f wrapped", bare, wrapped)
			if over := wrapped - bare; over > 256 {
				t.Fatalf("the middleware costs %.0f B per open websocket, want at most 256", over)
			}
		})
	}
}
