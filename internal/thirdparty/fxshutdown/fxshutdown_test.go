package fxshutdown_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/wsshutdown/wsshutdown/fxshutdown"
	"github.com/wsshutdown/wsshutdown/internal/thirdparty/wstest"
	"github.com/wsshutdown/wsshutdown/shutdown"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testApp is an Fx application with the module, one server on a free
// loopback port that serves handler (built with the app's Shutdowner), and
// a zap logger whose entries the test observes.
type testApp struct {
	*fxtest.App
	logs   *observer.ObservedLogs
	logged chan string // the message of every entry, as it is written
	addr   string      // the server's address, from the "serving" entry
	s      *shutdown.Shutdowner
}

// newTestApp starts the app; opts come before the module, so that hooks they
// register run after the module's at stop.
func newTestApp(t *testing.T, handler func(*shutdown.Shutdowner) http.Handler, opts ...fx.Option) *testApp {
	t.Helper()
	core, logs := observer.New(zapcore.InfoLevel)
	a := &testApp{logs: logs, logged: make(chan string, 1000)}
	core = zapcore.RegisterHooks(core, func(e zapcore.Entry) error {
		select {
		case a.logged <- e.Message:
		default:
		}
		return nil
	})
	a.App = fxtest.New(t, append(opts,
		fx.NopLogger,
		fx.Supply(zap.New(core)),
		fxshutdown.Module,
		fx.Provide(fxshutdown.AsServer(func(s *shutdown.Shutdowner) *http.Server {
			return &http.Server{Addr: "127.0.0.1:0", Handler: s.Middleware(handler(s))}
		})),
		fx.Populate(&a.s),
	)...)
	a.RequireStart()
	serving := logs.FilterMessage("serving").All()
	if len(serving) != 1 {
		t.Fatalf("%d \"serving\" entries, want 1", len(serving))
	}
	a.addr = serving[0].ContextMap()["addr"].(string)
	return a
}

// drainEntries returns the entries about the drain: every entry but
// "serving".
func drainEntries(logs *observer.ObservedLogs) []observer.LoggedEntry {
	var out []observer.LoggedEntry
	for _, e := range logs.All() {
		if e.Message != "serving" {
			out = append(out, e)
		}
	}
	return out
}

// wantCounts fails unless e carries the counts active and hijacked.
func wantCounts(t *testing.T, e observer.LoggedEntry, active, hijacked int64) {
	t.Helper()
	m := e.ContextMap()
	if m["active"] != active || m["hijacked"] != hijacked {
		t.Errorf("%q: active=%v hijacked=%v, want %d and %d", e.Message, m["active"], m["hijacked"], active, hijacked)
	}
	if e.LoggerName != "shutdown" {
		t.Errorf("%q logged by %q, want the logger named \"shutdown\"", e.Message, e.LoggerName)
	}
}

// goodbyeHandler is wstest.Server for newTestApp.
func goodbyeHandler(connected chan<- struct{}) func(*shutdown.Shutdowner) http.Handler {
	return func(*shutdown.Shutdowner) http.Handler { return wstest.Server(connected) }
}

// dial connects a gorilla client to the app's server.
func dial(t *testing.T, addr string) <-chan wstest.Goodbye {
	t.Helper()
	return wstest.Dial(t, "ws://"+addr+"/")
}

