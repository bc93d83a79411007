package shutdown_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	coder "github.com/coder/websocket"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/gorilla/websocket"
	"github.com/olahol/melody"
	xwebsocket "golang.org/x/net/websocket"

	"github.com/wsshutdown/wsshutdown/internal/thirdparty/wstest"
	"github.com/wsshutdown/wsshutdown/shutdown"
)

// The websocket stacks below are written as their users write them, from
// each library's README or examples, and know nothing of the drain: the
// Shutdowner says goodbye on their behalf.

// A stack is a websocket server made with one library. Its handler echoes,
// or broadcasts, what clients send; stop ends what it runs besides its
// connections (a hub), once the test is over.
type stack struct {
	handler http.Handler
	stop    func()
}

var stacks = map[string]func() stack{
	"gorilla-chat":     gorillaChat,
	"coder-echo":       coderEcho,
	"coder-chat":       coderChat,
	"gobwas-wsutil":    gobwasEcho,
	"melody-broadcast": melodyBroadcast,
	"x-net-websocket":  xnetEcho,
}

// gorillaChat is gorilla/websocket's chat example (gorillachat_test.go):
// the handler returns at once, and two goroutines own the connection.
func gorillaChat() stack {
	hub := newChatHub()
	go hub.run() // runs as long as the test binary, as in the example
	return stack{handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chatServeWs(hub, w, r)
	})}
}

// coderEcho is coder/websocket's echo, as in its README.
func coderEcho() stack {
	return stack{handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := coder.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, rd, err := c.Reader(r.Context())
			if err != nil {
				return
			}
			wr, err := c.Writer(r.Context(), typ)
			if err != nil {
				return
			}
			if _, err := io.Copy(wr, rd); err != nil {
				return
			}
			if err := wr.Close(); err != nil {
				return
			}
		}
	})}
}

// coderChat is the subscriber of coder/websocket's chat example: CloseRead
// reads, the handler writes what is published to it.
func coderChat() stack {
	msgs := make(chan []byte)
	return stack{handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := coder.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		ctx := c.CloseRead(r.Context())
		for {
			select {
			case msg := <-msgs:
				wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				err := c.Write(wctx, coder.MessageText, msg)
				cancel()
				if err != nil {
					return
				}
			case <-ctx.Done():
				return
			}
		}
	})}
}

// gobwasEcho is gobwas/ws with wsutil in a goroutine, as in its README.
func gobwasEcho() stack {
	return stack{handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, _, err := ws.UpgradeHTTP(r, w)
		if err != nil {
			return
		}
		go func() {
			defer conn.Close()
			for {
				msg, op, err := wsutil.ReadClientData(conn)
				if err != nil {
					return
				}
				if err := wsutil.WriteServerMessage(conn, op, msg); err != nil {
					return
				}
			}
		}()
	})}
}

// melodyBroadcast is olahol/melody's chat: every message to everybody.
func melodyBroadcast() stack {
	m := melody.New()
	m.HandleMessage(func(_ *melody.Session, msg []byte) {
		_ = m.Broadcast(msg)
	})
	return stack{
		handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_ = m.HandleRequest(w, r)
		}),
		stop: func() { _ = m.Close() },
	}
}

// xnetEcho is golang.org/x/net/websocket's echo server.
func xnetEcho() stack {
	return stack{handler: xwebsocket.Server{Handler: func(ws *xwebsocket.Conn) {
		_, _ = io.Copy(ws, ws)
	}}}
}

