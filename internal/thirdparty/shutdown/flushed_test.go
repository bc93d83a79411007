package shutdown_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/wsshutdown/wsshutdown/internal/thirdparty/wstest"
	"github.com/wsshutdown/wsshutdown/shutdown"
)

// watchEvent is a line of an NDJSON watch, Kubernetes style.
type watchEvent struct {
	Type string `json:"type"`
	N    int    `json:"n"`
}

// ndjsonWatch streams a JSON line every 5 ms, knowing nothing of the
// drain, until its request's context ends; contentType is the stream's.
func ndjsonWatch(contentType string, started chan<- struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", contentType)
		enc := json.NewEncoder(w)
		ticker := time.NewTicker(5 * time.Millisecond)
		defer ticker.Stop()
		for i := 0; ; i++ {
			if err := enc.Encode(watchEvent{Type: "ADDED", N: i}); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			if i == 2 {
				started <- struct{}{}
			}
			select {
			case <-r.Context().Done():
				return
			case <-ticker.C:
			}
		}
	})
}

// readLines reads url's lines as JSON watch events, checks that they count
// up from 0, and sends how the stream ended: nil for a clean end.
func readLines(t *testing.T, client *http.Client, url string) <-chan error {
	t.Helper()
	resp, err := client.Get(url) //nolint:bodyclose // closed by the reading goroutine
	if err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, 1)
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		n := 0
		for ; sc.Scan(); n++ {
			var ev watchEvent
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil || ev.N != n {
				ended <- fmt.Errorf("line %d is %q", n, sc.Bytes())
				return
			}
		}
		if err := sc.Err(); err != nil {
			ended <- fmt.Errorf("after %d lines: %w", n, err)
			return
		}
		ended <- nil
	}()
	return ended
}

// Streamed responses of no framing the Shutdowner knows, an NDJSON watch
// and a centrifuge-style text/plain stream, end cleanly when the drain
// begins: their contexts are cancelled between two writes, so every
// client reads whole lines and a clean end, and the drain ends at once.
func TestFlushedStreamsEndCleanly(t *testing.T) {
	const n = 20
	for _, contentType := range []string{"application/json", "text/plain; charset=utf-8", "application/x-ndjson"} {
		t.Run(contentType, func(t *testing.T) {
			var s shutdown.Shutdowner
			started := make(chan struct{}, n)
			ts, _ := serve(t, &s, ndjsonWatch(contentType, started))
			clients := make([]<-chan error, n)
			for i := range clients {
				clients[i] = readLines(t, ts.Client(), ts.URL)
			}
			wstest.Receive(t, started, n)
			start := time.Now()
			if err := s.ShutdownWithServer(contextWithTimeout(t, 10*time.Second), ts.Config); err != nil {
				t.Fatalf("ShutdownWithServer: %v, want nil", err)
			}
			t.Logf("%d streams drained in %v", n, time.Since(start))
			for i, c := range clients {
				if err := wstest.Receive(t, c, 1)[0]; err != nil {
					t.Errorf("client %d: %v, want whole lines and a clean end", i, err)
				}
			}
			if got := s.Stats().Goodbyes; got != n {
				t.Errorf("Stats().Goodbyes = %d, want %d", got, n)
			}
		})
	}
}

// A plain request that is running when the drain begins finishes, with
// its 200: its context is not cancelled.
func TestRunningPlainRequestCompletes(t *testing.T) {
	var s shutdown.Shutdowner
	running := make(chan struct{})
	ts, _ := serve(t, &s, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(running)
		select {
		case <-time.After(200 * time.Millisecond):
			_, _ = io.WriteString(w, "done")
		case <-r.Context().Done():
			http.Error(w, "cancelled", http.StatusServiceUnavailable)
		}
	}))
	type result struct {
		code int
		body string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := ts.Client().Get(ts.URL)
		if err != nil {
			got <- result{err: err}
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		got <- result{resp.StatusCode, string(body), err}
	}()
	<-running
	if err := s.ShutdownWithServer(contextWithTimeout(t, 10*time.Second), ts.Config); err != nil {
		t.Fatalf("ShutdownWithServer: %v", err)
	}
	if r := wstest.Receive(t, got, 1)[0]; r.err != nil || r.code != http.StatusOK || r.body != "done" {
		t.Fatalf("client got %d %q, %v; want 200 \"done\"", r.code, r.body, r.err)
	}
}