// Stop drains real websocket clients with 1001, and the log shows the counts
// going from N to 0 in a handful of entries.
func TestStopDrainsWebSockets(t *testing.T) {
	const n = 50
	connected := make(chan struct{}, n)
	app := newTestApp(t, goodbyeHandler(connected))
	codes := make([]<-chan wstest.Goodbye, n)
	for i := range codes {
		codes[i] = dial(t, app.addr)
	}
	for range n {
		<-connected
	}
	app.RequireStop()
	wstest.WantCodes(t, codes, websocket.CloseGoingAway)

	entries := drainEntries(app.logs)
	if len(entries) < 2 || entries[0].Message != "drain started" || entries[len(entries)-1].Message != "drained" {
		t.Fatalf("drain entries %v, want \"drain started\" first and \"drained\" last", messages(entries))
	}
	wantCounts(t, entries[0], n, n)
	wantCounts(t, entries[len(entries)-1], 0, 0)
	if _, ok := entries[len(entries)-1].ContextMap()["duration"]; !ok {
		t.Error("\"drained\" has no duration")
	}
	for _, e := range entries[1 : len(entries)-1] {
		if e.Message != "draining" {
			t.Errorf("unexpected entry %q during the drain", e.Message)
		}
	}
	// One entry a second at most between start and end, by default.
	if len(entries) > 4 {
		t.Errorf("%d entries for a drain of %d connections: %v", len(entries), n, messages(entries))
	}
}

func messages(entries []observer.LoggedEntry) []string {
	var out []string
	for _, e := range entries {
		out = append(out, e.Message)
	}
	return out
}

// While connections remain, the drain logs their counts every LogInterval.
func TestStopLogsProgress(t *testing.T) {
	connected := make(chan struct{}, 1)
	release := make(chan struct{})
	app := newTestApp(t, func(s *shutdown.Shutdowner) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			connected <- struct{}{}
			<-shutdown.Draining(r.Context())
			<-release
		})
	}, fx.Supply(fxshutdown.Config{LogInterval: 5 * time.Millisecond}))
	go func() {
		if resp, err := http.Get("http://" + app.addr); err == nil {
			resp.Body.Close()
		}
	}()
	<-connected
	// Release the handler once the drain has logged its progress twice.
	go func() {
		for seen := 0; seen < 2; {
			if <-app.logged == "draining" {
				seen++
			}
		}
		close(release)
	}()
	app.RequireStop()
	progress := app.logs.FilterMessage("draining").All()
	if len(progress) < 2 {
		t.Fatalf("%d \"draining\" entries, want at least 2", len(progress))
	}
	wantCounts(t, progress[0], 1, 0)
	wantCounts(t, app.logs.FilterMessage("drained").All()[0], 0, 0)
}

// A busy address fails Start with an error that names it, and the
// listeners already opened are closed.
func TestStartFailsOnBusyAddress(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	free := freeAddr(t)
	app := fx.New(
		fx.NopLogger,
		fxshutdown.Module,
		fx.Provide(
			fxshutdown.AsServer(func() *http.Server { return &http.Server{Addr: free} }),
			fxshutdown.AsServer(func() *http.Server { return &http.Server{Addr: busy.Addr().String()} }),
		),
	)
	err = app.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), busy.Addr().String()) {
		t.Fatalf("Start = %v, want an error naming %s", err, busy.Addr())
	}
	ln, err := net.Listen("tcp", free)
	if err != nil {
		t.Fatalf("the first server's address %s is still taken after the failed start: %v", free, err)
	}
	ln.Close()
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// A connection whose handler ignores the drain is force-closed within the
// stop timeout: Stop returns the DrainError promptly, the client reads the
// deadline's goodbye as the connection ends, and a Warn entry reports it.
func TestStopTimeoutForceClosesStuckConnection(t *testing.T) {
	connected := make(chan struct{}, 1)
	app := newTestApp(t, func(*shutdown.Shutdowner) http.Handler {
		return wstest.IgnoresDrain(connected, false)
	})
	code := dial(t, app.addr)
	<-connected

	// The drain's default share is 0.8 s; the rest is the margin that the
	// test asserts Stop keeps, wide enough for a loaded machine under -race.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := app.Stop(ctx)
	var de *shutdown.DrainError
	if !errors.As(err, &de) || de.Hijacked != 1 || de.Active != 1 {
		t.Fatalf("Stop = %v, want a DrainError with the connection", err)
	}
	if ctx.Err() != nil {
		t.Errorf("Stop returned after its deadline: %v", ctx.Err())
	}
	wstest.WantCodes(t, []<-chan wstest.Goodbye{code}, shutdown.DefaultGoodbyeCode)
	warn := app.logs.FilterMessage("drain deadline reached, connections closed").All()
	if len(warn) != 1 || warn[0].Level != zapcore.WarnLevel {
		t.Fatalf("deadline entries %v, want one Warn", warn)
	}
	wantCounts(t, warn[0], 1, 1)
	if warn[0].ContextMap()["forced"] != uint64(1) {
		t.Errorf("forced = %v, want 1", warn[0].ContextMap()["forced"])
	}
}

