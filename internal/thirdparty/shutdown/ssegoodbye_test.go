package shutdown_test

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/wsshutdown/wsshutdown/internal/thirdparty/wstest"
	"github.com/wsshutdown/wsshutdown/shutdown"
)

// Event-stream handlers as users write them, knowing nothing of the drain.
var unawareStreams = map[string]http.Handler{
	// Loops on the request's context and a ticker. Each event goes out in
	// three writes, so that the goodbye has to wait for its end.
	"context-loop": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		rc := http.NewResponseController(w)
		ticker := time.NewTicker(5 * time.Millisecond)
		defer ticker.Stop()
		for i := 0; ; i++ {
			select {
			case <-r.Context().Done():
				return
			case <-ticker.C:
				fmt.Fprint(w, "event: tick\n")
				fmt.Fprintf(w, "data: %d", i)
				fmt.Fprintf(w, " %d\n\n", i)
				_ = rc.Flush()
			}
		}
	}),
	// Stops when a write fails, and never looks at its context.
	"write-error": http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
		for i := 0; ; i++ {
			if _, err := fmt.Fprintf(w, "data: %d %d\n\n", i, i); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			time.Sleep(5 * time.Millisecond)
		}
	}),
	// gin's c.Stream, as in gin's documentation, fed by a ticker.
	"gin-stream": func() http.Handler {
		gin.SetMode(gin.ReleaseMode)
		r := gin.New()
		r.GET("/", func(c *gin.Context) {
			ticker := time.NewTicker(5 * time.Millisecond)
			defer ticker.Stop()
			i := 0
			c.Stream(func(io.Writer) bool {
				<-ticker.C
				c.SSEvent("tick", fmt.Sprintf("%d %d", i, i))
				i++
				return true
			})
		})
		return r
	}(),
}

// streamEnd is what an event-stream client saw.
type streamEnd struct {
	events int    // whole events, each checked
	retry  string // the last retry field's value
	err    error  // how the stream ended: nil for a clean end
}

// readStream reads url's event stream as EventSource parses it, checks
// that every event's data is "N N" with N counting up from 0, and sends
// what it saw when the stream ends.
func readStream(t testing.TB, client *http.Client, url string, first chan<- struct{}) <-chan streamEnd {
	t.Helper()
	resp := getStream(t, client, url) //nolint:bodyclose // closed by the reading goroutine
	ended := make(chan streamEnd, 1)
	go func() {
		defer resp.Body.Close()
		var end streamEnd
		var data []string
		br := bufio.NewReader(resp.Body)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				if err != io.EOF || line != "" {
					end.err = fmt.Errorf("after %d events: %w (partial line %q)", end.events, err, line)
				}
				break
			}
			line = strings.TrimRight(line, "\r\n")
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "":
				if len(data) == 0 {
					continue
				}
				if want := fmt.Sprintf("%d %d", end.events, end.events); strings.Join(data, "\n") != want {
					end.err = fmt.Errorf("event %d has data %q, want %q", end.events, data, want)
					ended <- end
					return
				}
				data = nil
				if end.events++; end.events == 3 {
					first <- struct{}{}
				}
			case "data":
				data = append(data, value)
			case "retry":
				end.retry = value
			}
		}
		if len(data) > 0 {
			end.err = fmt.Errorf("a cut event: %q", data)
		}
		ended <- end
	}()
	return ended
}

// Each drain-unaware event stream, over HTTP/1.1 and HTTP/2, is ended on
// its handler's behalf: every client reads whole events, then a retry
// field, then a clean end of stream; the drain ends long before its
// deadline.
func TestStreamGoodbyes(t *testing.T) {
	const n = 20
	for name, h := range unawareStreams {
		for _, proto := range []string{"HTTP/1.1", "HTTP/2"} {
			t.Run(name+"/"+proto, func(t *testing.T) {
				var s shutdown.Shutdowner
				ts := httptest.NewUnstartedServer(s.Middleware(h))
				if proto == "HTTP/2" {
					ts.EnableHTTP2 = true
					ts.StartTLS()
				} else {
					ts.Start()
				}
				t.Cleanup(ts.Close)
				first := make(chan struct{}, n)
				clients := make([]<-chan streamEnd, n)
				for i := range clients {
					clients[i] = readStream(t, ts.Client(), ts.URL+"/", first)
				}
				wstest.Receive(t, first, n)

				shutdownQuickly(t, &s, ts.Config)
				for _, c := range clients {
					end := wstest.Receive(t, c, 1)[0]
					if end.err != nil {
						t.Fatalf("client: %v", end.err)
					}
					if ms, err := strconv.Atoi(end.retry); err != nil || ms < 0 || ms > 5000 {
						t.Fatalf("retry field %q, want a delay of at most 5 s in ms", end.retry)
					}
				}
				if got := s.Stats().Goodbyes; got != n {
					t.Errorf("Goodbyes = %d, want %d", got, n)
				}
			})
		}
	}
}

