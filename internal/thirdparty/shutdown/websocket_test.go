package shutdown_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	coder "github.com/coder/websocket"
	"github.com/gorilla/websocket"

	"github.com/wsshutdown/wsshutdown/internal/thirdparty/wstest"
	"github.com/wsshutdown/wsshutdown/shutdown"
)

// A wsServer is a websocket handler that echoes messages and says goodbye
// with 1001 when its request's drain signal fires. connected receives once
// the connection is up.
type wsServer func(connected chan<- struct{}) http.Handler

// A wsClient connects to url and reports how its connection ended.
type wsClient func(t testing.TB, url string) <-chan wstest.Goodbye

var wsServers = map[string]wsServer{
	"gorilla": wstest.Server,
	"coder":   coderServer,
}

var wsClients = map[string]wsClient{
	"gorilla": wstest.Dial,
	"coder":   coderClient,
}

func coderServer(connected chan<- struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		drain := shutdown.Draining(r.Context()) // asked first: the goodbye is this handler's
		c, err := coder.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		connected <- struct{}{}
		ctx := c.CloseRead(context.Background())
		select {
		case <-ctx.Done():
		case <-drain:
			_ = c.Close(coder.StatusGoingAway, wstest.Reason)
		}
	})
}

func coderClient(t testing.TB, url string) <-chan wstest.Goodbye {
	t.Helper()
	c, resp, err := coder.Dial(context.Background(), url, nil)
	if err != nil {
		t.Fatalf("coder dial: %v", err)
	}
	if resp.Body != nil {
		resp.Body.Close()
	}
	ended := make(chan wstest.Goodbye, 1)
	go func() {
		defer c.CloseNow()
		for {
			if _, _, err := c.Read(context.Background()); err != nil {
				g := wstest.Goodbye{Code: wstest.Abnormal, At: time.Now()}
				var ce coder.CloseError
				if errors.As(err, &ce) {
					g.Code, g.Text = int(ce.Code), ce.Reason
				}
				ended <- g
				return
			}
		}
	}()
	return ended
}

// connect dials n clients and waits until the server has all of them.
func connect(t testing.TB, dial wsClient, url string, connected <-chan struct{}, n int) []<-chan wstest.Goodbye {
	t.Helper()
	codes := make([]<-chan wstest.Goodbye, n)
	for i := range codes {
		codes[i] = dial(t, url)
	}
	wstest.Receive(t, connected, n)
	return codes
}

// Every pairing of server and client library: each client sees 1001 when
// its handler says goodbye, and the drain ends with nothing left.
func TestWebSocketGoodbye(t *testing.T) {
	const n = 20
	for sname, server := range wsServers {
		for cname, client := range wsClients {
			t.Run(sname+"-server/"+cname+"-client", func(t *testing.T) {
				var s shutdown.Shutdowner
				connected := make(chan struct{}, n)
				ts, _ := serve(t, &s, server(connected))
				codes := connect(t, client, wsURL(ts), connected, n)
				wantStats(t, &s, shutdown.Stats{Active: n, Hijacked: n})

				if err := s.ShutdownWithServer(contextWithTimeout(t, 10*time.Second), ts.Config); err != nil {
					t.Fatalf("ShutdownWithServer: %v", err)
				}
				wstest.WantCodes(t, codes, websocket.CloseGoingAway)
				wantStats(t, &s, shutdown.Stats{Draining: true})
			})
		}
	}
}

// The gorilla "chat" shape: the handler hands the connection to goroutines
// and returns at once. The drain waits for those goroutines to close it.
func TestWebSocketChatShape(t *testing.T) {
	const n = 10
	var s shutdown.Shutdowner
	sawDrain, asked := make(chan struct{}, n), make(chan struct{}, n)
	release := make(chan struct{})
	var closing atomic.Int64 // goroutines that are closing their connection
	ts, returned := serve(t, &s, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			t.Error(err)
			return
		}
		drain := r.Context() // all the goroutines need
		go func() {
			for {
				if _, _, err := c.NextReader(); err != nil {
					return
				}
			}
		}()
		go func() {
			defer c.Close()
			defer closing.Add(1) // runs before the Close
			signal := shutdown.Draining(drain)
			asked <- struct{}{} // before the drain: the goodbye is this goroutine's
			<-signal
			sawDrain <- struct{}{}
			<-release
			msg := websocket.FormatCloseMessage(websocket.CloseGoingAway, wstest.Reason)
			_ = c.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
		}()
	}))
	codes := make([]<-chan wstest.Goodbye, n)
	for i := range codes {
		codes[i] = wstest.Dial(t, wsURL(ts))
	}
	wstest.Receive(t, returned, n)
	wstest.Receive(t, asked, n)
	wantStats(t, &s, shutdown.Stats{Active: 0, Hijacked: n})

	done := make(chan error, 1)
	closingAtReturn := make(chan int64, 1)
	go func() {
		err := s.Shutdown(contextWithTimeout(t, 10*time.Second))
		closingAtReturn <- closing.Load()
		done <- err
	}()
	wstest.Receive(t, sawDrain, n)
	wantStats(t, &s, shutdown.Stats{Hijacked: n, Draining: true})
	close(release)
	if err := wstest.Receive(t, done, 1)[0]; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if got := <-closingAtReturn; got != n {
		t.Fatalf("Shutdown returned when %d of %d goroutines had begun to close their connections", got, n)
	}
	wstest.WantCodes(t, codes, websocket.CloseGoingAway)
	wantStats(t, &s, shutdown.Stats{Draining: true})
}

