package shutdown_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	r3sse "github.com/r3labs/sse/v2"
	gosse "github.com/tmaxmax/go-sse"
	"gopkg.in/cenkalti/backoff.v1"

	"github.com/wsshutdown/wsshutdown/internal/thirdparty/wstest"
	"github.com/wsshutdown/wsshutdown/shutdown"
)

// sseClientEnd is what a Go event-stream client dispatched: the events,
// and how many of them had no data, which no stream here sends.
type sseClientEnd struct {
	events, empty int
}

// The Go event-stream clients, as their users write them, against a
// drain-unaware stream. The goodbye is a retry field that no empty line
// follows, which the standard applies as it is read and never dispatches:
// go-sse dispatches every event the handler sent and nothing for the
// goodbye. r3labs/sse dispatches any block with a retry field, even one
// that the stream ends inside (its Event.hasContent counts Retry), so it
// gets one event with the retry and no data, whatever the goodbye's form;
// its users skip events with no data.
func TestGoSSEClientsAndTheGoodbye(t *testing.T) {
	wantEmpty := map[string]int{"r3labs/sse": 1, "tmaxmax/go-sse": 0}
	for name, dial := range map[string]func(t *testing.T, url string, first chan<- struct{}) <-chan sseClientEnd{
		"r3labs/sse": func(t *testing.T, url string, first chan<- struct{}) <-chan sseClientEnd {
			c := r3sse.NewClient(url)
			c.ReconnectStrategy = &backoff.StopBackOff{} // one connection: the drain refuses the next
			ended := make(chan sseClientEnd, 1)
			go func() {
				var e sseClientEnd
				_ = c.SubscribeRaw(func(msg *r3sse.Event) {
					if len(msg.Data) == 0 {
						e.empty++
					}
					if e.events++; e.events == 3 {
						first <- struct{}{}
					}
				})
				ended <- e
			}()
			return ended
		},
		"tmaxmax/go-sse": func(t *testing.T, url string, first chan<- struct{}) <-chan sseClientEnd {
			req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
			if err != nil {
				t.Fatal(err)
			}
			client := &gosse.Client{Backoff: gosse.Backoff{MaxRetries: -1}}
			conn := client.NewConnection(req)
			ended := make(chan sseClientEnd, 1)
			var e sseClientEnd
			conn.SubscribeToAll(func(ev gosse.Event) {
				if ev.Data == "" {
					e.empty++
				}
				if e.events++; e.events == 3 {
					first <- struct{}{}
				}
			})
			go func() {
				_ = conn.Connect()
				ended <- e
			}()
			return ended
		},
	} {
		t.Run(name, func(t *testing.T) {
			var s shutdown.Shutdowner
			ts, _ := serve(t, &s, unawareStreams["context-loop"])
			first := make(chan struct{}, 1)
			ended := dial(t, ts.URL, first)
			wstest.Receive(t, first, 1)
			if err := s.ShutdownWithServer(contextWithTimeout(t, 10*time.Second), ts.Config); err != nil {
				t.Fatalf("ShutdownWithServer: %v", err)
			}
			e := wstest.Receive(t, ended, 1)[0]
			t.Logf("%d events, %d empty", e.events, e.empty)
			if e.empty != wantEmpty[name] || e.events < 3 {
				t.Errorf("%d events, %d of them empty; want at least 3, %d empty", e.events, e.empty, wantEmpty[name])
			}
			if got := s.Stats().Goodbyes; got != 1 {
				t.Errorf("Stats().Goodbyes = %d, want 1", got)
			}
		})
	}
}
