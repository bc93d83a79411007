package shutdown_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/felixge/httpsnoop"
	"github.com/gorilla/websocket"

	"github.com/wsshutdown/wsshutdown/internal/thirdparty/wstest"
	"github.com/wsshutdown/wsshutdown/shutdown"
)

// benchWriter is a reusable response writer with the optional interfaces of
// net/http's HTTP/1.1 writer, so that the middleware does the work it does
// in a server and the benchmark counts only the middleware's allocations.
type benchWriter struct{ h http.Header }

func (w *benchWriter) Header() http.Header                 { return w.h }
func (w *benchWriter) Write(p []byte) (int, error)         { return len(p), nil }
func (w *benchWriter) WriteHeader(int)                     {}
func (w *benchWriter) WriteString(s string) (int, error)   { return len(s), nil }
func (w *benchWriter) ReadFrom(r io.Reader) (int64, error) { return io.Copy(io.Discard, r) }
func (w *benchWriter) Flush()                              {}
func (w *benchWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return nil, nil, http.ErrNotSupported
}

var okBody = []byte("ok")

// okHandler is the plain request: it writes a short body.
var okHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(okBody) })

// waitGroupMiddleware is the seed's design, the floor for any counting
// middleware: a sync.WaitGroup around the handler.
func waitGroupMiddleware(wg *sync.WaitGroup, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wg.Add(1)
		defer wg.Done()
		next.ServeHTTP(w, r)
	})
}

type snoopKey struct{}

// snoopMiddleware is what the middleware would be with httpsnoop in place of
// the generated writers: a counter, a writer that hooks Hijack, and the
// request's context carrying the drain signal.
func snoopMiddleware(s *shutdown.Shutdowner, next http.Handler) http.Handler {
	var wg sync.WaitGroup
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wg.Add(1)
		defer wg.Done()
		rw := httpsnoop.Wrap(w, httpsnoop.Hooks{
			Hijack: func(next httpsnoop.HijackFunc) httpsnoop.HijackFunc {
				return func() (net.Conn, *bufio.ReadWriter, error) { return next() }
			},
		})
		next.ServeHTTP(rw, r.WithContext(context.WithValue(r.Context(), snoopKey{}, s)))
	})
}

// BenchmarkMiddleware serves a plain request bare, through the seed's
// WaitGroup middleware, through the Shutdowner's, on a connection with its
// ConnContext and with the ConnState calls net/http makes around each
// request ("shutdown-hooked"), and through the same built on httpsnoop, in
// one run: read the cost as the difference.
func BenchmarkMiddleware(b *testing.B) {
	var wg sync.WaitGroup
	var s, hooked shutdown.Shutdowner
	staggered := shutdown.New(shutdown.WithStagger(time.Second))
	for _, bc := range []struct {
		name string
		h    http.Handler
		hook *shutdown.Shutdowner
	}{
		{"bare", okHandler, nil},
		{"waitgroup", waitGroupMiddleware(&wg, okHandler), nil},
		{"shutdown", s.Middleware(okHandler), nil},
		{"shutdown-hooked", hooked.Middleware(okHandler), &hooked},
		{"shutdown-stagger", staggered.Middleware(okHandler), nil},
		{"httpsnoop", snoopMiddleware(&s, okHandler), nil},
	} {
		b.Run(bc.name, func(b *testing.B) {
			// On one thread, for callgrind, which counts each apart
			// (README, "Performance").
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			w := &benchWriter{h: make(http.Header)}
			r, serve := hookedRequest(b, bc.hook, bc.h)
			b.ReportAllocs()
			for b.Loop() {
				serve(w, r)
			}
		})
	}
}

// hookedRequest returns a plain request and a function that serves it
// with h. With hook set, the request's context is a connection's from
// hook.ConnContext, and serving it calls hook.ConnState as net/http does
// around a request on a keep-alive connection.
func hookedRequest(tb testing.TB, hook *shutdown.Shutdowner, h http.Handler) (*http.Request, func(http.ResponseWriter, *http.Request)) {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	if hook == nil {
		return r, h.ServeHTTP
	}
	conn, peer := tcpPair(tb) // what net/http's hooks are given: a *net.TCPConn
	tb.Cleanup(func() { conn.Close(); peer.Close() })
	hook.ConnState(conn, http.StateNew)
	r = r.WithContext(hook.ConnContext(context.Background(), conn))
	return r, func(w http.ResponseWriter, r *http.Request) {
		hook.ConnState(conn, http.StateActive)
		h.ServeHTTP(w, r)
		hook.ConnState(conn, http.StateIdle)
	}
}

// tcpPair returns the two ends of a loopback TCP connection, the
// accepted one first.
func tcpPair(tb testing.TB) (accepted, dialed net.Conn) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	dialed, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	accepted, err = ln.Accept()
	if err != nil {
		dialed.Close()
		tb.Fatal(err)
	}
	return accepted, dialed
}

