package main

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// startApp starts the example's application in the test on a free loopback
// port, with fast ticks, and returns it with its address and its log.
func startApp(t *testing.T) (app *fxtest.App, addr string, logs *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zapcore.InfoLevel)
	app = fxtest.New(t, fx.NopLogger, fx.Supply(zap.New(core)), appOptions("127.0.0.1:0", "127.0.0.1:0", 20*time.Millisecond))
	app.RequireStart()
	serving := logs.FilterMessage("serving").All()
	if len(serving) != 1 {
		t.Fatalf("%d \"serving\" entries, want 1", len(serving))
	}
	return app, serving[0].ContextMap()["addr"].(string), logs
}

// The handlers tick and echo, and on stop say goodbye: 1001 with a reason on
// the websocket, a shutdown event on the event stream; the drain logs both.
func TestHandlersSayGoodbye(t *testing.T) {
	app, addr, logs := startApp(t)
	ws := dialWebSocket(t, addr)
	sse := dialEvents(t, addr)
	if tk := within(t, ws.ticks); tk.Time.IsZero() {
		t.Fatalf("websocket tick %+v has no time", tk)
	}
	if ev := within(t, sse.first); ev[0] != "tick" {
		t.Fatalf("first event %q, want a tick", ev)
	}
	if err := ws.conn.WriteMessage(1, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if echo := within(t, ws.echoes); echo != "hello" {
		t.Fatalf("echo %q, want %q", echo, "hello")
	}

	app.RequireStop()
	ws.wantGoodbye(t)
	sse.wantGoodbye(t)
	started := logs.FilterMessage("drain started").All()
	drained := logs.FilterMessage("drained").All()
	if len(started) != 1 || len(drained) != 1 {
		t.Fatalf("drain entries: %d started, %d drained; want one each", len(started), len(drained))
	}
	// The websocket's handler and the stream's run; the websocket is hijacked.
	if m := started[0].ContextMap(); m["active"] != int64(2) || m["hijacked"] != int64(1) {
		t.Errorf("drain started with active=%v hijacked=%v, want 2 and 1", m["active"], m["hijacked"])
	}
	if m := drained[0].ContextMap(); m["active"] != int64(0) || m["hijacked"] != int64(0) {
		t.Errorf("drained with active=%v hijacked=%v, want 0 and 0", m["active"], m["hijacked"])
	}
}

// /ready is the readiness probe: 200 in service.
func TestReadinessIsServed(t *testing.T) {
	app, addr, _ := startApp(t)
	defer app.RequireStop()
	resp, err := http.Get("http://" + addr + "/ready")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /ready: %s, want 200", resp.Status)
	}
}

// The page is served at /.
func TestPageIsServed(t *testing.T) {
	app, addr, _ := startApp(t)
	defer app.RequireStop()
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /: %s, %v", resp.Status, err)
	}
	for _, want := range []string{`id="ws-status"`, `id="sse-status"`, `new WebSocket(`, `new EventSource("/events")`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("the page lacks %s", want)
		}
	}
}

// The drain-unaware handlers, as Go clients see them: behind the
// Shutdowner a websocket gets 1001 and a stream a retry field and a clean
// end, said on their behalf; on the bare server the websocket gets 1006
// and the stream breaks.
func TestUnawareHandlersAgainstBare(t *testing.T) {
	app, addr, logs := startApp(t)
	bare := logs.FilterMessage("serving without the Shutdowner").All()
	if len(bare) != 1 {
		t.Fatalf("%d bare servers, want 1", len(bare))
	}
	bareAddr := bare[0].ContextMap()["addr"].(string)
	wrappedWS, bareWS := dialPath(t, addr, "/unaware/ws"), dialPath(t, bareAddr, "/unaware/ws")
	wrappedSSE, bareSSE := readEvents(t, "http://"+addr+"/unaware/events"), readEvents(t, "http://"+bareAddr+"/unaware/events")
	for _, c := range []*wsClient{wrappedWS, bareWS} {
		within(t, c.ticks)
	}
	for _, s := range []*sseClient{wrappedSSE, bareSSE} {
		within(t, s.first)
	}

	app.RequireStop()
	wrappedWS.wantGoodbye(t)
	var ce *websocket.CloseError
	if err := within(t, bareWS.closed); !errors.As(err, &ce) || ce.Code != websocket.CloseAbnormalClosure {
		t.Errorf("bare websocket ended with %v, want 1006", err)
	}
	if end := within(t, wrappedSSE.ended); end.err != nil || end.retry == "" {
		t.Errorf("drain-unaware stream ended with retry %q, error %v; want a retry field and a clean end", end.retry, end.err)
	}
	if end := within(t, bareSSE.ended); end.err == nil {
		t.Error("bare stream ended cleanly, want it cut")
	}
}