// A hook registered before the module's, which Fx runs after it, still runs
// when the drain uses up its share of the stop timeout.
func TestLaterHookRunsAfterDrainBudget(t *testing.T) {
	connected := make(chan struct{}, 1)
	hung := make(chan struct{})
	defer close(hung)
	laterHookRan := false
	app := newTestApp(t, func(*shutdown.Shutdowner) http.Handler {
		return http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
			connected <- struct{}{}
			<-hung // ignores the drain and its connection's end
		})
	}, fx.Module("database", fx.Invoke(func(lc fx.Lifecycle) {
		lc.Append(fx.StopHook(func() { laterHookRan = true }))
	})))
	go func() {
		if resp, err := http.Get("http://" + app.addr); err == nil {
			resp.Body.Close()
		}
	}()
	<-connected

	// The drain's default share is 0.8 s; the rest is the margin that the
	// test asserts Stop keeps, wide enough for a loaded machine under -race.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := app.Stop(ctx)
	var de *shutdown.DrainError
	if !errors.As(err, &de) || de.Active != 1 {
		t.Fatalf("Stop = %v, want a DrainError with the handler", err)
	}
	if !laterHookRan {
		t.Fatal("the hook that runs after the drain's did not run")
	}
}

// With no server given, the module still drains the handlers wrapped by
// its Shutdowner, wherever they are served.
func TestStopWithoutServersWaitsForHandlers(t *testing.T) {
	var s *shutdown.Shutdowner
	app := fxtest.New(t, fx.NopLogger, fxshutdown.Module, fx.Populate(&s))
	app.RequireStart()
	entered, release := make(chan struct{}), make(chan struct{})
	var finished atomic.Bool
	ts := httptest.NewServer(s.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-shutdown.Draining(r.Context())
		<-release
		finished.Store(true)
	})))
	defer ts.Close()
	got := make(chan int, 1)
	go func() {
		resp, err := http.Get(ts.URL)
		if err != nil {
			got <- 0
			return
		}
		resp.Body.Close()
		got <- resp.StatusCode
	}()
	<-entered
	stopped := make(chan error, 1)
	finishedAtStop := make(chan bool, 1)
	go func() {
		err := app.Stop(context.Background())
		finishedAtStop <- finished.Load()
		stopped <- err
	}()
	<-s.Draining()
	close(release)
	if err := <-stopped; err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if !<-finishedAtStop {
		t.Fatal("Stop returned while the handler ran")
	}
	if code := <-got; code != http.StatusOK {
		t.Fatalf("the drained request got %d, want 200", code)
	}
}

