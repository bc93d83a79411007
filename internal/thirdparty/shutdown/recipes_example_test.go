package shutdown_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	coder "github.com/coder/websocket"
	"github.com/gorilla/websocket"

	"github.com/wsshutdown/wsshutdown/shutdown"
)

// A plain net/http program: wrap the handler, and on SIGINT or SIGTERM
// drain it with the server, closing what is left after ten seconds.
func Example_netHTTP() {
	var s shutdown.Shutdowner
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", gorillaEcho)
	srv := &http.Server{
		Addr:              ":8080",
		Handler:           s.Middleware(mux),
		ReadHeaderTimeout: 10 * time.Second, // ends clients that send their headers slowly
	}
	s.ConfigureServer(srv) // its ConnState and ConnContext hooks
	go func() {
		if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
			log.Fatal(err)
		}
	}()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	<-ctx.Done()
	stop()
	drainCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.ShutdownWithServer(drainCtx, srv); err != nil {
		log.Print(err) // e.g. shutdown: 0 handlers and 3 hijacked connections still open: context deadline exceeded
	}
}

// gorillaEcho is the gorilla read-loop shape: the handler owns the
// connection until it ends.
func gorillaEcho(w http.ResponseWriter, r *http.Request) {
	drain := shutdown.Draining(r.Context()) // asked first: the goodbye is this handler's
	c, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer c.Close()
	closed := make(chan struct{})
	go func() { // the read loop; gorilla allows one reader and one writer
		defer close(closed)
		for {
			mt, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			_ = c.WriteMessage(mt, msg) // this example's only writer
		}
	}()
	select {
	case <-closed:
	case <-drain:
		msg := websocket.FormatCloseMessage(websocket.CloseGoingAway, "server shutting down")
		_ = c.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
		select { // the client's close frame ends the read loop
		case <-closed:
		case <-time.After(2 * time.Second):
		}
	}
}

var upgrader = websocket.Upgrader{}

// The gorilla chat shape: the handler hands the connection to a read pump
// and a write pump and returns at once. The Shutdowner counts the
// connection until the pumps close it, and the write pump needs only the
// request's context to learn of the drain.
func Example_gorillaChat() {
	var s shutdown.Shutdowner
	http.Handle("/chat", s.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = shutdown.Draining(r.Context()) // asked first: the goodbye is the write pump's
		c, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		send := make(chan []byte, 16) // filled by a hub, not shown
		go readPump(c)
		go writePump(r.Context(), c, send)
	})))
}

func readPump(c *websocket.Conn) {
	defer c.Close()
	for {
		if _, _, err := c.ReadMessage(); err != nil {
			return
		}
	}
}

func writePump(ctx context.Context, c *websocket.Conn, send <-chan []byte) {
	defer c.Close()
	for {
		select {
		case msg := <-send:
			if c.WriteMessage(websocket.TextMessage, msg) != nil {
				return
			}
		case <-shutdown.Draining(ctx):
			msg := websocket.FormatCloseMessage(websocket.CloseGoingAway, "server shutting down")
			_ = c.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
			return // readPump ends when the client's close frame, or the Close, arrives
		}
	}
}

// With coder/websocket, Close(StatusGoingAway) sends the close frame and
// waits for the client's.
func Example_coderWebSocket() {
	var s shutdown.Shutdowner
	http.Handle("/ws", s.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		drain := shutdown.Draining(r.Context()) // asked first: the goodbye is this handler's
		c, err := coder.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		ctx := c.CloseRead(r.Context()) // done when the client closes
		select {
		case <-ctx.Done():
		case <-drain:
			c.Close(coder.StatusGoingAway, "server shutting down")
		}
	})))
}

// In a fleet: fail the readiness probe at once, keep serving while the load
// balancer notices, then say goodbye to the websockets over ten seconds
// rather than all at once.
func Example_withStagger() {
	s := shutdown.New(
		shutdown.WithDrainDelay(5*time.Second),
		shutdown.WithStagger(10*time.Second),
	)
	mux := http.NewServeMux()
	mux.Handle("/ready", s.ReadinessHandler())
	mux.HandleFunc("/ws", gorillaEcho)
	srv := &http.Server{Addr: ":8080", Handler: s.Middleware(mux)}
	go srv.ListenAndServe() //nolint:errcheck // as in the netHTTP example

	// On SIGTERM, as in the netHTTP example, with a context of at least
	// the delay plus twice the window: the window ends by half of what is
	// left after the delay, leaving the other half for the goodbyes.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	log.Print(s.ShutdownWithServer(ctx, srv))
}

// A hub that owns its connections says every goodbye itself: it claims
// them with WithOwnGoodbyes, and when Draining closes it writes its own
// close frame to each connection.
func Example_hub() {
	s := shutdown.New(shutdown.WithOwnGoodbyes())
	h := &hub{conns: make(map[*websocket.Conn]struct{})}
	go h.sayGoodbyes(s.Draining())
	srv := httptest.NewServer(s.Middleware(http.HandlerFunc(h.serve)))
	defer srv.Close()

	client, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
	defer client.Close()
	received := make(chan error, 1)
	go func() { // a client reads all the time: it answers the close frame
		_, _, err := client.ReadMessage()
		received <- err
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	fmt.Println("drain:", s.ShutdownWithServer(ctx, srv.Config))
	fmt.Println("client:", <-received)
	// Output:
	// drain: <nil>
	// client: websocket: close 1012: hub restarting
}

// hub holds the open connections.
type hub struct {
	mu      sync.Mutex
	conns   map[*websocket.Conn]struct{}
	closing bool // the drain has begun: a connection that joins now is told at once
}

var hubGoodbye = websocket.FormatCloseMessage(websocket.CloseServiceRestart, "hub restarting")

func (h *hub) serve(w http.ResponseWriter, r *http.Request) {
	c, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	h.mu.Lock()
	h.conns[c] = struct{}{}
	if h.closing {
		_ = c.WriteControl(websocket.CloseMessage, hubGoodbye, time.Now().Add(time.Second))
	}
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.conns, c)
		h.mu.Unlock()
		c.Close()
	}()
	for { // until the client's close frame answers the hub's
		if _, _, err := c.ReadMessage(); err != nil {
			return
		}
	}
}

func (h *hub) sayGoodbyes(draining <-chan struct{}) {
	<-draining
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closing = true
	for c := range h.conns {
		_ = c.WriteControl(websocket.CloseMessage, hubGoodbye, time.Now().Add(time.Second))
	}
}
