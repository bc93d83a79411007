package shutdown_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsshutdown/wsshutdown/internal/thirdparty/wstest"
	"github.com/wsshutdown/wsshutdown/shutdown"
)

// Waiting on s.Draining(), as code that only logs the drain does, leaves
// the goodbyes on the handlers' behalf as they were: a drain-unaware
// websocket gets 1001 and a drain-unaware event stream its retry field,
// and the drain ends at once rather than at its deadline.
func TestWatchingTheDrainChangesNothing(t *testing.T) {
	for i := range 10 { // timing matters: where the watcher wakes
		var s shutdown.Shutdowner
		watched := make(chan time.Time, 1)
		go func() {
			<-s.Draining()
			watched <- time.Now()
		}()
		connected := make(chan struct{}, 1)
		mux := http.NewServeMux()
		mux.Handle("/ws", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
			if err != nil {
				return
			}
			defer c.Close()
			connected <- struct{}{}
			for { // no drain signal anywhere
				mt, msg, err := c.ReadMessage()
				if err != nil || c.WriteMessage(mt, msg) != nil {
					return
				}
			}
		}))
		mux.Handle("/events", unawareStreams["context-loop"])
		ts, _ := serve(t, &s, mux)
		ws := wstest.Dial(t, wsURL(ts)+"/ws")
		wstest.Receive(t, connected, 1)
		first := make(chan struct{}, 1)
		stream := readStream(t, ts.Client(), ts.URL+"/events", first)
		wstest.Receive(t, first, 1)

		start := time.Now()
		if err := s.ShutdownWithServer(contextWithTimeout(t, 10*time.Second), ts.Config); err != nil {
			t.Fatalf("round %d: ShutdownWithServer: %v, want nil: the goodbyes were not said", i, err)
		}
		took := time.Since(start)
		if g := wstest.Receive(t, ws, 1)[0]; g.Code != websocket.CloseGoingAway || g.Text != wstest.Reason {
			t.Errorf("round %d: websocket client saw %+v, want 1001 %q", i, g, wstest.Reason)
		}
		if end := wstest.Receive(t, stream, 1)[0]; end.err != nil || end.retry == "" {
			t.Errorf("round %d: event stream ended with retry %q and error %v, want a retry field and a clean end", i, end.retry, end.err)
		}
		if at := wstest.Receive(t, watched, 1)[0]; at.Before(start) {
			t.Errorf("round %d: the watcher woke before the drain began", i)
		}
		if got := s.Stats().Goodbyes; got != 2 {
			t.Errorf("round %d: Stats().Goodbyes = %d, want 2", i, got)
		}
		t.Logf("round %d: drained in %v", i, took)
	}
}
