package main

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsshutdown/wsshutdown/shutdown"
)

//go:embed static
var static embed.FS

// goodbye is the reason sent with the websocket's 1001 and the SSE stream's
// last event.
const goodbye = "server shutting down"

// handlerConfig configures the handlers.
type handlerConfig struct {
	Tick time.Duration // interval of the server's ticks
}

// tick is what both streams push.
type tick struct {
	N    int       `json:"n"`
	Time time.Time `json:"time"`
}

func newMux(cfg handlerConfig, ready http.Handler) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /ready", ready)
	page, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // "static" is a valid path
	}
	mux.Handle("GET /", http.FileServerFS(page))
	mux.HandleFunc("GET /ws", cfg.serveWebSocket)
	mux.HandleFunc("GET /events", cfg.serveEvents)
	return mux
}

var upgrader = websocket.Upgrader{}

// serveWebSocket echoes what the client sends and pushes a tick every
// cfg.Tick. When the server drains it closes with 1001 and waits, briefly,
// for the client's close frame.
func (cfg handlerConfig) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	// Asked before the upgrade: the Shutdowner leaves the goodbye to this
	// handler, which could then say more than the default one.
	drain := shutdown.Draining(r.Context())
	c, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // Upgrade has answered the client
	}
	defer c.Close()

	// The read loop: gorilla allows one reader and one writer at a time,
	// so messages go to the write loop below, which owns writing.
	received := make(chan []byte)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		for {
			_, msg, err := c.ReadMessage()
			if err != nil {
				return // the client's close frame, or its disconnection
			}
			select {
			case received <- msg:
			case <-r.Context().Done():
			}
		}
	}()

	ticker := time.NewTicker(cfg.Tick)
	defer ticker.Stop()
	for n := 0; ; {
		var err error
		select {
		case <-readDone:
			return
		case msg := <-received:
			err = c.WriteMessage(websocket.TextMessage, msg)
		case now := <-ticker.C:
			err = c.WriteJSON(tick{N: n, Time: now})
			n++
		case <-drain:
			msg := websocket.FormatCloseMessage(websocket.CloseGoingAway, goodbye)
			if c.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second)) == nil {
				select {
				case <-readDone:
				case <-time.After(2 * time.Second): // a client that does not answer
				}
			}
			return
		}
		if err != nil {
			return
		}
	}
}

// serveEvents streams a tick event every cfg.Tick. When the server drains it
// sends a last "shutdown" event and ends the stream.
func (cfg handlerConfig) serveEvents(w http.ResponseWriter, r *http.Request) {
	drain := shutdown.Draining(r.Context()) // asked first: the last event is this handler's
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	if rc.Flush() != nil {
		return
	}
	ticker := time.NewTicker(cfg.Tick)
	defer ticker.Stop()
	for n := 0; ; n++ {
		select {
		case <-r.Context().Done():
			return
		case <-drain:
			fmt.Fprintf(w, "event: shutdown\ndata: %s\n\n", goodbye)
			_ = rc.Flush()
			return
		case now := <-ticker.C:
			data, _ := json.Marshal(tick{N: n, Time: now}) // a tick always marshals
			if _, err := fmt.Fprintf(w, "event: tick\ndata: %s\n\n", data); err != nil {
				return
			}
			if rc.Flush() != nil {
				return
			}
		}
	}
}
