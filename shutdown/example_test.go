package shutdown_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsshutdown/wsshutdown/shutdown"
)

// A websocket handler behind the middleware says goodbye with 1001 when its
// request's drain signal fires.
func ExampleShutdowner_Middleware() {
	var s shutdown.Shutdowner // the zero value is ready to use
	upgrader := websocket.Upgrader{}

	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		drain := shutdown.Draining(r.Context()) // asked first: the goodbye is this handler's
		c, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		closed := make(chan struct{})
		go func() { // read until the peer closes
			defer close(closed)
			for {
				if _, _, err := c.NextReader(); err != nil {
					return
				}
			}
		}()
		select {
		case <-closed:
		case <-drain:
			msg := websocket.FormatCloseMessage(websocket.CloseGoingAway, "server shutting down")
			_ = c.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
			<-closed // the peer's close frame, or its disconnection
		}
	})

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: s.Middleware(mux)}
	go func() { _ = srv.Serve(ln) }()

	client, resp, err := websocket.DefaultDialer.Dial("ws://"+ln.Addr().String()+"/ws", nil)
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
	defer client.Close()
	fmt.Println("open:", s.Stats().Hijacked)
	received := make(chan error, 1)
	go func() { // a client reads all the time: it answers the close frame
		_, _, err := client.ReadMessage()
		received <- err
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.ShutdownWithServer(ctx, srv); err != nil {
		log.Fatal(err)
	}
	fmt.Println("client:", <-received)
	fmt.Println("open:", s.Stats().Hijacked)
	// Output:
	// open: 1
	// client: websocket: close 1001 (going away): server shutting down
	// open: 0
}

// Shutdown alone drains the handlers; the caller shuts its server down as
// it likes. At the deadline it closes the hijacked connections that are
// left and reports what it found.
func ExampleShutdowner_Shutdown() {
	s := shutdown.New(shutdown.WithRetryAfter(10 * time.Second))
	running, hung := make(chan struct{}), make(chan struct{})
	defer close(hung)
	h := s.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		close(running)
		<-hung // a handler that ignores the drain
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	go func() {
		if resp, err := http.Get("http://" + ln.Addr().String()); err == nil {
			resp.Body.Close()
		}
	}()
	<-running

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err = s.Shutdown(ctx)
	fmt.Println(err)
	fmt.Println(errors.Is(err, context.DeadlineExceeded))
	// Output:
	// shutdown: 1 handler and 0 hijacked connections still open: context deadline exceeded
	// true
}

// ShutdownWithServer is the whole of a plain net/http program's shutdown:
// on SIGTERM or Ctrl-C, stop accepting, tell the handlers, wait for them,
// and close what is left after ten seconds.
func ExampleShutdowner_ShutdownWithServer() {
	var s shutdown.Shutdowner
	srv := &http.Server{
		Addr: "127.0.0.1:0",
		Handler: s.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintln(w, "hello")
		})),
	}
	// In a real program: ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.ListenAndServe() }()

	stop() // the signal arrives
	<-ctx.Done()
	drainCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fmt.Println("drain:", s.ShutdownWithServer(drainCtx, srv))
	fmt.Println("serve:", <-served)
	// Output:
	// drain: <nil>
	// serve: http: Server closed
}