// BenchmarkServer serves the plain request from two real servers on
// loopback, one bare and one through the middleware, to keep-alive clients,
// alternating between them in rounds so that both see the same machine.
// It reports the wrapped server's throughput as a percentage of the bare
// one's; "hooked" sets the wrapped server's ConnState and ConnContext to
// the Shutdowner's, as the README's server does.
func BenchmarkServer(b *testing.B) {
	b.Run("middleware", func(b *testing.B) { benchmarkServer(b, false) })
	b.Run("hooked", func(b *testing.B) { benchmarkServer(b, true) })
}

func benchmarkServer(b *testing.B, hooked bool) {
	var s shutdown.Shutdowner
	bare := httptest.NewServer(okHandler)
	defer bare.Close()
	wrapped := httptest.NewUnstartedServer(s.Middleware(okHandler))
	if hooked {
		wrapped.Config.ConnState, wrapped.Config.ConnContext = s.ConnState, s.ConnContext
	}
	wrapped.Start()
	defer wrapped.Close()
	const clients = 4
	transport := &http.Transport{MaxIdleConnsPerHost: clients}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport}

	load := func(url string, n int) time.Duration {
		start := time.Now()
		var wg sync.WaitGroup
		for range clients {
			wg.Go(func() {
				for range n / clients {
					resp, err := client.Get(url)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
		}
		wg.Wait()
		return time.Since(start)
	}
	load(bare.URL, 100) // connections up on both
	load(wrapped.URL, 100)

	const rounds = 20
	perRound := max(b.N/rounds, clients)
	var bareTime, wrappedTime time.Duration
	b.ResetTimer()
	for round := range rounds {
		if round%2 == 0 {
			bareTime += load(bare.URL, perRound)
			wrappedTime += load(wrapped.URL, perRound)
		} else {
			wrappedTime += load(wrapped.URL, perRound)
			bareTime += load(bare.URL, perRound)
		}
	}
	b.StopTimer()
	requests := float64(rounds * (perRound / clients) * clients)
	b.ReportMetric(requests/bareTime.Seconds(), "bare-req/s")
	b.ReportMetric(requests/wrappedTime.Seconds(), "wrapped-req/s")
	b.ReportMetric(100*bareTime.Seconds()/wrappedTime.Seconds(), "%-of-bare")
}

// BenchmarkDrain drains N real gorilla websocket clients at once and
// reports the time of the whole drain: every handler says goodbye, every
// client answers, every connection closes. It fails unless every client saw
// 1001.
func BenchmarkDrain(b *testing.B) {
	for _, n := range []int{100, 1000, 5000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				var s shutdown.Shutdowner
				connected := make(chan struct{}, n)
				ts := httptest.NewServer(s.Middleware(wstest.Server(connected)))
				codes := connect(b, wstest.Dial, wsURL(ts), connected, n)
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				b.StartTimer()
				err := s.ShutdownWithServer(ctx, ts.Config)
				b.StopTimer()
				cancel()
				if err != nil {
					b.Fatal(err)
				}
				goingAway := 0
				for _, c := range codes {
					if wstest.Receive(b, c, 1)[0].Code == websocket.CloseGoingAway {
						goingAway++
					}
				}
				if goingAway != n {
					b.Fatalf("%d of %d clients saw 1001", goingAway, n)
				}
				b.ReportMetric(float64(goingAway), "clients-1001")
				ts.Close()
				b.StartTimer()
			}
		})
	}
}

// The middleware's allocation budget, as BenchmarkMiddleware measures it:
// one per plain request (the writer, its context and the request's copy),
// with or without a stagger window, and none on a connection with the
// ConnContext and ConnState hooks, so that a change that adds one fails
// here. A request with a body, or one that asks to upgrade, has its copy
// apart: two.
func TestMiddlewareAllocations(t *testing.T) {
	if wstest.Race {
		t.Skip("the race detector changes what allocates")
	}
	for _, tc := range []struct {
		name   string
		s      *shutdown.Shutdowner
		hooked bool
		want   float64
	}{
		{"default", new(shutdown.Shutdowner), false, 1},
		{"with stagger", shutdown.New(shutdown.WithStagger(time.Second)), false, 1},
		{"hooked", new(shutdown.Shutdowner), true, 0},
		{"hooked with stagger", shutdown.New(shutdown.WithStagger(time.Second)), true, 0},
	} {
		var hook *shutdown.Shutdowner
		if tc.hooked {
			hook = tc.s
		}
		w := &benchWriter{h: make(http.Header)}
		r, serve := hookedRequest(t, hook, tc.s.Middleware(okHandler))
		if got := testing.AllocsPerRun(1000, func() { serve(w, r) }); got > tc.want {
			t.Errorf("%s: %v allocations per request, want %v", tc.name, got, tc.want)
		}
	}
}

// BenchmarkGoodbyes compares, alternating within each iteration, the drain
// of N websockets whose handlers say their own goodbye (wstest.Server) with
// the drain of N whose handlers know nothing of it (gorilla's chat example),
// to which the Shutdowner says goodbye on their behalf. It reports the
// ratio of the total times; every client must read 1001. Run it with
// -benchtime 3x or more.
func BenchmarkGoodbyes(b *testing.B) {
	for _, n := range []int{1000, 5000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			var aware, unaware time.Duration
			for range b.N {
				aware += timeDrain(b, n, wstest.Server)
				unaware += timeDrain(b, n, func(chan<- struct{}) http.Handler { return gorillaChat().handler })
			}
			b.ReportMetric(float64(aware.Milliseconds())/float64(b.N), "aware-ms")
			b.ReportMetric(float64(unaware.Milliseconds())/float64(b.N), "unaware-ms")
			b.ReportMetric(float64(unaware)/float64(aware), "unaware/aware")
		})
	}
}

