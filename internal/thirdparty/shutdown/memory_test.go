package shutdown_test

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsshutdown/wsshutdown/internal/thirdparty/wstest"
	"github.com/wsshutdown/wsshutdown/shutdown"
)

// connShape is a websocket handler's shape, as users write them.
type connShape struct {
	name     string
	handOff  bool // the chat shape: it hands the connection to a goroutine and returns
	keepCtx  bool // the goroutine keeps the request's context, for Draining(ctx), as the README's chat recipe does
	buffered bool // gorilla's example Upgrader, with buffers of its own, rather than the zero one, which keeps net/http's

	most, mostHooked float64 // bytes over bare, without the hooks and with them
}

// serverQuit stands for the channel a server without the middleware
// closes to tell its handlers to say goodbye; it is never closed.
var serverQuit = make(chan struct{})

// handler returns a handler of shape that reads until the connection
// ends; connected receives once each connection is up.
func (shape connShape) handler(connected chan<- struct{}) http.Handler {
	upgrader := &websocket.Upgrader{}
	if shape.buffered {
		upgrader = &websocket.Upgrader{ReadBufferSize: 1024, WriteBufferSize: 1024}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		drain := shutdown.Draining(r.Context()) // asked, and ignored: no goodbye before the deadline
		c, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		_ = drain
		connected <- struct{}{}
		closed := make(chan struct{})
		read := func() {
			defer close(closed)
			defer c.Close()
			for {
				if _, _, err := c.NextReader(); err != nil {
					return
				}
			}
		}
		if shape.keepCtx {
			// gorilla's chat write pump, which looks at the request's
			// drain signal, and so keeps its context, at every turn.
			// Bare, it waits on a channel of the server's own instead,
			// as one that says goodbye without the middleware would: a
			// goroutine blocked on a channel holds a 96-byte record of
			// the runtime's for it (a sudog), which waiting on the nil
			// channel of Draining without the middleware would not, and
			// which is the application's wait, not the middleware's.
			ctx := r.Context()
			signal := func() <-chan struct{} {
				if d := shutdown.Draining(ctx); d != nil {
					return d
				}
				return serverQuit
			}
			go func() {
				ping := time.NewTicker(time.Hour)
				defer ping.Stop()
				for {
					select {
					case <-signal():
						<-closed // asked, and ignored
						return
					case <-closed:
						return
					case <-ping.C:
					}
				}
			}()
		}
		if shape.handOff {
			go read()
			return
		}
		read()
	})
}

// heapPerConn returns the live heap, in bytes per connection, of n open
// gorilla websockets (server and client ends, in this process) served by a
// handler of shape, with or without the middleware.
func heapPerConn(tb testing.TB, n int, wrapped, hooked bool, shape connShape) (heap, stack float64) {
	tb.Helper()
	connected := make(chan struct{}, n)
	var s shutdown.Shutdowner
	h := shape.handler(connected)
	if wrapped {
		h = s.Middleware(h)
	}
	ts := httptest.NewUnstartedServer(h)
	if wrapped && hooked {
		ts.Config.ConnContext, ts.Config.ConnState = s.ConnContext, s.ConnState
	}
	ts.Start()
	defer ts.Close()
	conns := make([]*websocket.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	before, beforeStacks := liveHeap()
	for range n {
		c, resp, err := websocket.DefaultDialer.Dial(wsURL(ts), nil)
		if err != nil {
			tb.Fatal(err)
		}
		resp.Body.Close()
		conns = append(conns, c)
	}
	wstest.Receive(tb, connected, n)
	if shape.handOff && wrapped {
		// The handlers return after connected: wait until none runs, so
		// that what is measured is what outlives them.
		for deadline := time.Now().Add(30 * time.Second); s.Stats().Active != 0; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				tb.Fatal("the handlers did not return")
			}
		}
	}
	after, afterStacks := liveHeap()
	heap, stack = float64(after-before)/float64(n), float64(afterStacks-beforeStacks)/float64(n)
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
	return heap, stack
}

// connMemoryStacks returns heapPerConn bare and wrapped, heap and stacks,
// after a run of each that warms up what is allocated once (pools,
// caches), which would otherwise count against whichever runs first.
func connMemoryStacks(tb testing.TB, n int, hooked bool, shape connShape) (bare, wrapped, bareStack, wrappedStack float64) {
	tb.Helper()
	heapPerConn(tb, n, false, false, shape)
	heapPerConn(tb, n, true, hooked, shape)
	bare, bareStack = heapPerConn(tb, n, false, false, shape)
	wrapped, wrappedStack = heapPerConn(tb, n, true, hooked, shape)
	return bare, wrapped, bareStack, wrappedStack
}

// liveHeap returns the bytes of live heap objects, and of goroutine
// stacks, which the heap's figure does not count: a goroutine a
// connection, or a handler's stack grown by what runs on it, costs there.
func liveHeap() (heap, stacks int64) {
	runtime.GC()
	runtime.GC() // the finalizers' garbage too
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc), int64(ms.StackInuse)
}

