package fxshutdown_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/fx"
	"go.uber.org/fx/fxevent"
	"go.uber.org/zap"

	"github.com/wsshutdown/wsshutdown/fxshutdown"
	"github.com/wsshutdown/wsshutdown/shutdown"
)

// NewMux serves a websocket that says goodbye with 1001 when the server
// drains.
func NewMux() *http.ServeMux {
	upgrader := websocket.Upgrader{}
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		drain := shutdown.Draining(r.Context()) // asked first: the goodbye is this handler's
		c, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		closed := make(chan struct{})
		go func() {
			defer close(closed)
			for {
				if _, _, err := c.NextReader(); err != nil {
					return
				}
			}
		}()
		select {
		case <-closed:
		case <-drain:
			msg := websocket.FormatCloseMessage(websocket.CloseGoingAway, "server shutting down")
			_ = c.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
			<-closed
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
