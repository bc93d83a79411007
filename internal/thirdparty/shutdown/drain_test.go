package shutdown_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsshutdown/wsshutdown/internal/thirdparty/wstest"
	"github.com/wsshutdown/wsshutdown/shutdown"
)

func cancelledContext() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// Requests that arrive while Shutdown runs are either counted, and waited
// for, or answered 503 without running the handler: none runs after
// Shutdown has returned, and the 503s are the Rejected count. Many times, on
// the handler directly so that the race detector sees many interleavings.
func TestRequestsDuringShutdownAreCountedOrRejected(t *testing.T) {
	for range 200 {
		var s shutdown.Shutdowner
		var running, afterShutdown atomic.Int64
		var shutdownDone atomic.Bool
		h := s.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			running.Add(1)
			defer running.Add(-1)
			if shutdownDone.Load() {
				afterShutdown.Add(1)
			}
			for range 10 {
				select {
				case <-shutdown.Draining(r.Context()):
				default:
				}
			}
		}))
		var ok, rejected atomic.Int64
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range 8 {
			wg.Go(func() {
				<-start
				for range 20 {
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
					switch rec.Code {
					case http.StatusOK:
						ok.Add(1)
					case http.StatusServiceUnavailable:
						rejected.Add(1)
					default:
						t.Errorf("status %d", rec.Code)
					}
				}
			})
		}
		close(start)
		if err := s.Shutdown(contextWithTimeout(t, 10*time.Second)); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		if n := running.Load(); n != 0 {
			t.Fatalf("Shutdown returned with %d handlers running", n)
		}
		shutdownDone.Store(true)
		wg.Wait()
		if n := afterShutdown.Load(); n != 0 {
			t.Fatalf("%d handlers ran after Shutdown returned", n)
		}
		st := s.Stats()
		if uint64(rejected.Load()) != st.Rejected || ok.Load()+rejected.Load() != 8*20 {
			t.Fatalf("%d served, %d rejected; Stats() = %+v", ok.Load(), rejected.Load(), st)
		}
	}
}

// The same over real connections: keep-alive clients send requests while
// ShutdownWithServer runs. Every request gets 200 or 503, or fails to
// connect once the server has closed its listener; every 200 was a handler
// that finished before ShutdownWithServer returned.
func TestRequestsDuringShutdownOnLoopback(t *testing.T) {
	for range 10 {
		var s shutdown.Shutdowner
		var served atomic.Int64
		ts, _ := serve(t, &s, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			served.Add(1)
			_, _ = io.WriteString(w, "ok")
		}))
		var ok, rejected atomic.Int64
		var wg sync.WaitGroup
		client := ts.Client()
		started := make(chan struct{}, 4)
		for range 4 {
			wg.Go(func() {
				for i := 0; ; i++ {
					resp, err := client.Get(ts.URL)
					if i == 0 {
						started <- struct{}{}
					}
					if err != nil {
						return // the listener is closed
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					switch resp.StatusCode {
					case http.StatusOK:
						ok.Add(1)
					case http.StatusServiceUnavailable:
						rejected.Add(1)
					default:
						t.Errorf("status %s", resp.Status)
					}
				}
			})
		}
		wstest.Receive(t, started, 4)
		if err := s.ShutdownWithServer(contextWithTimeout(t, 10*time.Second), ts.Config); err != nil {
			t.Fatalf("ShutdownWithServer: %v", err)
		}
		servedAtShutdown := served.Load()
		wg.Wait()
		if served.Load() != servedAtShutdown || ok.Load() != servedAtShutdown {
			t.Fatalf("%d handlers ran by the end of the drain, %d in all, %d responses 200", servedAtShutdown, served.Load(), ok.Load())
		}
		if uint64(rejected.Load()) != s.Stats().Rejected {
			t.Fatalf("clients saw %d 503s, Stats().Rejected = %d", rejected.Load(), s.Stats().Rejected)
		}
	}
}

