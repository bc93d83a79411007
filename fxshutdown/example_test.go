package fxshutdown_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/fx"
	"go.uber.org/fx/fxevent"
	"go.uber.org/zap"

	"github.com/wsshutdown/wsshutdown/fxshutdown"
	"github.com/wsshutdown/wsshutdown/shutdown"
)

// NewMux serves an event stream whose handler knows nothing of the drain:
// the Shutdowner ends it with a retry field on its behalf.
func NewMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/events", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		ticker := time.NewTicker(time.Second)
		defer ticker.Stop()
		for {
			fmt.Fprintf(w, "data: %s\n\n", time.Now().Format(time.RFC3339))
			if rc.Flush() != nil {
				return
			}
			select {
			case <-r.Context().Done():
				return
			case <-ticker.C:
			}
		}
	})
	return mux
}

// NewHTTPServer wraps the mux in the Shutdowner's middleware.
func NewHTTPServer(s *shutdown.Shutdowner, mux *http.ServeMux) *http.Server {
	return &http.Server{Addr: "127.0.0.1:0", Handler: s.Middleware(mux)}
}

// A complete Fx application: the module, a server given with AsServer, and
// one zap logger for the application and Fx's own events.
func Example() {
	app := fx.New(
		fx.Provide(func() (*zap.Logger, error) { return zap.NewProduction() }),
		fx.WithLogger(func(log *zap.Logger) fxevent.Logger { return &fxevent.ZapLogger{Logger: log} }),
		fxshutdown.Module,
		fx.Provide(
			NewMux,
			fxshutdown.AsServer(NewHTTPServer),
		),
		fx.Supply(fxshutdown.Config{DrainFraction: 0.5}), // optional
	)
	// In a program: app.Run(), which stops on SIGINT or SIGTERM.
	if err := app.Start(context.Background()); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("stop:", app.Stop(context.Background()))
	// Output:
	// stop: <nil>
}

// A server on a unix socket of the application's own: its constructor
// returns a Server with a Listen function, which the module calls at start.
func ExampleServer() {
	dir, err := os.MkdirTemp("", "wsshutdown")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "app.sock")

	NewUnixServer := func(s *shutdown.Shutdowner, mux *http.ServeMux) fxshutdown.Server {
		return fxshutdown.Server{
			HTTP: &http.Server{Handler: s.Middleware(mux)},
			Listen: func(ctx context.Context) (net.Listener, error) {
				var lc net.ListenConfig
				return lc.Listen(ctx, "unix", path)
			},
		}
	}
	app := fx.New(
		fx.NopLogger,
		fxshutdown.Module,
		fx.Provide(NewMux, fxshutdown.AsServer(NewUnixServer)),
	)
	if err := app.Start(context.Background()); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("stop:", app.Stop(context.Background()))
	// Output:
	// stop: <nil>
}
