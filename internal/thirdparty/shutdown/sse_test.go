package shutdown_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/wsshutdown/wsshutdown/internal/thirdparty/wstest"
	"github.com/wsshutdown/wsshutdown/shutdown"
)

// sseHandler streams a tick event whenever ticks receives; with goodbye it
// ends the stream on the request's drain signal with "event: shutdown".
func sseHandler(ticks <-chan struct{}, goodbye bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		_ = rc.Flush() // the headers: the client's Get returns
		drain := shutdown.Draining(r.Context())
		if !goodbye {
			drain = nil
		}
		for i := 0; ; i++ {
			select {
			case <-drain:
				fmt.Fprint(w, "event: shutdown\ndata: bye\n\n")
				_ = rc.Flush()
				return
			case <-ticks:
			case <-r.Context().Done():
				return
			}
			if _, err := fmt.Fprintf(w, "data: tick %d\n\n", i); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
		}
	})
}

// getStream sends a GET for an event stream and fails the test unless it is
// answered 200. The caller closes the body.
func getStream(t testing.TB, client *http.Client, url string) *http.Response {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	return resp
}

// readEvents reads an event stream and sends each line; the channel is
// closed when the stream ends, and err then says how.
func readEvents(t testing.TB, url string) (lines <-chan string, err *error) {
	t.Helper()
	resp := getStream(t, http.DefaultClient, url) //nolint:bodyclose // closed by the reading goroutine
	c := make(chan string, 100)
	err = new(error)
	go func() {
		defer resp.Body.Close()
		defer close(c)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if sc.Text() != "" {
				c <- sc.Text()
			}
		}
		*err = sc.Err()
	}()
	return c, err
}

// An SSE handler that ends its stream on Draining lets ShutdownWithServer
// finish, and its client sees the goodbye and a clean end of stream.
func TestSSEGoodbyeLetsServerShutdown(t *testing.T) {
	var s shutdown.Shutdowner
	ticks := make(chan struct{})
	ts, _ := serve(t, &s, sseHandler(ticks, true))
	lines, readErr := readEvents(t, ts.URL)
	ticks <- struct{}{}
	if got := wstest.Receive(t, lines, 1)[0]; got != "data: tick 0" {
		t.Fatalf("first line %q, want the first tick", got)
	}

	if err := s.ShutdownWithServer(contextWithTimeout(t, 10*time.Second), ts.Config); err != nil {
		t.Fatalf("ShutdownWithServer: %v", err)
	}
	var rest []string
	for l := range lines {
		rest = append(rest, l)
	}
	if want := []string{"event: shutdown", "data: bye"}; fmt.Sprint(rest) != fmt.Sprint(want) {
		t.Fatalf("after the drain the client read %q, want %q", rest, want)
	}
	if *readErr != nil {
		t.Fatalf("stream ended with %v, want a clean end", *readErr)
	}
	wantStats(t, &s, shutdown.Stats{Draining: true})
}

// An SSE handler that ignores the drain would hold http.Server.Shutdown
// forever; ShutdownWithServer returns at the deadline, closes its
// connection, and reports it.
func TestSSEIgnoringDrainIsClosedAtDeadline(t *testing.T) {
	var s shutdown.Shutdowner
	ticks := make(chan struct{})
	ts, returned := serve(t, &s, sseHandler(ticks, false))
	lines, readErr := readEvents(t, ts.URL)
	ticks <- struct{}{}
	wstest.Receive(t, lines, 1)

	err := s.ShutdownWithServer(contextWithTimeout(t, 100*time.Millisecond), ts.Config)
	var de *shutdown.DrainError
	if !errors.As(err, &de) || de.Active != 1 || de.Hijacked != 0 {
		t.Fatalf("ShutdownWithServer = %v, want a DrainError with 1 handler", err)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("errors.Is(%v, context.DeadlineExceeded) = false", err)
	}
	for range lines {
	}
	if *readErr == nil {
		t.Error("the stream ended cleanly; want it cut by the server's Close")
	}
	wstest.Receive(t, returned, 1)
	wantStats(t, &s, shutdown.Stats{Draining: true})
}
