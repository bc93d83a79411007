package shutdown_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/wsshutdown/wsshutdown/shutdown"
)

// An event stream whose handler knows nothing of the drain, wrapped as it
// is: when the drain begins the Shutdowner ends the stream between two
// events with a retry field, and the handler's next write fails, so that
// ShutdownWithServer returns at once. The websocket examples, with
// gorilla/websocket and coder/websocket, are in internal/thirdparty.
func ExampleShutdowner_Middleware() {
	var s shutdown.Shutdowner // the zero value is ready to use
	ticks := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		for i := 0; ; i++ { // no drain signal anywhere
			if _, err := fmt.Fprintf(w, "data: tick %d\n\n", i); err != nil {
				return
			}
			if rc.Flush() != nil {
				return
			}
			select {
			case <-r.Context().Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	})
	srv := httptest.NewServer(s.Middleware(ticks))
	defer srv.Close()

	resp, err := http.Get(srv.URL)
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	lines := bufio.NewScanner(resp.Body)
	lines.Scan()
	fmt.Println(lines.Text()) // the first event: the stream is up

	drained := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		drained <- s.ShutdownWithServer(ctx, srv.Config)
	}()
	var last string
	for lines.Scan() { // to the end of the stream
		if lines.Text() != "" {
			last = lines.Text()
		}
	}
	fmt.Println(strings.HasPrefix(last, "retry: "), lines.Err())
	fmt.Println(<-drained, s.Stats().Goodbyes)
	// Output:
	// data: tick 0
	// true <nil>
	// <nil> 1
}

// Shutdown alone drains the handlers; the caller shuts its server down as
// it likes. At the deadline it closes the hijacked connections that are
// left and reports what it found.
func ExampleShutdowner_Shutdown() {
	s := shutdown.New(shutdown.WithRetryAfter(10 * time.Second))
	running, hung := make(chan struct{}), make(chan struct{})
	defer close(hung)
	h := s.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		close(running)
		<-hung // a handler that ignores the drain
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	go func() {
		if resp, err := http.Get("http://" + ln.Addr().String()); err == nil {
			resp.Body.Close()
		}
	}()
	<-running

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err = s.Shutdown(ctx)
	fmt.Println(err)
	fmt.Println(errors.Is(err, context.DeadlineExceeded))
	// Output:
	// shutdown: 1 handler and 0 hijacked connections still open: context deadline exceeded
	// true
}

// ShutdownWithServer is the whole of a plain net/http program's shutdown:
// on SIGTERM or Ctrl-C, stop accepting, tell the handlers, wait for them,
// and close what is left after ten seconds.
func ExampleShutdowner_ShutdownWithServer() {
	var s shutdown.Shutdowner
	srv := &http.Server{
		Addr: "127.0.0.1:0",
		Handler: s.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintln(w, "hello")
		})),
	}
	// In a real program: ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.ListenAndServe() }()

	stop() // the signal arrives
	<-ctx.Done()
	drainCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fmt.Println("drain:", s.ShutdownWithServer(drainCtx, srv))
	fmt.Println("serve:", <-served)
	// Output:
	// drain: <nil>
	// serve: http: Server closed
}

// A server-sent-events stream ends with a last event when the server
// drains, so that http.Server.Shutdown, which waits for it, can finish.
func Example_serverSentEvents() {
	var s shutdown.Shutdowner
	http.Handle("/events", s.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		ticker := time.NewTicker(time.Second)
		defer ticker.Stop()
		for {
			select {
			case <-r.Context().Done():
				return
			case <-shutdown.Draining(r.Context()):
				fmt.Fprint(w, "event: shutdown\ndata: server shutting down\n\n")
				_ = rc.Flush()
				return
			case t := <-ticker.C:
				fmt.Fprintf(w, "data: %s\n\n", t.Format(time.RFC3339))
				if rc.Flush() != nil {
					return
				}
			}
		}
	})))
}

// A stream that must not be cut, such as a model's output, finishes on its
// own: no goodbye, no cancelled context, no failed write, until the
// deadline.
func ExampleLetFinish() {
	var s shutdown.Shutdowner
	mux := http.NewServeMux()
	mux.Handle("/generate", shutdown.LetFinish(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for _, token := range []string{"every", "token", "arrives"} {
			fmt.Fprintf(w, "data: %s\n\n", token)
			w.(http.Flusher).Flush()
		}
	})))
	srv := &http.Server{Addr: ":8080", Handler: s.Middleware(mux)}
	go srv.ListenAndServe() //nolint:errcheck // as in the netHTTP example

	// On SIGTERM, as in the netHTTP example: the stream has until the
	// deadline to finish.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	log.Print(s.ShutdownWithServer(ctx, srv))
}
