package shutdown_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/wsshutdown/wsshutdown/internal/thirdparty/wstest"
	"github.com/wsshutdown/wsshutdown/shutdown"
)

// serveWithConnState runs h behind s's middleware on a loopback server
// whose ConnState is s's.
func serveWithConnState(t testing.TB, s *shutdown.Shutdowner, h http.Handler) *httptest.Server {
	t.Helper()
	ts := httptest.NewUnstartedServer(s.Middleware(h))
	ts.Config.ConnState = s.ConnState
	ts.Start()
	t.Cleanup(ts.Close)
	return ts
}

// dialIdle opens n connections to ts that send nothing, as browsers open
// them ahead of need, and waits until the server has them all. Each closed
// receives once that connection has been closed by the server.
func dialIdle(t testing.TB, s *shutdown.Shutdowner, ts *httptest.Server, n int) (closed <-chan struct{}) {
	t.Helper()
	c := make(chan struct{}, n)
	for range n {
		conn, err := net.Dial("tcp", ts.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		go func() {
			if _, err := conn.Read(make([]byte, 1)); err != nil {
				c <- struct{}{}
			}
		}()
	}
	wstest.WaitUntil(t, func() bool { return s.Stats().Open == n })
	return c
}

// Connections that never send a request do not hold ShutdownWithServer
// until its deadline: once the drain is over they are closed, and the
// server shuts down with nothing to report.
func TestConnectionsWithoutRequestsAreClosed(t *testing.T) {
	for _, n := range []int{1, 5000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			var s shutdown.Shutdowner
			ts := serveWithConnState(t, &s, okHandler)
			if code, body := get(t, ts.URL); code != http.StatusOK || body != "ok" {
				t.Fatalf("got %d %q, want 200 ok", code, body)
			}
			closed := dialIdle(t, &s, ts, n)
			wantStats(t, &s, shutdown.Stats{Open: n})
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := s.ShutdownWithServer(ctx, ts.Config); err != nil {
				t.Fatalf("ShutdownWithServer with %d connections that sent nothing = %v, want nil", n, err)
			}
			wstest.Receive(t, closed, n)
			wantStats(t, &s, shutdown.Stats{Draining: true})
		})
	}
}

// Once the drain is over, a connection that arrives is closed at once: the
// server's listener is still open when Shutdown is called before
// srv.Shutdown, or was open a moment ago.
func TestConnectionsAfterTheDrainAreClosed(t *testing.T) {
	var s shutdown.Shutdowner
	ts := serveWithConnState(t, &s, okHandler)
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second)) // fail rather than hang
	if _, err := conn.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("reading a connection made after the drain: %v, want EOF", err)
	}
}

// A client that sends its first request slowly is, to net/http, a
// connection on which no request has begun: it counts in Open, not Active,
// and is closed once the drain is over rather than holding srv.Shutdown.
func TestSlowFirstRequestIsClosed(t *testing.T) {
	var s shutdown.Shutdowner
	ts := serveWithConnState(t, &s, okHandler)
	conn, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := fmt.Fprint(conn, "GET / HTTP/1.1\r\nHost: x\r\n"); err != nil { // no end of header
		t.Fatal(err)
	}
	wstest.WaitUntil(t, func() bool { return s.Stats().Open == 1 })
	wantStats(t, &s, shutdown.Stats{Open: 1})
	if err := s.ShutdownWithServer(contextWithTimeout(t, 5*time.Second), ts.Config); err != nil {
		t.Fatalf("ShutdownWithServer = %v, want nil", err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second)) // fail rather than hang
	// EOF, or a reset: the server closed with the header unread.
	var ne net.Error
	if _, err := bufio.NewReader(conn).ReadByte(); err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("reading the slow client's connection: %v, want it closed", err)
	}
}

// ConfigureServer hooks a server in one call, after the hooks it has: its
// own ConnContext's values and ConnState's states still reach it, a
// connection that sent nothing is closed once the drain is over (the
// Shutdowner's ConnState), and a request finds its drain signal through
// its connection's context (ConnContext). A second call changes nothing,
// and a nil server is refused at once.
func TestConfigureServer(t *testing.T) {
	var s shutdown.Shutdowner
	type key struct{}
	type seen struct {
		own    any
		signal bool
	}
	seenReq := make(chan seen, 1)
	ts := httptest.NewUnstartedServer(s.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seenReq <- seen{own: r.Context().Value(key{}), signal: shutdown.Draining(r.Context()) != nil}
		_, _ = io.WriteString(w, "ok")
	})))
	states := make(chan http.ConnState, 100)
	ts.Config.ConnContext = func(ctx context.Context, _ net.Conn) context.Context { return context.WithValue(ctx, key{}, "own") }
	ts.Config.ConnState = func(_ net.Conn, state http.ConnState) { states <- state }
	s.ConfigureServer(ts.Config)
	hookedContext, hookedState := reflect.ValueOf(ts.Config.ConnContext).Pointer(), reflect.ValueOf(ts.Config.ConnState).Pointer()
	s.ConfigureServer(ts.Config)
	if reflect.ValueOf(ts.Config.ConnContext).Pointer() != hookedContext || reflect.ValueOf(ts.Config.ConnState).Pointer() != hookedState {
		t.Fatal("a second ConfigureServer changed the server's hooks")
	}
	ts.Start()
	defer ts.Close()

	if code, body := get(t, ts.URL); code != http.StatusOK || body != "ok" {
		t.Fatalf("got %d %q, want 200 ok", code, body)
	}
	if got := wstest.Receive(t, seenReq, 1)[0]; got != (seen{own: "own", signal: true}) {
		t.Fatalf("the request's context: %+v; want the server's own value and a drain signal", got)
	}
	for _, want := range []http.ConnState{http.StateNew, http.StateActive, http.StateIdle} {
		if got := wstest.Receive(t, states, 1)[0]; got != want {
			t.Fatalf("the server's own ConnState saw %v, want %v", got, want)
		}
	}
	ts.Client().CloseIdleConnections()
	wstest.WaitUntil(t, func() bool { return s.Stats().Open == 0 })

	// net/http would wait five seconds for it.
	closed := dialIdle(t, &s, ts, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := s.ShutdownWithServer(ctx, ts.Config); err != nil {
		t.Fatalf("ShutdownWithServer = %v, want nil", err)
	}
	wstest.Receive(t, closed, 1)

	defer func() {
		if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "nil server") {
			t.Fatalf("ConfigureServer(nil) panicked with %v, want a panic that names the nil server", r)
		}
	}()
	s.ConfigureServer(nil)
}
