package shutdown_test

import (
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsshutdown/wsshutdown/internal/thirdparty/wstest"
	"github.com/wsshutdown/wsshutdown/shutdown"
)

// Once a drain-unaware gorilla handler has read its client's answer to the
// goodbye and closes, the connection closes at once, counted out of the
// drain before Close returns, though the client has not closed its side
// yet: RFC 6455 lets nothing follow a close frame, and the conn saw the
// client's go by. Where the handler may have read past the conn (it took
// the connection underneath), the close lingers instead until the client
// closes its side, so that unread input never answers with a reset.
func TestCloseAfterTheClientsAnswer(t *testing.T) {
	for _, tc := range []struct {
		name     string
		upgrader websocket.Upgrader
		netConn  bool // the handler takes the connection underneath
		lingers  bool
	}{
		{"gorilla's hijacked reader", websocket.Upgrader{}, false, false},
		{"gorilla's own reader", websocket.Upgrader{ReadBufferSize: 1024, WriteBufferSize: 1024}, false, false},
		{"read past the conn", websocket.Upgrader{}, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s shutdown.Shutdowner
			connected := make(chan struct{}, 1)
			closedWith := make(chan int, 1) // hijacked connections counted once Close returned
			ts := httpServer(t, s.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				c, err := tc.upgrader.Upgrade(w, r, nil)
				if err != nil {
					return
				}
				if tc.netConn {
					_ = c.NetConn().(interface{ NetConn() net.Conn }).NetConn()
				}
				connected <- struct{}{}
				for {
					if _, _, err := c.NextReader(); err != nil {
						break
					}
				}
				_ = c.Close()
				closedWith <- s.Stats().Hijacked
			})))
			c, resp, err := websocket.DefaultDialer.Dial(wsURL(ts), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			defer c.Close()
			wstest.Receive(t, connected, 1)

			drained := make(chan error, 1)
			go func() { drained <- s.ShutdownWithServer(contextWithTimeout(t, 10*time.Second), ts.Config) }()
			// gorilla's client answers the close frame as it reads it,
			// and keeps its side open.
			_, _, err = c.NextReader()
			if !websocket.IsCloseError(err, shutdown.DefaultGoodbyeCode) {
				t.Fatalf("the client read %v, want 1001", err)
			}
			hijacked := wstest.Receive(t, closedWith, 1)[0]
			if tc.lingers {
				if hijacked != 1 {
					t.Fatalf("Hijacked = %d once the handler closed, want 1: the close lingers until the client closes", hijacked)
				}
				_ = c.UnderlyingConn().Close()
			} else if hijacked != 0 {
				t.Fatalf("Hijacked = %d once the handler closed, want 0: the client's answer was read", hijacked)
			}
			if err := wstest.Receive(t, drained, 1)[0]; err != nil {
				t.Fatalf("ShutdownWithServer: %v", err)
			}
			if !tc.lingers {
				// The server's end of the stream, not a reset.
				if _, err := c.UnderlyingConn().Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
					t.Fatalf("the client's next read: %v, want EOF", err)
				}
			}
		})
	}
}
