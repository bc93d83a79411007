package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/wsshutdown/wsshutdown/shutdown"
)

// Chromium's EventSource reads the goodbye said on a drain-unaware
// stream's behalf, a retry field that no empty line follows, as the
// standard says: it dispatches no event for it, and applies the retry, so
// that it reconnects within the stagger window (which bounds the retry)
// rather than after its default of three seconds. The reconnection, during
// the drain, is answered 503.
func TestEventSourceAppliesTheGoodbyesRetry(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser: skipped in -short mode")
	}
	page := openBrowser(t)
	const window = 300 * time.Millisecond
	s := shutdown.New(shutdown.WithStagger(window))
	var mu sync.Mutex
	var ended time.Time
	reconnected := make(chan time.Time, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `<!doctype html><title>es</title><script>
const es = new EventSource("/events");
let messages = 0, empty = 0;
es.onmessage = (e) => { messages++; if (e.data === "") { empty++; } };
</script>`)
	})
	mux.HandleFunc("GET /events", func(w http.ResponseWriter, r *http.Request) { // knows nothing of the drain
		w.Header().Set("Content-Type", "text/event-stream")
		for i := 0; ; i++ {
			if _, err := fmt.Fprintf(w, "data: tick %d\n\n", i); err != nil {
				break
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
			case <-time.After(20 * time.Millisecond):
				continue
			}
			break
		}
		mu.Lock()
		ended = time.Now()
		mu.Unlock()
	})
	wrapped := s.Middleware(mux)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/events" && s.Stats().Draining {
			select {
			case reconnected <- time.Now():
			default:
			}
		}
		wrapped.ServeHTTP(w, r)
	}))
	defer ts.Close()

	if err := chromedp.Do(page, chromedp.Navigate(ts.URL+"/"), waitFor(`messages >= 2`)); err != nil {
		t.Fatalf("the page read no events: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil { // the server keeps listening, for the reconnection
		t.Fatalf("Shutdown: %v", err)
	}
	var at time.Time
	select {
	case at = <-reconnected:
	case <-time.After(10 * time.Second):
		t.Fatal("EventSource did not reconnect")
	}
	mu.Lock()
	delay := at.Sub(ended)
	mu.Unlock()
	t.Logf("reconnected %v after the stream ended", delay)
	if delay > window+time.Second {
		t.Errorf("reconnected %v after the end, want within the %v the retry field allows: the retry was not applied", delay, window)
	}
	empty, err := chromedp.Run(page, chromedp.Evaluate[int](`empty`))
	if err != nil || empty != 0 {
		t.Errorf("%d empty events dispatched, %v; want none", empty, err)
	}
	if got := s.Stats().Rejected; got < 1 {
		t.Errorf("Rejected = %d, want the reconnection answered 503", got)
	}
}
