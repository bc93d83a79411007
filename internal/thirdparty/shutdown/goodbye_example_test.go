package shutdown_test

import (
	"context"
	"errors"
	"fmt"
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
func Example_withGoodbye() {
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
