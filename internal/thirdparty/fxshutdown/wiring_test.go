package fxshutdown_test

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"github.com/wsshutdown/wsshutdown/fxshutdown"
	"github.com/wsshutdown/wsshutdown/internal/thirdparty/wstest"
	"github.com/wsshutdown/wsshutdown/shutdown"
)

// NewRouter is a constructor of the wrong type for AsServer.
func NewRouter() *http.ServeMux { return http.NewServeMux() }

// Mistakes in the wiring fail the application at fx.New, with an error that
// says what is wrong.
func TestWiringMistakesFailFast(t *testing.T) {
	for _, tc := range []struct {
		name string
		opt  fx.Option
		want []string
	}{
		{
			"a constructor that returns a mux",
			fx.Provide(fxshutdown.AsServer(NewRouter)),
			[]string{"fxshutdown_test.NewRouter", "(*http.ServeMux)", "want *http.Server or fxshutdown.Server"},
		},
		{
			"a constructor that returns two servers",
			fx.Provide(fxshutdown.AsServer(func() (*http.Server, *http.Server) { return nil, nil })),
			[]string{"(*http.Server, *http.Server)"},
		},
		{
			"not a function",
			fx.Provide(fxshutdown.AsServer(&http.Server{})),
			[]string{"AsServer(*http.Server): want a constructor function"},
		},
		{
			"a goodbye code that cannot be sent",
			fx.Supply(fxshutdown.Config{GoodbyeCode: 1006}),
			[]string{"Config.GoodbyeCode 1006", "cannot be sent in a close frame"},
		},
		{
			"a goodbye reason too long",
			fx.Supply(fxshutdown.Config{GoodbyeReason: strings.Repeat("x", 124)}),
			[]string{"at most 123 bytes"},
		},
		{
			"a Config and a *Config",
			fx.Supply(fxshutdown.Config{DrainTimeout: time.Second}, &fxshutdown.Config{DrainTimeout: 2 * time.Second}),
			[]string{"both a Config and a *Config"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app := fx.New(fx.NopLogger, fxshutdown.Module, tc.opt)
			err := app.Err()
			if err == nil {
				t.Fatal("fx.New succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("fx.New error %q does not say %q", err, w)
				}
			}
		})
	}
}

// A supplied *Config is used like a Config.
func TestConfigPointer(t *testing.T) {
	app := newTestApp(t, func(*shutdown.Shutdowner) http.Handler { return http.NotFoundHandler() },
		fx.Supply(&fxshutdown.Config{DrainTimeout: 123 * time.Millisecond}))
	app.RequireStop()
	started := app.logs.FilterMessage("drain started").All()
	if len(started) != 1 || started[0].ContextMap()["budget"] != 123*time.Millisecond {
		t.Fatalf("\"drain started\" entries %v, want one with the supplied budget of 123ms", started)
	}
}

// A server on a unix socket of the application's own, given as a Server,
// drains like a TCP one: its websocket client sees 1001.
func TestServerOnOwnListener(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.sock")
	connected := make(chan struct{}, 1)
	app := fxtest.New(t,
		fx.NopLogger,
		fxshutdown.Module,
		fx.Provide(fxshutdown.AsServer(func(s *shutdown.Shutdowner) fxshutdown.Server {
			return fxshutdown.Server{
				HTTP: &http.Server{Handler: s.Middleware(wstest.Server(connected))},
				Listen: func(ctx context.Context) (net.Listener, error) {
					var lc net.ListenConfig
					return lc.Listen(ctx, "unix", path)
				},
			}
		})),
	)
	app.RequireStart()
	dialer := websocket.Dialer{NetDialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}
	c, resp, err := dialer.Dial("ws://app/", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	client := wstest.Read(c)
	<-connected
	app.RequireStop()
	wstest.WantCodes(t, []<-chan wstest.Goodbye{client}, websocket.CloseGoingAway)
}

// A Listen that fails fails the start with its error.
func TestServerListenFails(t *testing.T) {
	app := fx.New(fx.NopLogger, fxshutdown.Module,
		fx.Provide(fxshutdown.AsServer(func() (fxshutdown.Server, error) {
			return fxshutdown.Server{
				HTTP: &http.Server{},
				Listen: func(context.Context) (net.Listener, error) {
					return nil, &net.AddrError{Err: "no socket passed", Addr: "fd 3"}
				},
			}, nil
		})),
	)
	err := app.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "no socket passed") {
		t.Fatalf("Start = %v, want the Listen error", err)
	}
}

// recordingHandler is an slog.Handler that keeps every record.
type recordingHandler struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *recordingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordingHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *recordingHandler) WithGroup(string) slog.Handler            { return h }

func (h *recordingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r.Clone())
	return nil
}

// attrs returns r's attributes by key.
func attrs(r slog.Record) map[string]any {
	m := make(map[string]any)
	r.Attrs(func(a slog.Attr) bool {
		m[a.Key] = a.Value.Any()
		return true
	})
	return m
}

// Without a *zap.Logger, the module logs through the application's
// *slog.Logger: the same entries, levels and counts.
func TestSlogLogger(t *testing.T) {
	const n = 3
	h := &recordingHandler{}
	connected := make(chan struct{}, n)
	app := fxtest.New(t,
		fx.NopLogger,
		fx.Supply(slog.New(h)),
		fxshutdown.Module,
		fx.Provide(fxshutdown.AsServer(func(s *shutdown.Shutdowner) *http.Server {
			return &http.Server{Addr: "127.0.0.1:0", Handler: s.Middleware(wstest.Server(connected))}
		})),
	)
	app.RequireStart()
	h.mu.Lock()
	addr, _ := attrs(h.records[0])["addr"].(string)
	h.mu.Unlock()
	clients := make([]<-chan wstest.Goodbye, n)
	for i := range clients {
		clients[i] = dial(t, addr)
	}
	wstest.Receive(t, connected, n)
	app.RequireStop()
	wstest.WantCodes(t, clients, websocket.CloseGoingAway)

	h.mu.Lock()
	defer h.mu.Unlock()
	var got []string
	for _, r := range h.records {
		got = append(got, r.Message)
		a := attrs(r)
		if a["logger"] != "shutdown" || r.Level != slog.LevelInfo {
			t.Errorf("%q: level %v, logger %v; want INFO from \"shutdown\"", r.Message, r.Level, a["logger"])
		}
		switch r.Message {
		case "drain started":
			if a["active"] != int64(n) || a["hijacked"] != int64(n) {
				t.Errorf("drain started: %v, want active and hijacked %d", a, n)
			}
		case "drained":
			if _, ok := a["duration"].(time.Duration); !ok || a["active"] != int64(0) || a["hijacked"] != int64(0) {
				t.Errorf("drained: %v, want zero counts and a duration", a)
			}
		}
	}
	if strings.Join(got, ",") != "serving,drain started,drained" {
		t.Fatalf("entries %q, want serving, drain started, drained", got)
	}
}