// A server whose Serve fails (here an HTTP/2 TLS configuration that
// net/http refuses) stops the application with exit code 1 and an Error
// entry.
func TestServeFailureStopsApp(t *testing.T) {
	cert := testCertificate(t)
	core, logs := observer.New(zapcore.InfoLevel)
	app := fxtest.New(t,
		fx.NopLogger,
		fx.Supply(zap.New(core)),
		fxshutdown.Module,
		fx.Provide(fxshutdown.AsServer(func() *http.Server {
			return &http.Server{Addr: "127.0.0.1:0", TLSConfig: &tls.Config{
				Certificates: []tls.Certificate{cert},
				CipherSuites: []uint16{tls.TLS_RSA_WITH_AES_128_CBC_SHA},
			}}
		})),
	)
	app.RequireStart()
	select {
	case sig := <-app.Wait():
		if sig.ExitCode != 1 {
			t.Errorf("exit code %d, want 1", sig.ExitCode)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the application did not stop")
	}
	app.RequireStop()
	failed := logs.FilterMessage("serve failed").All()
	if len(failed) != 1 || failed[0].Level != zapcore.ErrorLevel || failed[0].ContextMap()["addr"] == nil {
		t.Fatalf("serve failure entries %v, want one Error with the address", failed)
	}
}

// testCertificate is the certificate of net/http/httptest's TLS servers.
func testCertificate(t *testing.T) tls.Certificate {
	t.Helper()
	ts := httptest.NewTLSServer(http.NotFoundHandler())
	defer ts.Close()
	return ts.TLS.Certificates[0]
}

// A nil server from an AsServer constructor fails the application's build
// with an error that says so.
func TestNilServer(t *testing.T) {
	app := fx.New(fx.NopLogger, fxshutdown.Module,
		fx.Provide(fxshutdown.AsServer(func() *http.Server { return nil })))
	if err := app.Err(); err == nil || !strings.Contains(err.Error(), "nil") {
		t.Fatalf("Err() = %v, want an error about the nil server", err)
	}
}

// With a drain delay and a stagger window from Config: readiness fails at
// once while the server keeps serving, the log shows the phases in order,
// and the websockets still get their 1001.
func TestStopWithDrainDelayAndStagger(t *testing.T) {
	const n = 10
	connected := make(chan struct{}, n)
	ready := make(chan http.Handler, 1)
	ws := goodbyeHandler(connected)
	app := newTestApp(t, func(s *shutdown.Shutdowner) http.Handler {
		ready <- s.ReadinessHandler()
		mux := http.NewServeMux()
		mux.Handle("/", ws(s))
		return mux
	}, fx.Supply(fxshutdown.Config{DrainDelay: time.Second, StaggerWindow: 100 * time.Millisecond}))
	readiness := httptest.NewServer(<-ready)
	defer readiness.Close()
	codes := make([]<-chan wstest.Goodbye, n)
	for i := range codes {
		codes[i] = dial(t, app.addr)
	}
	for range n {
		<-connected
	}

	stopped := make(chan error, 1)
	go func() { stopped <- app.Stop(context.Background()) }()
	// "not ready" is logged as the delay begins; the readiness handler
	// answers 503 a moment later, when Shutdown has been called.
	for <-app.logged != "not ready" {
	}
	for deadline := time.Now().Add(10 * time.Second); status(t, readiness.URL) != http.StatusServiceUnavailable; {
		if time.Now().After(deadline) {
			t.Fatal("readiness did not fail during the delay")
		}
		time.Sleep(time.Millisecond) // what a probe sees: no event to wait on
	}
	select {
	case <-app.s.Draining():
		t.Error("the drain began before the delay passed")
	default:
	}
	if err := <-stopped; err != nil {
		t.Fatalf("Stop: %v", err)
	}
	wstest.WantCodes(t, codes, websocket.CloseGoingAway)
	if got, want := messages(drainEntries(app.logs)), []string{"not ready", "drain started", "drained"}; !slices.Equal(got, want) {
		t.Fatalf("entries %q, want %q", got, want)
	}
	wantCounts(t, app.logs.FilterMessage("not ready").All()[0], n, n)
}

func status(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// With many connections ignoring the drain and a short stop timeout, the
// deadline's goodbyes and the force-close fit in the stop: Stop returns the DrainError before its
// deadline, the Warn entry is written before Stop returns, and the hook that
// runs after the module's runs. The stop timeout, 200 µs a connection, is
// more than closing them takes on a loaded machine, and less than the 250 µs
// the module leaves for each, so the drain itself gets nothing. The race
// detector makes closing them about five times slower, slower than the
// module allows for: under it the test looks for races, with 500
// connections and 2 ms each, and the plain run proves the timing.
func TestStopForceClosesManyWithinStopTimeout(t *testing.T) {
	perConn, sizes := 200*time.Microsecond, []int{1000, 5000}
	if wstest.Race {
		perConn, sizes = 2*time.Millisecond, []int{500}
	}
	for _, n := range sizes {
		tc := struct {
			n           int
			stopTimeout time.Duration
		}{n, time.Duration(n) * perConn}
		t.Run(fmt.Sprint(tc.n), func(t *testing.T) {
			connected := make(chan struct{}, tc.n)
			var laterHookRan atomic.Bool
			app := newTestApp(t, func(*shutdown.Shutdowner) http.Handler {
				return wstest.IgnoresDrain(connected, true)
			}, fx.Module("database", fx.Invoke(func(lc fx.Lifecycle) {
				lc.Append(fx.StopHook(func() { laterHookRan.Store(true) }))
			})))
			clients := make([]<-chan wstest.Goodbye, tc.n)
			for i := range clients {
				clients[i] = dial(t, app.addr)
			}
			wstest.Receive(t, connected, tc.n)

			ctx, cancel := context.WithTimeout(context.Background(), tc.stopTimeout)
			defer cancel()
			err := app.Stop(ctx)
			stopErr := ctx.Err()
			warn := app.logs.FilterMessage("drain deadline reached, connections closed").All()
			var de *shutdown.DrainError
			if !errors.As(err, &de) || de.Hijacked != tc.n {
				t.Fatalf("Stop = %v, want a DrainError with %d connections", err, tc.n)
			}
			if stopErr != nil {
				t.Errorf("Stop returned after its deadline")
			}
			if !laterHookRan.Load() {
				t.Error("the hook that runs after the module's did not run")
			}
			if len(warn) != 1 || warn[0].ContextMap()["forced"] != uint64(tc.n) {
				t.Fatalf("Warn entries when Stop returned: %v, want one with forced=%d", warn, tc.n)
			}
			// The deadline's goodbyes get a bounded share of the end
			// game: on an idle machine every client reads one, on a
			// loaded one those that did not fit see the connection
			// closed, as without goodbyes.
			goodbyes, _ := warn[0].ContextMap()["goodbyes"].(uint64)
			read := 0
			for i, c := range clients {
				switch g := wstest.Receive(t, c, 1)[0]; g.Code {
				case shutdown.DefaultGoodbyeCode:
					read++
				case wstest.Abnormal:
				default:
					t.Errorf("client %d read %d, want the goodbye or the connection closed", i, g.Code)
				}
			}
			if goodbyes == 0 || uint64(read) > goodbyes {
				t.Errorf("%d goodbyes said and %d read, want some said and no more read", goodbyes, read)
			}
			t.Logf("%d of %d clients read the deadline's goodbye", read, tc.n)
		})
	}
}

// A connection that never sends a request does not hold Stop: it is closed
// once the drain is over, the stop logs "drained", and the ConnState hook
// the server came with still sees every change.
func TestStopClosesConnectionsWithoutRequests(t *testing.T) {
	states := make(chan http.ConnState, 10)
	var s *shutdown.Shutdowner
	core, logs := observer.New(zapcore.InfoLevel)
	app := fxtest.New(t,
		fx.NopLogger,
		fx.Supply(zap.New(core)),
		fxshutdown.Module,
		fx.Provide(fxshutdown.AsServer(func(s *shutdown.Shutdowner) *http.Server {
			return &http.Server{
				Addr:      "127.0.0.1:0",
				Handler:   s.Middleware(http.NotFoundHandler()),
				ConnState: func(_ net.Conn, st http.ConnState) { states <- st },
			}
		})),
		fx.Populate(&s),
	)
	app.RequireStart()
	addr := logs.FilterMessage("serving").All()[0].ContextMap()["addr"].(string)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if st := <-states; st != http.StateNew {
		t.Fatalf("the server's own ConnState saw %v first, want new", st)
	}
	if got := s.Stats().Open; got != 1 {
		t.Fatalf("Stats().Open = %d, want 1", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := app.Stop(ctx); err != nil {
		t.Fatalf("Stop = %v, want nil", err)
	}
	if st := <-states; st != http.StateClosed {
		t.Fatalf("the server's own ConnState saw %v next, want closed", st)
	}
	if n := len(logs.FilterMessage("drained").All()); n != 1 {
		t.Fatalf("%d \"drained\" entries, want 1: %v", n, messages(logs.All()))
	}
}

// When only the servers are still busy at the deadline, with a handler
// served outside the middleware, the stop logs a Warn with the counts, the
// connection among them, not an Error.
func TestStopDeadlineWithUnwrappedHandlerWarns(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	core, logs := observer.New(zapcore.InfoLevel)
	app := fxtest.New(t,
		fx.NopLogger,
		fx.Supply(zap.New(core)),
		fxshutdown.Module,
		fx.Provide(fxshutdown.AsServer(func() *http.Server {
			return &http.Server{Addr: "127.0.0.1:0", Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
				close(entered)
				<-release
			})}
		})),
	)
	app.RequireStart()
	addr := logs.FilterMessage("serving").All()[0].ContextMap()["addr"].(string)
	go func() {
		if resp, err := http.Get("http://" + addr); err == nil {
			resp.Body.Close()
		}
	}()
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := app.Stop(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Stop = %v, want the server's deadline", err)
	}
	warn := logs.FilterMessage("drain deadline reached, connections closed").All()
	if len(warn) != 1 || warn[0].Level != zapcore.WarnLevel {
		t.Fatalf("entries %v, want one Warn at the deadline", messages(logs.All()))
	}
	wantCounts(t, warn[0], 0, 0)
	if got := warn[0].ContextMap()["open"]; got != uint64(1) {
		t.Errorf("open = %v, want 1", got)
	}
	if n := len(logs.FilterLevelExact(zapcore.ErrorLevel).All()); n != 0 {
		t.Errorf("%d Error entries, want none", n)
	}
}

// unawareHandler upgrades with gorilla and echoes in a goroutine, knowing
// nothing of the drain: the module's Shutdowner says its goodbyes.
func unawareHandler(*shutdown.Shutdowner) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			for {
				mt, p, err := c.ReadMessage()
				if err != nil || c.WriteMessage(mt, p) != nil {
					return
				}
			}
		}()
	})
}