// With goodbyes on the handlers' behalf off, handlers that ignore the drain
// are closed at the deadline and reported; their clients see an abnormal
// closure (1006), as before there were goodbyes.
func TestWebSocketIgnoringDrainIsForceClosed(t *testing.T) {
	const n = 5
	for _, returns := range []bool{false, true} {
		name := map[bool]string{false: "handler-blocks", true: "handler-returned"}[returns]
		t.Run(name, func(t *testing.T) {
			s := shutdown.New(shutdown.WithGoodbye(0, ""))
			connected := make(chan struct{}, n)
			ts, returned := serve(t, s, wstest.IgnoresDrain(connected, returns))
			codes := connect(t, wstest.Dial, wsURL(ts), connected, n)
			active := n
			if returns {
				wstest.Receive(t, returned, n)
				active = 0
			}

			err := s.Shutdown(contextWithTimeout(t, 50*time.Millisecond))
			var de *shutdown.DrainError
			if !errors.As(err, &de) || de.Active != active || de.Hijacked != n {
				t.Fatalf("Shutdown = %v, want a DrainError with %d handlers and %d connections", err, active, n)
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("errors.Is(%v, context.DeadlineExceeded) = false", err)
			}
			wstest.WantCodes(t, codes, wstest.Abnormal)
			if !returns {
				wstest.Receive(t, returned, n) // the closed connections end the handlers
			}
			wantStats(t, s, shutdown.Stats{Forced: n, Draining: true})
		})
	}
}

// With force-close and goodbyes off, a drain that runs out of time leaves
// the connections open and counted, for their owners to close.
func TestWithForceCloseFalseKeepsConnections(t *testing.T) {
	s := shutdown.New(shutdown.WithForceClose(false), shutdown.WithGoodbye(0, ""))
	connected := make(chan struct{}, 1)
	serverClosed := make(chan struct{})
	ts, _ := serve(t, s, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			t.Error(err)
			return
		}
		connected <- struct{}{}
		go func() {
			defer close(serverClosed)
			defer c.Close()
			for {
				if _, _, err := c.NextReader(); err != nil {
					return
				}
			}
		}()
	}))
	client, resp, err := websocket.DefaultDialer.Dial(wsURL(ts), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	wstest.Receive(t, connected, 1)

	err = s.Shutdown(contextWithTimeout(t, 20*time.Millisecond))
	var de *shutdown.DrainError
	if !errors.As(err, &de) || de.Hijacked != 1 {
		t.Fatalf("Shutdown = %v, want a DrainError with 1 connection", err)
	}
	wantStats(t, s, shutdown.Stats{Hijacked: 1, Draining: true})
	// The connection still works.
	if err := client.WriteMessage(websocket.TextMessage, []byte("still here")); err != nil {
		t.Fatalf("write after the drain's deadline: %v", err)
	}
	// A later Shutdown with an ended context still reports it.
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Shutdown(cancelled); !errors.As(err, &de) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown(cancelled) = %v, want a DrainError wrapping context.Canceled", err)
	}
	// Once its owner closes it, the drain completes.
	client.Close()
	<-serverClosed
	if err := s.Shutdown(contextWithTimeout(t, 10*time.Second)); err != nil {
		t.Fatalf("Shutdown after the owner closed: %v", err)
	}
	wantStats(t, s, shutdown.Stats{Draining: true})
}

// Clients that vanish mid-drain, without a close frame, end their handlers
// and do not hold the drain up.
func TestWebSocketClientsVanishMidDrain(t *testing.T) {
	const n = 10
	var s shutdown.Shutdowner
	connected := make(chan struct{}, n)
	ts, _ := serve(t, &s, wstest.Server(connected))
	conns := make([]*websocket.Conn, n)
	for i := range conns {
		c, resp, err := websocket.DefaultDialer.Dial(wsURL(ts), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		conns[i] = c
	}
	wstest.Receive(t, connected, n)
	vanished := make(chan struct{}, n)
	for _, c := range conns {
		go func() {
			<-s.Draining()
			// Gone without a close frame, as a killed browser tab or a
			// dropped mobile connection.
			_ = c.NetConn().Close()
			vanished <- struct{}{}
		}()
	}
	if err := s.Shutdown(contextWithTimeout(t, 10*time.Second)); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	wstest.Receive(t, vanished, n)
	wantStats(t, &s, shutdown.Stats{Draining: true})
}

// unwrapOnly is a response writer of another middleware, written the
// Go 1.20 way: it has Unwrap and none of the optional interfaces.
type unwrapOnly struct{ http.ResponseWriter }

func (u unwrapOnly) Unwrap() http.ResponseWriter { return u.ResponseWriter }

// Outside another middleware whose writer only unwraps, a websocket is still
// hijacked through the Shutdowner, counted and drained: coder/websocket
// walks Unwrap chains, and gorilla, which asks for http.Hijacker itself,
// finds one.
func TestWriterHijacksThroughUnwrap(t *testing.T) {
	for sname, server := range wsServers {
		t.Run(sname, func(t *testing.T) {
			var s shutdown.Shutdowner
			connected := make(chan struct{}, 1)
			mw := s.Middleware(server(connected))
			ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mw.ServeHTTP(unwrapOnly{w}, r)
			}))
			defer ts.Close()
			codes := connect(t, wstest.Dial, wsURL(ts), connected, 1)
			wantStats(t, &s, shutdown.Stats{Active: 1, Hijacked: 1})
			if err := s.Shutdown(contextWithTimeout(t, 10*time.Second)); err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
			wstest.WantCodes(t, codes, websocket.CloseGoingAway)
		})
	}
}
