package shutdown_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	connectrpc "connectrpc.com/connect"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/wsshutdown/wsshutdown/internal/thirdparty/wstest"
	"github.com/wsshutdown/wsshutdown/shutdown"
)

// serveHooked is serve with the server's ConnContext and ConnState hooks,
// as the README wires a server; the server also speaks h2c.
func serveHooked(t testing.TB, s *shutdown.Shutdowner, h http.Handler) *httptest.Server {
	t.Helper()
	ts := httptest.NewUnstartedServer(s.Middleware(h))
	ts.Config.ConnContext = s.ConnContext
	ts.Config.ConnState = s.ConnState
	ts.Config.Protocols = h2c(true)
	ts.Start()
	t.Cleanup(ts.Close)
	return ts
}

// answer is what a client of a request got.
type answer struct {
	code       int
	body       string
	retryAfter string
	close      bool
	err        error
}

// fetch gets url with client, in a goroutine, and sends what came back.
func fetch(t testing.TB, client *http.Client, url string) <-chan answer {
	t.Helper()
	got := make(chan answer, 1)
	go func() {
		resp, err := client.Get(url)
		if err != nil {
			got <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		got <- answer{resp.StatusCode, string(body), resp.Header.Get("Retry-After"), resp.Close, err}
	}()
	return got
}

// A long poll waits on its request's context, knowing nothing of the
// drain. After the grace it is cancelled: one that then says nothing gets
// 503 with Retry-After (and, over HTTP/1.1, Connection: close), one that
// answers for itself gets its answer, and the drain ends long before its
// deadline. Over h2c the 20 polls share one connection, whose context is
// cancelled because all its requests are pending.
func TestLongPollsEndAfterTheGrace(t *testing.T) {
	for _, proto := range []string{"HTTP/1.1", "h2c"} {
		t.Run(proto, func(t *testing.T) { testLongPolls(t, proto == "h2c") })
	}
}

func testLongPolls(t *testing.T, useH2C bool) {
	const n, grace = 20, 100 * time.Millisecond
	for _, tc := range []struct {
		name    string
		onEnd   func(w http.ResponseWriter) // what the handler does when its context ends
		code    int
		body    string
		refused bool
	}{
		{"says nothing", func(http.ResponseWriter) {}, http.StatusServiceUnavailable, "shutdown: server is draining\n", true},
		{"answers itself", func(w http.ResponseWriter) { _, _ = io.WriteString(w, `{"events":[]}`) }, http.StatusOK, `{"events":[]}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := shutdown.New(shutdown.WithPendingGrace(grace))
			waiting := make(chan struct{}, n)
			ts := serveHooked(t, s, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				waiting <- struct{}{}
				select {
				case <-r.Context().Done():
					tc.onEnd(w)
				case <-time.After(time.Minute):
					_, _ = io.WriteString(w, "an event")
				}
			}))
			client := ts.Client()
			if useH2C {
				client = h2cClient(ts)
			}
			answers := make([]<-chan answer, n)
			for i := range answers {
				answers[i] = fetch(t, client, ts.URL)
			}
			wstest.Receive(t, waiting, n)
			start := time.Now()
			if err := s.ShutdownWithServer(contextWithTimeout(t, 10*time.Second), ts.Config); err != nil {
				t.Fatalf("ShutdownWithServer: %v, want nil", err)
			}
			took := time.Since(start)
			t.Logf("%d long polls drained in %v", n, took)
			if took < grace {
				t.Errorf("drained in %v, before the %v grace", took, grace)
			}
			for i, c := range answers {
				a := wstest.Receive(t, c, 1)[0]
				if a.err != nil || a.code != tc.code || a.body != tc.body {
					t.Errorf("client %d: %d %q, %v; want %d %q", i, a.code, a.body, a.err, tc.code, tc.body)
				}
				if tc.refused && (a.retryAfter == "" || !a.close && !useH2C) {
					t.Errorf("client %d: Retry-After %q, Connection: close %v; want both", i, a.retryAfter, a.close)
				}
			}
		})
	}
}

// Within the grace, a plain request running when the drain begins
// finishes with its 200; one that has written anything, or runs under
// LetFinish, is never cancelled.
func TestRequestsThatAreNotPending(t *testing.T) {
	s := shutdown.New(shutdown.WithPendingGrace(50 * time.Millisecond))
	running := make(chan struct{}, 3)
	slow := func(w http.ResponseWriter, r *http.Request, wroteFirst bool) {
		if wroteFirst {
			w.WriteHeader(http.StatusOK)
		}
		running <- struct{}{}
		select {
		case <-time.After(300 * time.Millisecond):
			_, _ = io.WriteString(w, "done")
		case <-r.Context().Done():
			http.Error(w, "cancelled", http.StatusInternalServerError)
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/plain", func(w http.ResponseWriter, r *http.Request) { slow(w, r, false) })
	mux.HandleFunc("/wrote", func(w http.ResponseWriter, r *http.Request) { slow(w, r, true) })
	mux.Handle("/finish", shutdown.LetFinish(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { slow(w, r, false) })))
	ts := serveHooked(t, s, mux)
	short := fetch(t, ts.Client(), ts.URL+"/wrote")
	finish := fetch(t, ts.Client(), ts.URL+"/finish")
	wstest.Receive(t, running, 2)
	if err := s.ShutdownWithServer(contextWithTimeout(t, 10*time.Second), ts.Config); err != nil {
		t.Fatalf("ShutdownWithServer: %v", err)
	}
	for name, c := range map[string]<-chan answer{"wrote first": short, "LetFinish": finish} {
		if a := wstest.Receive(t, c, 1)[0]; a.err != nil || a.code != http.StatusOK || a.body != "done" {
			t.Errorf("%s: %d %q, %v; want 200 \"done\"", name, a.code, a.body, a.err)
		}
	}

	// With the default grace, a plain request of 300 ms finishes.
	s = new(shutdown.Shutdowner)
	ts = serveHooked(t, s, mux)
	plain := fetch(t, ts.Client(), ts.URL+"/plain")
	wstest.Receive(t, running, 1)
	if err := s.ShutdownWithServer(contextWithTimeout(t, 10*time.Second), ts.Config); err != nil {
		t.Fatalf("ShutdownWithServer: %v", err)
	}
	if a := wstest.Receive(t, plain, 1)[0]; a.err != nil || a.code != http.StatusOK || a.body != "done" {
		t.Errorf("plain: %d %q, %v; want 200 \"done\"", a.code, a.body, a.err)
	}
}

// A Connect stream that waits, with nothing sent, is pending like a long
// poll: after the grace its client reads UNAVAILABLE "server shutting
// down", the Shutdowner's end of stream, before the handler's own.
func TestPendingConnectStream(t *testing.T) {
	const procedure = testgrpc.TestService_StreamingOutputCall_FullMethodName
	s := shutdown.New(shutdown.WithPendingGrace(50 * time.Millisecond))
	waiting := make(chan struct{}, 1)
	mux := http.NewServeMux()
	mux.Handle(procedure, connectrpc.NewServerStreamHandler(procedure,
		func(ctx context.Context, _ *connectrpc.Request[testgrpc.StreamingOutputCallRequest], _ *connectrpc.ServerStream[testgrpc.StreamingOutputCallResponse]) error {
			waiting <- struct{}{}
			<-ctx.Done() // for an event that never comes
			return ctx.Err()
		}))
	ts := serveHooked(t, s, mux)
	c := connectrpc.NewClient[testgrpc.StreamingOutputCallRequest, testgrpc.StreamingOutputCallResponse](ts.Client(), ts.URL+procedure)
	ended := make(chan error, 1)
	go func() {
		stream, err := c.CallServerStream(context.Background(), connectrpc.NewRequest(&testgrpc.StreamingOutputCallRequest{}))
		if err != nil {
			ended <- err
			return
		}
		defer stream.Close()
		for stream.Receive() {
		}
		ended <- stream.Err()
	}()
	wstest.Receive(t, waiting, 1)
	if err := s.ShutdownWithServer(contextWithTimeout(t, 10*time.Second), ts.Config); err != nil {
		t.Fatalf("ShutdownWithServer: %v", err)
	}
	err := wstest.Receive(t, ended, 1)[0]
	if connectrpc.CodeOf(err) != connectrpc.CodeUnavailable {
		t.Fatalf("client: %v, want unavailable", err)
	}
	var ce *connectrpc.Error
	if !errors.As(err, &ce) || ce.Message() != "server shutting down" {
		t.Fatalf("client: %v, want the message \"server shutting down\"", err)
	}
}

// Over HTTP/2 a pending long poll shares its connection's context with the
// connection's other requests: beside one that has written, it is not
// cancelled, and the writing one finishes with its 200. Once that one has
// returned, the poll is the connection's last request, all pending: it is
// cancelled then and answered 503, and the drain ends long before its
// deadline.
func TestSharedConnectionKeepsAWritingRequest(t *testing.T) {
	s := shutdown.New(shutdown.WithPendingGrace(20 * time.Millisecond))
	running := make(chan string, 2) // the client's address
	wroteReturned := make(chan struct{})
	pollCancelledEarly := make(chan bool, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("/poll", func(w http.ResponseWriter, r *http.Request) {
		running <- r.RemoteAddr
		<-r.Context().Done()
		select {
		case <-wroteReturned:
			pollCancelledEarly <- false
		default:
			pollCancelledEarly <- true
		}
	})
	mux.HandleFunc("/wrote", func(w http.ResponseWriter, r *http.Request) {
		defer close(wroteReturned)
		w.WriteHeader(http.StatusOK)
		running <- r.RemoteAddr
		select {
		case <-time.After(300 * time.Millisecond):
			_, _ = io.WriteString(w, "done")
		case <-r.Context().Done():
		}
	})
	ts := serveHooked(t, s, mux)
	client := h2cClient(ts)
	// The first request makes the connection, which the second then shares.
	poll := fetch(t, client, ts.URL+"/poll")
	pollAddr := wstest.Receive(t, running, 1)[0]
	wrote := fetch(t, client, ts.URL+"/wrote")
	if wroteAddr := wstest.Receive(t, running, 1)[0]; wroteAddr != pollAddr {
		t.Fatalf("the requests came on two connections, %s and %s", pollAddr, wroteAddr)
	}
	start := time.Now()
	if err := s.ShutdownWithServer(contextWithTimeout(t, 10*time.Second), ts.Config); err != nil {
		t.Errorf("ShutdownWithServer = %v, want nil", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the drain took %v: the poll held it", took)
	}
	if a := wstest.Receive(t, wrote, 1)[0]; a.err != nil || a.code != http.StatusOK || a.body != "done" {
		t.Errorf("the writing request got %d %q, %v; want 200 \"done\"", a.code, a.body, a.err)
	}
	if wstest.Receive(t, pollCancelledEarly, 1)[0] {
		t.Error("the poll was cancelled while the writing request ran on its connection")
	}
	if a := wstest.Receive(t, poll, 1)[0]; a.err != nil || a.code != http.StatusServiceUnavailable || a.retryAfter == "" {
		t.Errorf("the poll got %d %q (Retry-After %q), %v; want 503 with Retry-After", a.code, a.body, a.retryAfter, a.err)
	}
}
