package shutdown_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsshutdown/wsshutdown/internal/thirdparty/wstest"
	"github.com/wsshutdown/wsshutdown/shutdown"
)

// On a hooked server, one keep-alive connection serves plain requests, an
// event stream, a request that asks for its signal and one under
// LetFinish, in turn, each with a writer the connection reuses where it
// can: every answer is its own request's, and every request finds its own
// drain signal through net/http's context.
func TestKeepAliveRequestsOnHookedServer(t *testing.T) {
	var s shutdown.Shutdowner
	addrs := make(chan string, 1000)
	mux := http.NewServeMux()
	mux.HandleFunc("/plain", func(w http.ResponseWriter, r *http.Request) {
		addrs <- r.RemoteAddr
		_, _ = io.WriteString(w, r.URL.Query().Get("n"))
	})
	mux.HandleFunc("/asks", func(w http.ResponseWriter, r *http.Request) {
		addrs <- r.RemoteAddr
		sig := shutdown.Draining(r.Context())
		select {
		case <-sig:
			http.Error(w, "draining", http.StatusInternalServerError)
		default:
			if sig == nil {
				http.Error(w, "no signal", http.StatusInternalServerError)
				return
			}
			_, _ = io.WriteString(w, "asked "+r.URL.Query().Get("n"))
		}
	})
	mux.HandleFunc("/events", func(w http.ResponseWriter, r *http.Request) {
		addrs <- r.RemoteAddr
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 3 {
			fmt.Fprintf(w, "data: %s.%d\n\n", r.URL.Query().Get("n"), i)
			w.(http.Flusher).Flush()
		}
	})
	mux.Handle("/finish", shutdown.LetFinish(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		addrs <- r.RemoteAddr
		_, _ = io.WriteString(w, "finished "+r.URL.Query().Get("n"))
	})))
	ts, _ := serve(t, &s, mux)
	client := ts.Client()
	want := map[string]func(n int) string{
		"plain":  func(n int) string { return fmt.Sprint(n) },
		"asks":   func(n int) string { return fmt.Sprintf("asked %d", n) },
		"events": func(n int) string { return fmt.Sprintf("data: %d.0\n\ndata: %d.1\n\ndata: %d.2\n\n", n, n, n) },
		"finish": func(n int) string { return fmt.Sprintf("finished %d", n) },
	}
	paths := []string{"plain", "asks", "plain", "events", "plain", "finish", "plain"}
	const rounds = 30
	for n := range rounds * len(paths) {
		path := paths[n%len(paths)]
		resp, err := client.Get(fmt.Sprintf("%s/%s?n=%d", ts.URL, path, n))
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || string(body) != want[path](n) {
			t.Fatalf("request %d to /%s: %d %q, %v; want 200 %q", n, path, resp.StatusCode, body, err, want[path](n))
		}
	}
	first := <-addrs
	for range rounds*len(paths) - 1 {
		if addr := <-addrs; addr != first {
			t.Fatalf("requests came on %s and %s, want one keep-alive connection", first, addr)
		}
	}
	if err := s.Shutdown(contextWithTimeout(t, 10*time.Second)); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if st := s.Stats(); st.Goodbyes != 0 || st.Active != 0 {
		t.Errorf("Stats() = %+v, want no goodbye and nothing active", st)
	}
}

// A goroutine that outlives a plain request on a hooked server, with a
// context kept from it, asks for the drain signal only after the request
// has returned and its connection has served another: it gets the drain's
// begin, as a late asker does without the hooks, and not the other
// request's signal.
func TestLateAskerOnHookedServer(t *testing.T) {
	kept := make(chan context.Context, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("/job", func(w http.ResponseWriter, r *http.Request) {
		kept <- context.WithoutCancel(r.Context())
		_, _ = io.WriteString(w, "started")
	})
	running := make(chan struct{})
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: hello\n\n")
		w.(http.Flusher).Flush()
		close(running)
		<-r.Context().Done()
	})
	for _, hooked := range []bool{false, true} {
		t.Run(map[bool]string{false: "unhooked", true: "hooked"}[hooked], func(t *testing.T) {
			s := shutdown.New(shutdown.WithStagger(time.Second))
			running = make(chan struct{})
			ts, _ := serveWith(t, s, mux, hooked)
			client := ts.Client()
			if code, body := getWith(t, client, ts.URL+"/job"); code != http.StatusOK || body != "started" {
				t.Fatalf("/job: %d %q", code, body)
			}
			ctx := <-kept
			// The connection's next request: an event stream that waits.
			resp, err := client.Get(ts.URL + "/stream")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			<-running
			sig := shutdown.Draining(ctx) // the job asks, late
			if sig == nil {
				t.Fatal("Draining(ctx) = nil for a request's kept context")
			}
			drained := make(chan error, 1)
			go func() { drained <- s.ShutdownWithServer(contextWithTimeout(t, 10*time.Second), ts.Config) }()
			select {
			case <-sig:
			case <-time.After(5 * time.Second):
				t.Fatal("the late asker's signal did not close when the drain began")
			}
			body, _ := io.ReadAll(resp.Body)
			if !strings.Contains(string(body), "retry:") {
				t.Errorf("the stream read %q, want its goodbye: the late asker took its signal", body)
			}
			if err := wstest.Receive(t, drained, 1)[0]; err != nil {
				t.Errorf("ShutdownWithServer: %v", err)
			}
		})
	}
}

