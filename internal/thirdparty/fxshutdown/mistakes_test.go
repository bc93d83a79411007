package fxshutdown_test

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"net"
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

	"github.com/wsshutdown/wsshutdown/fxshutdown"
	"github.com/wsshutdown/wsshutdown/internal/thirdparty/wstest"
	"github.com/wsshutdown/wsshutdown/shutdown"
)

// NewTutorialServer is Fx's tutorial constructor, as a user keeps it by
// mistake: provided as a plain *http.Server, with hooks of its own.
func NewTutorialServer(lc fx.Lifecycle, s *shutdown.Shutdowner) *http.Server {
	srv := &http.Server{Addr: "127.0.0.1:0", Handler: s.Middleware(http.NotFoundHandler())}
	lc.Append(fx.StartHook(func() { panic("the tutorial's OnStart ran: the app started") }))
	return srv
}

// NewFailingServer fails, for the error to name it.
func NewFailingServer() (*http.Server, error) { return nil, errors.New("no certificate") }

// Wiring that Fx itself accepts but that would serve or drain nothing fails
// fx.New, with an error that names the fix.
func TestPlainServerFailsNew(t *testing.T) {
	for _, tc := range []struct {
		name string
		opt  fx.Option
		want []string
	}{
		{
			"fx.Provide without AsServer",
			fx.Options(fx.Provide(NewTutorialServer), fx.Invoke(func(*http.Server) {})),
			[]string{"neither serves nor drains it", "fxshutdown.AsServer", "delete the server's own OnStart and OnStop hooks", "fx.Invoke(func(*http.Server) {})"},
		},
		{
			"fx.Supply of a server",
			fx.Supply(&http.Server{Addr: "127.0.0.1:0"}),
			[]string{"fxshutdown.AsServer"},
		},
		{
			"a constructor that fails is named, not Fx's wrapper",
			fx.Provide(fxshutdown.AsServer(NewFailingServer)),
			[]string{".NewFailingServer (", "mistakes_test.go", "no certificate"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := fx.New(fx.NopLogger, fxshutdown.Module, tc.opt).Err()
			if err == nil {
				t.Fatal("fx.New succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("fx.New error %q does not say %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "makeFuncStub") {
				t.Errorf("fx.New error %q names reflect's wrapper", err)
			}
		})
	}
}

// observed is a zap logger whose entries a test reads.
func observed() (fx.Option, *observer.ObservedLogs) {
	core, logs := observer.New(zapcore.InfoLevel)
	return fx.Supply(zap.New(core)), logs
}

// wantOneWarn fails unless logs hold exactly one Warn whose message
// begins with prefix, and returns it.
func wantOneWarn(t *testing.T, logs *observer.ObservedLogs, prefix string) observer.LoggedEntry {
	t.Helper()
	var found []observer.LoggedEntry
	for _, e := range logs.All() {
		if e.Level == zapcore.WarnLevel && strings.HasPrefix(e.Message, prefix) {
			found = append(found, e)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d Warn entries %q..., want 1; entries %q", len(found), prefix, messages(logs.All()))
	}
	return found[0]
}

// The module without a server, a valid wiring for servers run otherwise,
// warns at start and names AsServer; with one, it does not.
func TestNoServersWarns(t *testing.T) {
	logger, logs := observed()
	app := fxtest.New(t, fx.NopLogger, logger, fxshutdown.Module, fx.Invoke(func(*shutdown.Shutdowner) {}))
	app.RequireStart()
	w := wantOneWarn(t, logs, "no servers")
	if fix, _ := w.ContextMap()["fix"].(string); !strings.Contains(fix, "fxshutdown.AsServer") {
		t.Errorf("fix = %q, want it to name fxshutdown.AsServer", fix)
	}
	app.RequireStop()

	app2 := newTestApp(t, func(*shutdown.Shutdowner) http.Handler { return http.NotFoundHandler() })
	app2.RequireStop()
	if n := len(app2.logs.FilterLevelExact(zapcore.WarnLevel).All()); n != 0 {
		t.Errorf("%d Warn entries with a server, want none: %q", n, messages(app2.logs.All()))
	}
}

// A plain *http.Server beside one given with AsServer is not served by
// the module: it says so at start.
func TestPlainServerBesideAsServerWarns(t *testing.T) {
	logger, logs := observed()
	app := fxtest.New(t, fx.NopLogger, logger, fxshutdown.Module,
		fx.Supply(&http.Server{Addr: "127.0.0.1:0"}),
		fx.Provide(fxshutdown.AsServer(func(s *shutdown.Shutdowner) *http.Server {
			return &http.Server{Addr: "127.0.0.1:0", Handler: s.Middleware(http.NotFoundHandler())}
		})),
	)
	app.RequireStart()
	wantOneWarn(t, logs, "an *http.Server in the graph is not given with fxshutdown.AsServer")
	app.RequireStop()
}

// A server whose handler is not wrapped in s.Middleware: the module warns
// once, with the server's address, whether the request is plain, a
// websocket, or an event stream still open at stop; the draining entries
// count the open connections. The wrapped server beside it gets no warning.
func TestUnwrappedHandlerWarnsOnce(t *testing.T) {
	for _, tc := range []struct {
		name string
		use  func(t *testing.T, addr string) // what a client does
	}{
		{"plain requests", func(t *testing.T, addr string) {
			for range 3 {
				resp, err := http.Get("http://" + addr + "/plain")
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
			}
		}},
		{"a websocket", func(t *testing.T, addr string) {
			c, resp, err := websocket.DefaultDialer.Dial("ws://"+addr+"/ws", nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			t.Cleanup(func() { c.Close() }) // nobody else will: the module knows nothing of it
		}},
		{"an event stream", func(t *testing.T, addr string) {
			resp, err := http.Get("http://" + addr + "/events")
			if err != nil {
				t.Fatal(err)
			}
			line, err := bufio.NewReader(resp.Body).ReadString('\n')
			if err != nil || !strings.HasPrefix(line, "data: ") {
				t.Fatalf("first line %q, %v", line, err)
			}
			t.Cleanup(func() { resp.Body.Close() })
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logger, logs := observed()
			mux := http.NewServeMux()
			mux.HandleFunc("/plain", func(http.ResponseWriter, *http.Request) {})
			mux.Handle("/ws", unawareHandler(nil))
			mux.HandleFunc("/events", func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				_, _ = w.Write([]byte("data: hello\n\n"))
				w.(http.Flusher).Flush()
				<-r.Context().Done()
			})
			app := fxtest.New(t, fx.NopLogger, logger, fxshutdown.Module,
				fx.Supply(fxshutdown.Config{LogInterval: 10e6, DrainTimeout: 300e6}),
				fx.Provide(
					fxshutdown.AsServer(func() *http.Server { return &http.Server{Addr: "127.0.0.1:0", Handler: mux} }),
					fx.Annotate(func(s *shutdown.Shutdowner) *http.Server {
						return &http.Server{Addr: "127.0.0.1:0", Handler: s.Middleware(mux)}
					}, fx.ResultTags(`name:"wrapped"`)),
				),
				fx.Invoke(fx.Annotate(func(*http.Server) {}, fx.ParamTags(`name:"wrapped"`))),
			)
			app.RequireStart()
			serving := logs.FilterMessage("serving").All()
			if len(serving) != 1 {
				t.Fatalf("%d servers, want 1", len(serving))
			}
			addr := serving[0].ContextMap()["addr"].(string)
			tc.use(t, addr)
			tc.use(t, addr)
			_ = app.Stop(t.Context())
			w := wantOneWarn(t, logs, "requests do not reach the Shutdowner's middleware")
			if got := w.ContextMap()["addr"]; got != addr {
				t.Errorf("warning names %v, want the server's address %s", got, addr)
			}
			if tc.name == "an event stream" {
				var open []any
				for _, e := range logs.FilterMessage("draining").All() {
					open = append(open, e.ContextMap()["open"])
				}
				if len(open) == 0 || open[0] != int64(2) {
					t.Errorf("draining entries' open = %v, want 2 (the two streams)", open)
				}
			}
		})
	}
}

// With no logger in the graph the module logs through slog.Default, so
// that even the deadline's warning is never silent.
func TestNoLoggerLogsThroughSlogDefault(t *testing.T) {
	h := &recordingHandler{}
	defer slog.SetDefault(slog.Default())
	slog.SetDefault(slog.New(h))
	app := fxtest.New(t, fx.NopLogger, fxshutdown.Module,
		fx.Provide(fxshutdown.AsServer(func(s *shutdown.Shutdowner) *http.Server {
			return &http.Server{Addr: "127.0.0.1:0", Handler: s.Middleware(http.NotFoundHandler())}
		})),
	)
	app.RequireStart()
	app.RequireStop()
	h.mu.Lock()
	defer h.mu.Unlock()
	var got []string
	for _, r := range h.records {
		got = append(got, r.Message)
	}
	if strings.Join(got, ",") != "serving,drain started,drained" {
		t.Fatalf("slog.Default got %q, want serving, drain started, drained", got)
	}
}

// The module hooks its servers' ConnContext: a long poll that waits on its
// context is cancelled after Config.PendingGrace and answered 503, and the
// stop ends long before its budget; the server's own ConnContext still
// runs.
func TestStopEndsLongPolls(t *testing.T) {
	type ownKey struct{}
	logger, logs := observed()
	var s *shutdown.Shutdowner
	app := fxtest.New(t, fx.NopLogger, logger, fxshutdown.Module, fx.Populate(&s),
		fx.Supply(fxshutdown.Config{PendingGrace: 50 * time.Millisecond}),
		fx.Provide(fxshutdown.AsServer(func(s *shutdown.Shutdowner) *http.Server {
			return &http.Server{
				Addr: "127.0.0.1:0",
				ConnContext: func(ctx context.Context, _ net.Conn) context.Context {
					return context.WithValue(ctx, ownKey{}, true)
				},
				Handler: s.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if r.Context().Value(ownKey{}) != true {
						http.Error(w, "the server's own ConnContext did not run", http.StatusInternalServerError)
						return
					}
					<-r.Context().Done() // a long poll
				})),
			}
		})),
	)
	app.RequireStart()
	addr := logs.FilterMessage("serving").All()[0].ContextMap()["addr"].(string)
	type result struct {
		code int
		err  error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := http.Get("http://" + addr)
		if err != nil {
			got <- result{err: err}
			return
		}
		resp.Body.Close()
		got <- result{resp.StatusCode, nil}
	}()
	wstest.WaitUntil(t, func() bool { return s.Stats().Active == 1 })
	start := time.Now()
	app.RequireStop()
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("stop took %v", took)
	}
	if r := wstest.Receive(t, got, 1)[0]; r.err != nil || r.code != http.StatusServiceUnavailable {
		t.Errorf("long poll got %d, %v; want 503", r.code, r.err)
	}
	if n := len(logs.FilterLevelExact(zapcore.WarnLevel).All()); n != 0 {
		t.Errorf("%d Warn entries: %q", n, messages(logs.All()))
	}
}