// Each stack, with 100 real gorilla clients over ws and over wss, drains
// with no handler changed: every client reads 1001 "server shutting down",
// the drain ends long before its deadline, and Goodbyes counts one for each
// connection.
func TestGoodbyesForUnawareStacks(t *testing.T) {
	const n = 100
	for name, newStack := range stacks {
		for _, secure := range []bool{false, true} {
			scheme := map[bool]string{false: "ws", true: "wss"}[secure]
			t.Run(name+"/"+scheme, func(t *testing.T) {
				st := newStack()
				if st.stop != nil {
					t.Cleanup(st.stop)
				}
				var s shutdown.Shutdowner
				ts, dialer := serveStack(t, &s, st.handler, secure)
				clients := make([]<-chan wstest.Goodbye, n)
				for i := range clients {
					clients[i] = wstest.DialWith(t, dialer, scheme+"://"+ts.Listener.Addr().String()+"/")
				}
				wstest.WaitUntil(t, func() bool { return s.Stats().Hijacked == n })

				shutdownQuickly(t, &s, ts.Config)
				for i, g := range wstest.WantCodes(t, clients, shutdown.DefaultGoodbyeCode) {
					if g.Text != shutdown.DefaultGoodbyeReason {
						t.Fatalf("client %d read reason %q, want %q", i, g.Text, shutdown.DefaultGoodbyeReason)
					}
				}
				if st := s.Stats(); st.Goodbyes != n || st.Hijacked != 0 || st.Forced != 0 {
					t.Errorf("Stats() = %+v, want %d goodbyes, nothing left or forced", st, n)
				}
			})
		}
	}
}

// serveStack serves h behind s on a loopback server, over TLS if secure,
// and returns a gorilla dialer for it.
func serveStack(t testing.TB, s *shutdown.Shutdowner, h http.Handler, secure bool) (*httptest.Server, *websocket.Dialer) {
	t.Helper()
	ts := httptest.NewUnstartedServer(s.Middleware(h))
	cfg := startServer(t, ts, secure)
	return ts, &websocket.Dialer{HandshakeTimeout: 10 * time.Second, TLSClientConfig: cfg}
}

// A handler that says its own goodbye on its signal keeps it: the client
// reads 4000 "custom", and the Shutdowner sends nothing of its own.
func TestOwnGoodbyeIsKept(t *testing.T) {
	var s shutdown.Shutdowner
	connected := make(chan struct{}, 1)
	ts, dialer := serveStack(t, &s, wstest.ServerSaying(connected, 4000, "custom"), false)
	client := wstest.DialWith(t, dialer, wsURL(ts))
	wstest.Receive(t, connected, 1)
	shutdownQuickly(t, &s, ts.Config)
	if g := wstest.Receive(t, client, 1)[0]; g.Code != 4000 || g.Text != "custom" {
		t.Fatalf("client read %d %q, want 4000 \"custom\"", g.Code, g.Text)
	}
	if got := s.Stats().Goodbyes; got != 0 {
		t.Fatalf("Goodbyes = %d, want 0", got)
	}
}

// WithGoodbye's code and reason reach the clients of an unaware stack.
func TestWithGoodbyeCode(t *testing.T) {
	s := shutdown.New(shutdown.WithGoodbye(1012, "service restart"))
	ts, dialer := serveStack(t, s, gorillaChat().handler, false)
	client := wstest.DialWith(t, dialer, wsURL(ts))
	wstest.WaitUntil(t, func() bool { return s.Stats().Hijacked == 1 })
	shutdownQuickly(t, s, ts.Config)
	if g := wstest.Receive(t, client, 1)[0]; g.Code != 1012 || g.Text != "service restart" {
		t.Fatalf("client read %d %q, want 1012 \"service restart\"", g.Code, g.Text)
	}
}

// A handler that asks for its signal and ignores it gets the goodbye at
// the deadline: the client reads 1001 rather than 1006, and Shutdown still
// reports what was left.
func TestDeadlineGoodbye(t *testing.T) {
	var s shutdown.Shutdowner
	connected := make(chan struct{}, 3)
	ts, _ := serve(t, &s, wstest.IgnoresDrain(connected, true))
	clients := connect(t, wstest.Dial, wsURL(ts), connected, 3)
	err := s.Shutdown(contextWithTimeout(t, 100*time.Millisecond))
	var de *shutdown.DrainError
	if !errors.As(err, &de) || de.Hijacked != 3 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want a DrainError with 3 connections", err)
	}
	wstest.WantCodes(t, clients, shutdown.DefaultGoodbyeCode)
	if got := s.Stats().Goodbyes; got != 3 {
		t.Fatalf("Goodbyes = %d, want 3", got)
	}
}