// A request that arrives during the drain gets 503, "Connection: close" and
// Retry-After, and the handler is not called.
func TestRejectDuringDrain(t *testing.T) {
	for _, tc := range []struct {
		name       string
		opts       []shutdown.Option
		retryAfter string
	}{
		{"default", nil, "5"},
		{"rounded-up", []shutdown.Option{shutdown.WithRetryAfter(1500 * time.Millisecond)}, "2"},
		{"none", []shutdown.Option{shutdown.WithRetryAfter(0)}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := shutdown.New(tc.opts...)
			var called atomic.Bool
			// Unhooked: with ConnState, a connection that arrives once the
			// drain is over is closed instead (connstate_test.go).
			ts, _ := serveUnhooked(t, s, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { called.Store(true) }))
			if err := s.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			resp, err := http.Get(ts.URL)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusServiceUnavailable || !resp.Close {
				t.Errorf("status %s, Connection: close %v; want 503 and close", resp.Status, resp.Close)
			}
			if got := resp.Header.Get("Retry-After"); got != tc.retryAfter {
				t.Errorf("Retry-After %q, want %q", got, tc.retryAfter)
			}
			if !strings.Contains(string(body), "draining") {
				t.Errorf("body %q does not say the server is draining", body)
			}
			if called.Load() {
				t.Error("the handler was called during the drain")
			}
			wantStats(t, s, shutdown.Stats{Rejected: 1, Draining: true})
		})
	}
}

func TestMiddlewareNilHandlerPanics(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "nil handler") {
			t.Fatalf("recover() = %v, want a panic that names the nil handler", r)
		}
	}()
	var s shutdown.Shutdowner
	s.Middleware(nil)
}

func TestShutdownNilContextPanics(t *testing.T) {
	for name, call := range map[string]func(*shutdown.Shutdowner){
		"Shutdown": func(s *shutdown.Shutdowner) { _ = s.Shutdown(nil) }, //nolint:staticcheck // the nil context is the point
		"ShutdownWithServer": func(s *shutdown.Shutdowner) {
			_ = s.ShutdownWithServer(nil, &http.Server{}) //nolint:staticcheck // the nil context is the point
		},
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if r := recover(); r == nil || !strings.Contains(r.(string), "nil context") {
					t.Fatalf("recover() = %v, want a panic that names the nil context", r)
				}
			}()
			call(new(shutdown.Shutdowner))
		})
	}
}

// With nothing running, Shutdown returns nil even when its context has
// already ended; repeated calls return nil at once.
func TestShutdownWithNothingRunning(t *testing.T) {
	var s shutdown.Shutdowner
	for i := range 3 {
		if err := s.Shutdown(cancelledContext()); err != nil {
			t.Fatalf("call %d: Shutdown(cancelled) = %v, want nil", i, err)
		}
	}
	if err := s.ShutdownWithServer(cancelledContext(), nil); err != nil {
		t.Fatalf("ShutdownWithServer(cancelled, nil) = %v, want nil", err)
	}
	select {
	case <-s.Draining():
	default:
		t.Fatal("Draining() is open after Shutdown")
	}
	wantStats(t, &s, shutdown.Stats{Draining: true})
}

// A cancelled context with a handler running reports it, wrapping the
// context's error.
func TestShutdownCancelledWithHandlerRunning(t *testing.T) {
	var s shutdown.Shutdowner
	entered, release := make(chan struct{}), make(chan struct{})
	h := s.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		close(entered)
		<-release
	}))
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil))
	}()
	<-entered
	err := s.Shutdown(cancelledContext())
	if !errors.Is(err, context.Canceled) || err.Error() != "shutdown: 1 handler and 0 hijacked connections still open: context canceled" {
		t.Fatalf("Shutdown(cancelled) = %v", err)
	}
	close(release)
	<-done
	if err := s.Shutdown(cancelledContext()); err != nil {
		t.Fatalf("Shutdown after the handler returned = %v, want nil", err)
	}
}