// connShapes are the shapes measured, with the most the middleware may
// add to an open websocket's heap in each, on a server without the
// ConnContext and ConnState hooks and with them: 256 bytes, what the
// tracking of the connection (a 96-byte conn, which holds its place in
// the Shutdowner's set), the 80-byte allocation of the request's writer and
// context, kept by the handler that runs or the goroutine that keeps the
// context, and, with the hooks, the connection's 32-byte slot come to.
// Before the writer let go of net/http's response when its hijacking
// handler returned, the kept context cost 2.1 and 10.4 KB; before the
// slot let go of its cancelCtx at the hijack, the hooks cost 600 to 850
// bytes more.
var connShapes = []connShape{
	{name: "reads", handOff: false, most: 256, mostHooked: 256},
	{name: "chat", handOff: true, most: 256, mostHooked: 256},
	{name: "chat-context", handOff: true, keepCtx: true, most: 256, mostHooked: 256},
	{name: "chat-context-buffered", handOff: true, keepCtx: true, buffered: true, most: 256, mostHooked: 256},
}

// BenchmarkConnMemory reports the live heap per open websocket, bare and
// through the middleware, for each shape, and the difference. Run it with
// -benchtime 1x.
func BenchmarkConnMemory(b *testing.B) {
	const n = 1000
	for _, hooked := range []bool{false, true} {
		for _, shape := range connShapes {
			b.Run(hookedName(hooked)+"/"+shape.name, func(b *testing.B) {
				for range b.N {
					bare, wrapped, bareStack, wrappedStack := connMemoryStacks(b, n, hooked, shape)
					b.ReportMetric(bare, "B/conn-bare")
					b.ReportMetric(wrapped, "B/conn-wrapped")
					b.ReportMetric(wrapped-bare, "B/conn-over")
					b.ReportMetric(wrappedStack-bareStack, "stack-B/conn-over")
				}
			})
		}
	}
}

// An open websocket costs at most 256 bytes more through the middleware,
// with the hooks or without, whether its handler returned (the request,
// its writer and net/http's response buffer are not kept for the
// connection), still runs, or a goroutine keeps the request's context.
// The handler that reads itself keeps its goroutine's stack, 4 KB bare:
// the middleware's path, to the hooks that net/http calls inside Hijack,
// must not double it.
//
// The measure is taken in a process of its own, this test binary run
// again for this test alone: in one that has run the other tests, what
// they left (goroutines winding down, timers, the runtime's own state)
// moved the figures by some 80 bytes a connection. Even alone, a process
// now and then measures some 70 bytes more in every attempt (159 to 280
// bytes seen for one shape, where most processes measure 160 to 250): a
// second process measures again before the test fails.
func TestConnMemory(t *testing.T) {
	if wstest.Race {
		t.Skip("the race detector changes what allocates")
	}
	if os.Getenv(memoryEnv) == "" {
		exe, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		var outs []string
		for range 2 {
			cmd := exec.Command(exe, "-test.run=^TestConnMemory$", "-test.v", "-test.count=1")
			cmd.Env = append(os.Environ(), memoryEnv+"=1")
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Logf("the measuring process:\n%s", out)
				return
			}
			outs = append(outs, fmt.Sprintf("%v:\n%s", err, out))
		}
		t.Fatalf("both measuring processes failed:\n%s", strings.Join(outs, "\n"))
	}
	const n, attempts = 1000, 3
	for _, hooked := range []bool{false, true} {
		for _, shape := range connShapes {
			t.Run(hookedName(hooked)+"/"+shape.name, func(t *testing.T) { testConnMemory(t, n, attempts, hooked, shape) })
		}
	}
}

// memoryEnv, set, makes TestConnMemory measure in its process rather than
// start one to measure in.
const memoryEnv = "WSSHUTDOWN_MEMORY_PROCESS"

// hookedName names a server with or without the ConnContext and ConnState
// hooks.
func hookedName(hooked bool) string {
	if hooked {
		return "hooked"
	}
	return "middleware"
}

func testConnMemory(t *testing.T, n, attempts int, hooked bool, shape connShape) {
	// The in-process measure's noise, garbage a collection has not yet
	// freed and maps at a size that just doubled, only adds: the least of
	// a few measures is the cost. A handed-off connection's goroutines
	// start with the stack size the runtime has seen on average, which
	// varies with the process's history: only the handler that reads
	// itself has its stack bounded.
	most := shape.most
	if hooked {
		most = shape.mostHooked
	}
	least, leastStack := math.Inf(1), math.Inf(1)
	for range attempts {
		bare, wrapped, bareStack, wrappedStack := connMemoryStacks(t, n, hooked, shape)
		t.Logf("%.0f B per connection bare, %.0f wrapped; stacks %.0f and %.0f", bare, wrapped, bareStack, wrappedStack)
		least, leastStack = min(least, wrapped-bare), min(leastStack, wrappedStack-bareStack)
		if least <= most && (shape.handOff || leastStack < 1024) {
			return
		}
	}
	if least > most {
		t.Errorf("the middleware costs %.0f B of heap per open websocket at least, in %d measures; want at most %.0f", least, attempts, most)
	}
	if !shape.handOff && leastStack >= 1024 {
		t.Errorf("the middleware costs %.0f B of stack per open websocket at least, in %d measures; want less than 1024, not a doubled stack", leastStack, attempts)
	}
}