// A stream marked with LetFinish is not ended on its behalf: it ends by
// itself 300 ms into the drain, and its client reads every event.
func TestLetFinishStream(t *testing.T) {
	var s shutdown.Shutdowner
	started := make(chan struct{})
	ts, _ := serve(t, &s, shutdown.LetFinish(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		var until time.Time
		for i := 0; time.Now().Before(until) || until.IsZero(); i++ {
			if _, err := fmt.Fprintf(w, "data: %d %d\n\n", i, i); err != nil {
				t.Errorf("write %d: %v", i, err)
				return
			}
			w.(http.Flusher).Flush()
			if until.IsZero() && s.Stats().Draining {
				until = time.Now().Add(300 * time.Millisecond)
			}
			if i == 3 {
				close(started)
			}
			time.Sleep(5 * time.Millisecond)
		}
		if r.Context().Err() != nil {
			t.Errorf("the request's context ended: %v", r.Context().Err())
		}
		fmt.Fprint(w, "event: done\ndata: finished\n\n")
	})))
	resp, err := http.Get(ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	<-started
	shutdownQuickly(t, &s, ts.Config)
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the stream: %v", err)
	}
	events := strings.Split(strings.TrimSuffix(string(body), "\n\n"), "\n\n")
	for i, e := range events[:len(events)-1] {
		if want := fmt.Sprintf("data: %d %d", i, i); e != want {
			t.Fatalf("event %d is %q, want %q", i, e, want)
		}
	}
	if last := events[len(events)-1]; last != "event: done\ndata: finished" || len(events) < 40 {
		t.Fatalf("%d events ending with %q, want the whole stream", len(events), last)
	}
	if got := s.Stats().Goodbyes; got != 0 {
		t.Fatalf("Goodbyes = %d, want 0", got)
	}
}

// An event stream with a Content-Encoding is never written into: its bytes
// are an encoder's, whatever they look like. Here they look like events
// (an encoding the client leaves alone), so that a goodbye written among
// them would show. Like any flushed stream of unknown framing it ends as
// its context is cancelled: the client reads whole events, no retry
// field, then a clean end.
func TestEncodedStreamIsNeverWrittenInto(t *testing.T) {
	var s shutdown.Shutdowner
	started := make(chan struct{})
	ts, _ := serve(t, &s, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Content-Encoding", "x-events") // not decoded by Go's client
		for i := 0; r.Context().Err() == nil; i++ {
			if _, err := fmt.Fprintf(w, "data: %d %d\n\n", i, i); err != nil {
				t.Errorf("write %d: %v", i, err)
				return
			}
			w.(http.Flusher).Flush()
			if i == 3 {
				close(started)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}))
	ended := readStream(t, ts.Client(), ts.URL, make(chan struct{}, 1))
	<-started
	if err := s.ShutdownWithServer(contextWithTimeout(t, 10*time.Second), ts.Config); err != nil {
		t.Fatalf("ShutdownWithServer: %v, want nil: the cancelled context ends the stream", err)
	}
	end := wstest.Receive(t, ended, 1)[0]
	if end.events < 3 || end.retry != "" || end.err != nil {
		t.Fatalf("client: %d events, retry %q, %v; want whole events, no retry, then a clean end", end.events, end.retry, end.err)
	}
	if got := s.Stats().Goodbyes; got != 1 {
		t.Fatalf("Goodbyes = %d, want 1", got)
	}
}

// Event streams whose lines end in CRLF, each event's terminator split
// across writes at random (often between its last CR and LF), drained at
// random moments: the goodbye always follows a whole terminator, never its
// CR alone, in the raw bytes, and a client that splits lines on LF with
// bufio.Scanner reads the retry field.
func TestStreamGoodbyeAfterCRLF(t *testing.T) {
	const streams = 20
	for round := range streams {
		t.Run(strconv.Itoa(round), func(t *testing.T) {
			var s shutdown.Shutdowner
			ts, _ := serve(t, &s, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				rc := http.NewResponseController(w)
				for i := 0; r.Context().Err() == nil; i++ {
					event := fmt.Sprintf("data: %d %d\r\n\r\n", i, i)
					at := len(event) - 1 // between the last CR and its LF
					if rand.N(2) == 0 {
						at = rand.N(len(event))
					}
					for _, part := range []string{event[:at], event[at:]} {
						if _, err := io.WriteString(w, part); err != nil {
							return
						}
						if rc.Flush() != nil {
							return
						}
					}
				}
			}))
			resp, err := http.Get(ts.URL)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			first := make([]byte, 1)
			if _, err := io.ReadFull(resp.Body, first); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Duration(rand.N(5000)) * time.Microsecond) // a random moment in the stream
			shutdownQuickly(t, &s, ts.Config)
			rest, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("the stream ended with %v, want a clean end", err)
			}
			body := string(first) + string(rest)
			i := strings.LastIndex(body, "retry: ")
			if i < 0 || !strings.HasSuffix(body, "\n") {
				t.Fatalf("the stream ends %q, want a retry field", body[max(len(body)-40, 0):])
			}
			events := body[:i]
			for k := 0; events != ""; k++ {
				event := fmt.Sprintf("data: %d %d\r\n\r\n", k, k)
				if !strings.HasPrefix(events, event) {
					t.Fatalf("event %d is %q, want %q: the goodbye came inside a terminator", k, events[:min(len(events), len(event))], event)
				}
				events = events[len(event):]
			}
			sc := bufio.NewScanner(strings.NewReader(body))
			retry := false
			for sc.Scan() {
				if strings.HasPrefix(sc.Text(), "retry: ") {
					_, err := strconv.Atoi(strings.TrimPrefix(sc.Text(), "retry: "))
					retry = err == nil
				}
			}
			if !retry {
				t.Fatal("bufio.Scanner read no retry line")
			}
		})
	}
}