// After the goodbye, the handler's writes fail with ErrGoodbyeSent instead
// of reaching the peer, and the client reads nothing after the close frame.
func TestWritesAfterGoodbyeFail(t *testing.T) {
	var s shutdown.Shutdowner
	writeErr := make(chan error, 1)
	ts, dialer := serveStack(t, &s, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, _, err := ws.UpgradeHTTP(r, w)
		if err != nil {
			return
		}
		defer conn.Close()
		for { // writes until it cannot, and knows nothing of the drain
			if err := wsutil.WriteServerText(conn, []byte("tick")); err != nil {
				writeErr <- err
				return
			}
			time.Sleep(time.Millisecond)
		}
	}), false)
	client, resp, err := dialer.Dial(wsURL(ts), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	defer client.Close()
	if _, msg, err := client.ReadMessage(); err != nil || string(msg) != "tick" {
		t.Fatalf("first message %q, %v", msg, err)
	}
	shutdownQuickly(t, &s, ts.Config)
	if err := wstest.Receive(t, writeErr, 1)[0]; !errors.Is(err, shutdown.ErrGoodbyeSent) {
		t.Fatalf("the handler's write after the goodbye: %v, want ErrGoodbyeSent", err)
	}
	for { // every message before the close frame is whole, and nothing follows it
		_, msg, err := client.ReadMessage()
		if err != nil {
			if !websocket.IsCloseError(err, shutdown.DefaultGoodbyeCode) {
				t.Fatalf("client: %v, want the goodbye", err)
			}
			break
		}
		if string(msg) != "tick" {
			t.Fatalf("client read %q", msg)
		}
	}
}

// WithGoodbye panics on what cannot be sent in a close frame.
func TestWithGoodbyePanics(t *testing.T) {
	for _, tc := range []struct {
		code   int
		reason string
	}{
		{1004, ""},
		{1005, ""},
		{1006, ""},
		{1015, ""},
		{999, ""},
		{2000, ""},
		{5000, ""},
		{-1, ""},
		{1001, string(make([]byte, 124))},
		{1001, "\xff"},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("WithGoodbye(%d, %d bytes) did not panic", tc.code, len(tc.reason))
				}
			}()
			shutdown.WithGoodbye(tc.code, tc.reason)
		}()
	}
	for _, code := range []int{1000, 1001, 1011, 1012, 1014, 3000, 4999} {
		shutdown.New(shutdown.WithGoodbye(code, string(make([]byte, 123))))
	}
}

// With a stagger window, the goodbyes said on the handlers' behalf spread
// over it like the signals: 200 chat clients read their 1001 over most of
// a 1 s window, at most four times the even share in any 100 ms (the
// clients' reading, not the library, bunches them on a loaded machine).
func TestStaggeredGoodbyesSpread(t *testing.T) {
	const n, window = 200, time.Second
	s := shutdown.New(shutdown.WithStagger(window))
	ts, dialer := serveStack(t, s, gorillaChat().handler, false)
	clients := make([]<-chan wstest.Goodbye, n)
	for i := range clients {
		clients[i] = wstest.DialWith(t, dialer, wsURL(ts))
	}
	wstest.WaitUntil(t, func() bool { return s.Stats().Hijacked == n })
	if err := s.ShutdownWithServer(contextWithTimeout(t, 30*time.Second), ts.Config); err != nil {
		t.Fatalf("ShutdownWithServer: %v", err)
	}
	var times []time.Time
	for _, g := range wstest.WantCodes(t, clients, shutdown.DefaultGoodbyeCode) {
		times = append(times, g.At)
	}
	slices.SortFunc(times, time.Time.Compare)
	even := n * int(100*time.Millisecond) / int(window)
	if peak := wstest.PeakWithin(times, 100*time.Millisecond); peak > 4*even {
		t.Errorf("%d goodbyes within 100 ms, want at most %d (four times the even share)", peak, 4*even)
	}
	if span := times[n-1].Sub(times[0]); span < window*6/10 {
		t.Errorf("goodbyes spread over %v, want most of the %v window", span, window)
	}
}