// Concurrent Shutdown calls all wait on the same drain and all return nil
// when it completes: each sees, as it returns, that the handler has finished.
func TestConcurrentShutdownCalls(t *testing.T) {
	var s shutdown.Shutdowner
	entered, release := make(chan struct{}), make(chan struct{})
	var finished atomic.Bool
	h := s.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-shutdown.Draining(r.Context())
		<-release
		finished.Store(true)
	}))
	go h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil))
	<-entered
	const callers = 10
	type result struct {
		err      error
		finished bool // the handler's state when Shutdown returned
	}
	results := make(chan result, callers)
	for range callers {
		go func() {
			err := s.Shutdown(contextWithTimeout(t, 10*time.Second))
			results <- result{err, finished.Load()}
		}()
	}
	<-s.Draining()
	close(release)
	for i, r := range wstest.Receive(t, results, callers) {
		if r.err != nil || !r.finished {
			t.Errorf("caller %d: Shutdown returned %v with the handler finished: %v", i, r.err, r.finished)
		}
	}
}

// A panicking handler is counted out, and its panic reaches net/http.
func TestPanickingHandler(t *testing.T) {
	var s shutdown.Shutdowner
	var logged bytes.Buffer
	var mu sync.Mutex
	ts, returned := serve(t, &s, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		panic("handler bug")
	}))
	ts.Config.ErrorLog = log.New(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logged.Write(p)
	}), "", 0)
	if resp, err := http.Get(ts.URL); err == nil {
		resp.Body.Close()
		t.Fatal("a request whose handler panicked got a response")
	}
	wstest.Receive(t, returned, 1)
	wantStats(t, &s, shutdown.Stats{})
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logged.String(), "handler bug") {
		t.Fatalf("net/http logged %q, want the handler's panic", logged.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestDrainErrorMessage(t *testing.T) {
	for _, tc := range []struct {
		active, hijacked int
		want             string
	}{
		{2, 3, "shutdown: 2 handlers and 3 hijacked connections still open: context deadline exceeded"},
		{1, 1, "shutdown: 1 handler and 1 hijacked connection still open: context deadline exceeded"},
		{0, 5, "shutdown: 0 handlers and 5 hijacked connections still open: context deadline exceeded"},
	} {
		err := error(&shutdown.DrainError{Active: tc.active, Hijacked: tc.hijacked, Err: context.DeadlineExceeded})
		if err.Error() != tc.want {
			t.Errorf("Error() = %q, want %q", err.Error(), tc.want)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("errors.Is(%v, DeadlineExceeded) = false", err)
		}
	}
}

// Draining(ctx) is the request's signal in the handler and in contexts
// derived from the request's, and nil elsewhere.
func TestDrainingContext(t *testing.T) {
	var s shutdown.Shutdowner
	if shutdown.Draining(context.Background()) != nil {
		t.Error("Draining(Background) is not nil")
	}
	if shutdown.Draining(nil) != nil { //nolint:staticcheck // the nil context is the point
		t.Error("Draining(nil) is not nil")
	}
	type key struct{}
	var inHandler, derived <-chan struct{}
	var parentValue, value any
	s.Middleware(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		inHandler = shutdown.Draining(r.Context())
		parentValue = r.Context().Value(key{})
		ctx, cancel := context.WithCancel(context.WithValue(r.Context(), key{}, "v"))
		defer cancel()
		derived = shutdown.Draining(ctx)
		value = ctx.Value(key{})
	})).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil).WithContext(context.WithValue(context.Background(), key{}, "parent")))
	if inHandler == nil || inHandler != derived {
		t.Fatalf("Draining in the handler %v, in a derived context %v: want the same signal", inHandler, derived)
	}
	if parentValue != "parent" || value != "v" {
		t.Errorf("values: from the request's parent context %v, from a derived one %v", parentValue, value)
	}
	_ = s.Shutdown(context.Background())
	select {
	case <-inHandler:
	default:
		t.Fatal("the request's signal is open after the drain began")
	}
}
