package shutdown_test

import (
	"context"
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
func Example_middleware() {
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
