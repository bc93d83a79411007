package shutdown_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/wsshutdown/wsshutdown/shutdown"
)

// serve runs h behind s's middleware on a real loopback server, wired as
// the README wires one: with s's ConnContext and ConnState hooks, so that
// plain HTTP/1 requests are served with their connection's context and a
// reused writer. Each time a wrapped handler has returned, and so is no
// longer counted, returned receives.
func serve(t testing.TB, s *shutdown.Shutdowner, h http.Handler) (ts *httptest.Server, returned <-chan struct{}) {
	t.Helper()
	return serveWith(t, s, h, true)
}

// serveUnhooked is serve without the hooks: the middleware alone, whose
// requests carry their context in a copy of the request.
func serveUnhooked(t testing.TB, s *shutdown.Shutdowner, h http.Handler) (ts *httptest.Server, returned <-chan struct{}) {
	t.Helper()
	return serveWith(t, s, h, false)
}

func serveWith(t testing.TB, s *shutdown.Shutdowner, h http.Handler, hooked bool) (ts *httptest.Server, returned <-chan struct{}) {
	t.Helper()
	ret := make(chan struct{}, 10000)
	mw := s.Middleware(h)
	ts = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() { ret <- struct{}{} }()
		mw.ServeHTTP(w, r)
	}))
	if hooked {
		ts.Config.ConnContext, ts.Config.ConnState = s.ConnContext, s.ConnState
	}
	ts.Start()
	t.Cleanup(ts.Close)
	return ts, ret
}

func wsURL(ts *httptest.Server) string {
	return "ws" + strings.TrimPrefix(ts.URL, "http")
}

func contextWithTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// wantStats fails the test unless s's counts are the ones given. Open,
// which net/http's ConnState hook keeps, may lag: net/http tells the hook
// of a closed connection from the connection's goroutine, after the
// handler has returned, so wantStats gives it a few seconds to agree.
func wantStats(t testing.TB, s *shutdown.Shutdowner, want shutdown.Stats) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); s.Stats().Open != want.Open && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if got := s.Stats(); got != want {
		t.Fatalf("Stats() = %+v, want %+v", got, want)
	}
}

// httpServer serves h, without the middleware, on a real loopback server.
func httpServer(t testing.TB, h http.Handler) *httptest.Server {
	t.Helper()
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return ts
}

// shutdownQuickly drains s with srv under a 10 s budget, and fails the test
// unless the drain succeeds within a quarter of it: what goodbyes said on
// the handlers' behalf promise, rather than a drain that runs to its
// deadline.
func shutdownQuickly(t testing.TB, s *shutdown.Shutdowner, srv *http.Server) {
	t.Helper()
	const budget = 10 * time.Second
	start := time.Now()
	if err := s.ShutdownWithServer(contextWithTimeout(t, budget), srv); err != nil {
		t.Fatalf("ShutdownWithServer: %v", err)
	}
	if took := time.Since(start); took > budget/4 {
		t.Errorf("the drain took %v of its %v", took, budget)
	}
}
