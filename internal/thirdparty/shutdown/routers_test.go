package shutdown_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/go-chi/chi/v5"

	"github.com/wsshutdown/wsshutdown/internal/thirdparty/wstest"
	"github.com/wsshutdown/wsshutdown/shutdown"
)

// gin's c.Stream asks the writer it wraps for http.CloseNotifier; through
// the middleware it streams its events as without it.
func TestGinStream(t *testing.T) {
	gin.SetMode(gin.ReleaseMode)
	var s shutdown.Shutdowner
	r := gin.New()
	r.GET("/events", func(c *gin.Context) {
		i := 0
		c.Stream(func(io.Writer) bool {
			c.SSEvent("tick", i)
			i++
			return i < 3
		})
	})
	ts, _ := serve(t, &s, r)
	resp, err := http.Get(ts.URL + "/events")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("reading the stream: %v", err)
	}
	want := "event:tick\ndata:0\n\nevent:tick\ndata:1\n\nevent:tick\ndata:2\n\n"
	if resp.StatusCode != http.StatusOK || string(body) != want {
		t.Fatalf("got %s %q, want 200 %q", resp.Status, body, want)
	}
}

// A router wrapped in the middleware that also uses it for its routes (chi's
// r.Use) counts each request and each hijacked connection once, and drains
// as if wrapped once.
func TestMiddlewareTwiceCountsOnce(t *testing.T) {
	const n = 50
	var s shutdown.Shutdowner
	connected := make(chan struct{}, n)
	r := chi.NewRouter()
	r.Use(s.Middleware)
	r.Handle("/ws", wstest.Server(connected))
	ts, _ := serve(t, &s, r)
	clients := make([]<-chan wstest.Goodbye, n)
	for i := range clients {
		clients[i] = wstest.Dial(t, wsURL(ts)+"/ws")
	}
	wstest.Receive(t, connected, n)
	wantStats(t, &s, shutdown.Stats{Active: n, Hijacked: n})
	if err := s.ShutdownWithServer(contextWithTimeout(t, 30*time.Second), ts.Config); err != nil {
		t.Fatalf("ShutdownWithServer: %v", err)
	}
	wstest.WantCodes(t, clients, 1001)
	wantStats(t, &s, shutdown.Stats{Draining: true})
}

// Two Shutdowners each count a request that both wrap, and each answers
// for its own drain.
func TestTwoShutdownersBothCount(t *testing.T) {
	var outer, inner shutdown.Shutdowner
	entered, release := make(chan struct{}), make(chan struct{})
	ts := httpServer(t, outer.Middleware(inner.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		_, _ = io.WriteString(w, "ok")
	}))))
	got := make(chan string, 1)
	go func() {
		code, body := get(t, ts.URL)
		got <- strings.Join([]string{http.StatusText(code), body}, " ")
	}()
	<-entered
	wantStats(t, &outer, shutdown.Stats{Active: 1})
	wantStats(t, &inner, shutdown.Stats{Active: 1})
	close(release)
	if g := wstest.Receive(t, got, 1)[0]; g != "OK ok" {
		t.Fatalf("response %q, want OK ok", g)
	}
}
