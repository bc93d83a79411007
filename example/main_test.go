package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// wsClient is a gorilla client of /ws that records what it reads.
type wsClient struct {
	ticks  chan tick
	echoes chan string
	closed chan error // the error that ended the read loop
	conn   *websocket.Conn
}

func dialWebSocket(t *testing.T, addr string) *wsClient {
	t.Helper()
	return dialPath(t, addr, "/ws")
}

// dialPath is dialWebSocket for the websocket at path.
func dialPath(t *testing.T, addr, path string) *wsClient {
	t.Helper()
	c, resp, err := websocket.DefaultDialer.Dial("ws://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	w := &wsClient{ticks: make(chan tick, 100), echoes: make(chan string, 10), closed: make(chan error, 1), conn: c}
	go func() {
		defer c.Close()
		for {
			_, msg, err := c.ReadMessage()
			if err != nil {
				w.closed <- err
				return
			}
			var tk tick
			if strings.HasPrefix(string(msg), "{") && json.Unmarshal(msg, &tk) == nil {
				select {
				case w.ticks <- tk:
				default:
				}
			} else {
				w.echoes <- string(msg)
			}
		}
	}()
	return w
}

// wantGoodbye fails unless the client's connection ended with 1001 and the
// handler's reason.
func (w *wsClient) wantGoodbye(t *testing.T) {
	t.Helper()
	err := within(t, w.closed)
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseGoingAway || ce.Text != goodbye {
		t.Fatalf("websocket ended with %v, want close 1001 %q", err, goodbye)
	}
}

// sseClient reads /events.
type sseClient struct {
	first chan [2]string // the first event: its name and data
	ended chan sseEnd
}

// sseEnd is how an event stream ended: its last event, the last retry
// field, and nil for a clean end of stream.
type sseEnd struct {
	last  [2]string
	retry string
	err   error
}

func dialEvents(t *testing.T, addr string) *sseClient {
	t.Helper()
	return readEvents(t, "http://"+addr+"/events")
}

// readEvents is dialEvents for the stream at url.
func readEvents(t *testing.T, url string) *sseClient {
	t.Helper()
	resp, err := http.Get(url) //nolint:bodyclose // closed by the reading goroutine
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || ct != "text/event-stream" {
		t.Fatalf("GET %s: %s, Content-Type %q", url, resp.Status, ct)
	}
	s := &sseClient{first: make(chan [2]string, 1), ended: make(chan sseEnd, 1)}
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		var event, retry string
		var last [2]string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "retry: "):
				retry = strings.TrimPrefix(line, "retry: ")
			case strings.HasPrefix(line, "event: "):
				event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				last = [2]string{event, strings.TrimPrefix(line, "data: ")}
				select {
				case s.first <- last:
				default:
				}
			}
		}
		s.ended <- sseEnd{last, retry, sc.Err()}
	}()
	return s
}

// wantGoodbye fails unless the stream's last event is the shutdown event and
// the stream then ended cleanly.
func (s *sseClient) wantGoodbye(t *testing.T) {
	t.Helper()
	end := within(t, s.ended)
	if end.err != nil {
		t.Fatalf("event stream ended with %v, want a clean end", end.err)
	}
	if end.last != [2]string{"shutdown", goodbye} {
		t.Fatalf("last event %q, want the shutdown event", end.last)
	}
}

// within receives from c, failing the test after a generous bound.
func within[T any](t *testing.T, c <-chan T) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(30 * time.Second):
		t.Fatal("nothing received in 30s")
		panic("unreachable")
	}
}