// Config.GoodbyeCode and GoodbyeReason reach the clients of handlers that
// know nothing of the drain, the stop logs how many goodbyes it said, and a
// negative code turns them off.
func TestConfigGoodbye(t *testing.T) {
	for _, tc := range []struct {
		name       string
		config     fxshutdown.Config
		code       int
		reason     string
		stopBudget time.Duration
	}{
		{"default", fxshutdown.Config{}, shutdown.DefaultGoodbyeCode, shutdown.DefaultGoodbyeReason, 10 * time.Second},
		{"1012", fxshutdown.Config{GoodbyeCode: 1012, GoodbyeReason: "service restart"}, 1012, "service restart", 10 * time.Second},
		{"off", fxshutdown.Config{GoodbyeCode: -1}, wstest.Abnormal, "", 500 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 5
			app := newTestApp(t, unawareHandler, fx.Supply(tc.config))
			clients := make([]<-chan wstest.Goodbye, n)
			for i := range clients {
				clients[i] = dial(t, app.addr)
			}
			wstest.WaitUntil(t, func() bool { return app.s.Stats().Hijacked == n })
			ctx, cancel := context.WithTimeout(context.Background(), tc.stopBudget)
			defer cancel()
			err := app.Stop(ctx)
			for i, g := range wstest.WantCodes(t, clients, tc.code) {
				if tc.code != wstest.Abnormal && g.Text != tc.reason {
					t.Errorf("client %d read reason %q, want %q", i, g.Text, tc.reason)
				}
			}
			if tc.code == wstest.Abnormal {
				if err == nil {
					t.Fatal("Stop = nil; want the deadline's DrainError with goodbyes off")
				}
				return
			}
			if err != nil {
				t.Fatalf("Stop: %v", err)
			}
			drained := app.logs.FilterMessage("drained").All()
			if len(drained) != 1 || drained[0].ContextMap()["goodbyes"] != uint64(n) {
				t.Fatalf("drained entries %v, want one with goodbyes=%d", drained, n)
			}
		})
	}
}
