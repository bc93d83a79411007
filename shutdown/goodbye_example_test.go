package shutdown_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsshutdown/wsshutdown/shutdown"
)

// A handler that knows nothing of the drain, wrapped as it is: the
// Shutdowner says goodbye on its behalf, with the code and reason of
// WithGoodbye, and its client reads them.
func ExampleWithGoodbye() {
	s := shutdown.New(shutdown.WithGoodbye(1012, "service restart"))
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for { // no drain signal anywhere
			mt, msg, err := c.ReadMessage()
			if err != nil || c.WriteMessage(mt, msg) != nil {
				return
			}
		}
	})
	srv := httptest.NewServer(s.Middleware(echo))
	defer srv.Close()

	client, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	_ = client.WriteMessage(websocket.TextMessage, []byte("hello"))
	_, msg, _ := client.ReadMessage() // the echo: the connection is up
	fmt.Println(string(msg))
	goodbye := make(chan string, 1)
	go func() { // the client reads, answers the close frame and closes, as clients do
		defer client.Close()
		_, _, err := client.ReadMessage()
		var ce *websocket.CloseError
		errors.As(err, &ce)
		goodbye <- fmt.Sprint(ce.Code, " ", ce.Text)
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fmt.Println(s.ShutdownWithServer(ctx, srv.Config), s.Stats().Goodbyes)
	fmt.Println(<-goodbye)
	// Output:
	// hello
	// <nil> 1
	// 1012 service restart
}

// A stream that must not be cut, such as a model's output, finishes on its
// own: no goodbye, no cancelled context, no failed write, until the
// deadline.
func ExampleLetFinish() {
	var s shutdown.Shutdowner
	mux := http.NewServeMux()
	mux.Handle("/generate", shutdown.LetFinish(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for _, token := range []string{"every", "token", "arrives"} {
			fmt.Fprintf(w, "data: %s\n\n", token)
			w.(http.Flusher).Flush()
		}
	})))
	srv := &http.Server{Addr: ":8080", Handler: s.Middleware(mux)}
	go srv.ListenAndServe() //nolint:errcheck // as in the netHTTP example

	// On SIGTERM, as in the netHTTP example: the stream has until the
	// deadline to finish.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	log.Print(s.ShutdownWithServer(ctx, srv))
}
