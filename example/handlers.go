package main

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/url"
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

func newMux(cfg handlerConfig, ready http.Handler, bare *bareServer) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /ready", ready)
	mux.HandleFunc("GET /bare", bare.servePort)
	mux.HandleFunc("GET /unaware/ws", cfg.serveUnawareWebSocket)
	mux.HandleFunc("GET /unaware/events", cfg.serveUnawareEvents)
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
			if sendTick(w, rc, n, now) != nil {
				return
			}
		}
	}
}

// The handlers below know nothing of the drain: they are written as most
// are. Behind the Shutdowner's middleware their goodbyes are said on their
// behalf; on the bare server (bare.go) they have none. Both servers serve
// them, so the page reaches the bare one's from another origin.

// unawareUpgrader accepts the page's origin, whatever the port, and, as
// gorilla's default does, clients that send no Origin.
var unawareUpgrader = websocket.Upgrader{
	CheckOrigin: func(r *http.Request) bool {
		if r.Header.Get("Origin") == "" {
			return true
		}
		origin, err := url.Parse(r.Header.Get("Origin"))
		if err != nil {
			return false
		}
		host, _, _ := net.SplitHostPort(r.Host)
		return origin.Hostname() == host
	},
}

// serveUnawareWebSocket pushes a tick every cfg.Tick, and reads until the
// connection ends.
func (cfg handlerConfig) serveUnawareWebSocket(w http.ResponseWriter, r *http.Request) {
	c, err := unawareUpgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer c.Close()
	go func() {
		for {
			if _, _, err := c.NextReader(); err != nil {
				return
			}
		}
	}()
	ticker := time.NewTicker(cfg.Tick)
	defer ticker.Stop()
	for n := 0; ; n++ {
		now := <-ticker.C
		if c.WriteJSON(tick{N: n, Time: now}) != nil {
			return
		}
	}
}

// serveUnawareEvents streams a tick event every cfg.Tick until a write
// fails or the client goes.
func (cfg handlerConfig) serveUnawareEvents(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("Access-Control-Allow-Origin", "*") // the page reads the bare server's too
	rc := http.NewResponseController(w)
	ticker := time.NewTicker(cfg.Tick)
	defer ticker.Stop()
	for n := 0; ; n++ {
		select {
		case <-r.Context().Done():
			return
		case now := <-ticker.C:
			if sendTick(w, rc, n, now) != nil {
				return
			}
		}
	}
}

// sendTick writes and flushes the stream's tick event n.
func sendTick(w http.ResponseWriter, rc *http.ResponseController, n int, now time.Time) error {
	data, _ := json.Marshal(tick{N: n, Time: now}) // a tick always marshals
	if _, err := fmt.Fprintf(w, "event: tick\ndata: %s\n\n", data); err != nil {
		return err
	}
	return rc.Flush()
}