// timeDrain serves n gorilla clients with the handler server makes, and
// returns how long ShutdownWithServer took to drain them, each client
// having read 1001.
func timeDrain(b *testing.B, n int, server func(connected chan<- struct{}) http.Handler) time.Duration {
	b.Helper()
	var s shutdown.Shutdowner
	connected := make(chan struct{}, n)
	ts := httptest.NewServer(s.Middleware(server(connected)))
	defer ts.Close()
	codes := make([]<-chan wstest.Goodbye, n)
	for i := range codes {
		codes[i] = wstest.Dial(b, wsURL(ts))
	}
	wstest.WaitUntil(b, func() bool { return s.Stats().Hijacked == n }) // the chat handler announces nothing
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	if err := s.ShutdownWithServer(ctx, ts.Config); err != nil {
		b.Fatal(err)
	}
	took := time.Since(start)
	wstest.WantCodes(b, codes, websocket.CloseGoingAway)
	return took
}

// BenchmarkForceClose measures the end game of a drain whose context has
// ended: N real gorilla websockets whose handlers ask for their signal and
// ignore it (the chat shape) get the deadline's goodbye, which each client
// reads, and are closed, until each has been ("goodbye"); or, with goodbyes
// off, are closed without one ("off"). Run it with -benchtime 1x.
func BenchmarkForceClose(b *testing.B) {
	for _, mode := range []struct {
		name string
		opts []shutdown.Option
		code int
	}{
		{"goodbye", nil, shutdown.DefaultGoodbyeCode},
		{"off", []shutdown.Option{shutdown.WithGoodbye(0, "")}, wstest.Abnormal},
	} {
		for _, n := range []int{1000, 5000} {
			b.Run(fmt.Sprintf("%s/%d", mode.name, n), func(b *testing.B) {
				for range b.N {
					b.StopTimer()
					s := shutdown.New(mode.opts...)
					connected := make(chan struct{}, n)
					ts := httptest.NewServer(s.Middleware(wstest.IgnoresDrain(connected, true)))
					clients := connect(b, wstest.Dial, wsURL(ts), connected, n)
					expired, cancel := context.WithCancel(context.Background())
					cancel()
					b.StartTimer()
					err := s.Shutdown(expired)
					b.StopTimer()
					if st := s.Stats(); st.Hijacked != 0 || st.Forced == 0 {
						b.Fatalf("Shutdown = %v; %+v: want every connection closed, some forced", err, st)
					}
					wstest.WantCodes(b, clients, mode.code)
					ts.Close()
					b.StartTimer()
				}
			})
		}
	}
}

// Without the hooks, a request whose context a goroutine may keep for a
// connection's life (one that asks to upgrade), or whose copy would keep
// net/http's connection through its body, has its copy apart from its
// writer: the copy is not kept with the context. The handler sees the
// same request either way: its method, header, body and context.
func TestRequestCopies(t *testing.T) {
	var s shutdown.Shutdowner
	type seen struct {
		method, upgrade, body string
		signal                bool
	}
	seenReq := make(chan seen, 1)
	ts, _ := serveUnhooked(t, &s, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		seenReq <- seen{r.Method, r.Header.Get("Upgrade"), string(body), shutdown.Draining(r.Context()) != nil}
	}))
	for _, tc := range []struct {
		method, upgrade, body string
		allocs                float64
	}{
		{http.MethodGet, "", "", 1},
		{http.MethodPost, "", "a body", 2},
		{http.MethodGet, "websocket", "", 2},
	} {
		req, err := http.NewRequest(tc.method, ts.URL, strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		if tc.body == "" {
			req.Body = http.NoBody
		}
		if tc.upgrade != "" {
			req.Header.Set("Upgrade", tc.upgrade)
		}
		resp, err := ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got, want := wstest.Receive(t, seenReq, 1)[0], (seen{tc.method, tc.upgrade, tc.body, true}); got != want {
			t.Errorf("the handler saw %+v, want %+v", got, want)
		}
		if wstest.Race {
			continue // the race detector changes what allocates
		}
		// The middleware alone, on such a request.
		r := httptest.NewRequest(tc.method, "/", strings.NewReader(tc.body))
		if tc.body == "" {
			r.Body = http.NoBody
		}
		if tc.upgrade != "" {
			r.Header.Set("Upgrade", tc.upgrade)
		}
		h := s.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
		w := &benchWriter{h: make(http.Header)}
		if got := testing.AllocsPerRun(100, func() { h.ServeHTTP(w, r) }); got != tc.allocs {
			t.Errorf("%s with upgrade %q and body %q: %v allocations, want %v", tc.method, tc.upgrade, tc.body, got, tc.allocs)
		}
	}
}