// getWith gets url with client and returns the status and body.
func getWith(t testing.TB, client *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// On a hooked server, the context a chat's pumps keep from a request that
// hijacked its connection still has net/http's values (the server, the
// local address) once the handler has returned and the connection's slot
// has let go of what only requests need, and still finds the request's
// drain signal: the pump says its own goodbye, which the client gets.
// With a BaseContext the server may cancel, the slot keeps its cancelCtx,
// registered in that context, and the same holds.
func TestHijackedContextOnHookedServer(t *testing.T) {
	for _, cancellable := range []bool{false, true} {
		t.Run(fmt.Sprintf("cancellable-base=%v", cancellable), func(t *testing.T) {
			var s shutdown.Shutdowner
			type seen struct {
				server, local bool
				signal        bool
			}
			pumps := make(chan seen, 1)
			upgrader := websocket.Upgrader{}
			var srv *http.Server
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				c, err := upgrader.Upgrade(w, r, nil)
				if err != nil {
					return
				}
				ctx := r.Context()
				returned := make(chan struct{})
				go func() {
					<-returned
					_, local := ctx.Value(http.LocalAddrContextKey).(net.Addr)
					sig := shutdown.Draining(ctx)
					pumps <- seen{server: ctx.Value(http.ServerContextKey) == srv, local: local, signal: sig != nil}
					<-sig
					_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, "pump"), time.Now().Add(time.Second))
					_, _, _ = c.ReadMessage() // the client's answer
					c.Close()
				}()
				close(returned)
			})
			ts := httptest.NewUnstartedServer(s.Middleware(h))
			srv = ts.Config
			srv.ConnContext, srv.ConnState = s.ConnContext, s.ConnState
			if cancellable {
				base, cancel := context.WithCancel(context.Background())
				defer cancel()
				srv.BaseContext = func(net.Listener) context.Context { return base }
			}
			ts.Start()
			defer ts.Close()
			client := wstest.Dial(t, wsURL(ts))
			if got := wstest.Receive(t, pumps, 1)[0]; got != (seen{server: true, local: true, signal: true}) {
				t.Fatalf("the pump's context: %+v; want the server, the local address and a drain signal", got)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := s.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			if g := wstest.Receive(t, client, 1)[0]; g.Code != websocket.CloseGoingAway || g.Text != "pump" {
				t.Fatalf("client saw %d %q, want 1001 %q", g.Code, g.Text, "pump")
			}
		})
	}
}

// noFlush hides every optional interface of the writer it holds, as a
// middleware of an application's own may.
type noFlush struct{ http.ResponseWriter }

// unwrapping is noFlush with Unwrap, through which http.ResponseController
// and the middleware look for Hijack.
type unwrapping struct{ http.ResponseWriter }

func (w unwrapping) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// On one keep-alive connection of a hooked server, a handler in front of
// the middleware wraps some requests' writers and not others: each request
// gets the optional interfaces of the writer it was given, though the
// connection keeps one writer kind for its requests' writers.
func TestWriterKindPerRequest(t *testing.T) {
	var s shutdown.Shutdowner
	inner := s.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, flushes := w.(http.Flusher)
		_, hijacks := w.(http.Hijacker)
		fmt.Fprintf(w, "%v %v", flushes, hijacks)
	}))
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("w") {
		case "hidden":
			w = noFlush{w}
		case "unwrapping":
			w = unwrapping{w}
		}
		inner.ServeHTTP(w, r)
	}))
	s.ConfigureServer(ts.Config)
	ts.Start()
	defer ts.Close()
	want := map[string]string{"plain": "true true", "hidden": "false false", "unwrapping": "false true"}
	for n, kind := range []string{"plain", "plain", "hidden", "plain", "unwrapping", "unwrapping", "hidden", "plain", "unwrapping", "plain"} {
		resp, err := ts.Client().Get(ts.URL + "/?w=" + kind)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(body) != want[kind] {
			t.Fatalf("request %d with a %s writer: the handler's writer flushes, hijacks: %q, %v; want %q", n, kind, body, err, want[kind])
		}
	}
}
