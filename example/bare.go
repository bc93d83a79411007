package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"go.uber.org/fx"
	"go.uber.org/zap"
)

// bareServer serves the drain-unaware handlers without the Shutdowner: a
// server as net/http alone stops it, beside the module's, so that the page
// shows what the same clients see without the library. It stops the way
// the usual advice has it, http.Server.Shutdown with a timeout and then
// Close, and then closes the connections that its websockets hijacked as
// the process's exit would: neither Shutdown nor Close touches them.
type bareServer struct {
	srv  *http.Server
	port string // set by start

	mu       sync.Mutex
	hijacked map[net.Conn]struct{}
}

// bareShutdownTimeout is the bare server's Shutdown timeout.
const bareShutdownTimeout = time.Second

func newBareServer(lc fx.Lifecycle, log *zap.Logger, addr string, cfg handlerConfig) *bareServer {
	b := &bareServer{hijacked: make(map[net.Conn]struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /unaware/ws", cfg.serveUnawareWebSocket)
	mux.HandleFunc("GET /unaware/events", cfg.serveUnawareEvents)
	b.srv = &http.Server{
		Addr:              addr,
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ConnState: func(c net.Conn, state http.ConnState) {
			if state == http.StateHijacked {
				b.mu.Lock()
				b.hijacked[c] = struct{}{}
				b.mu.Unlock()
			}
		},
	}
	log = log.Named("bare")
	lc.Append(fx.Hook{
		OnStart: func(ctx context.Context) error {
			var lc net.ListenConfig
			ln, err := lc.Listen(ctx, "tcp", addr)
			if err != nil {
				return err
			}
			b.port = strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
			log.Info("serving without the Shutdowner", zap.String("addr", ln.Addr().String()))
			go func() {
				if err := b.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
					log.Error("serve failed", zap.Error(err))
				}
			}()
			return nil
		},
		OnStop: func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, bareShutdownTimeout)
			defer cancel()
			err := b.srv.Shutdown(ctx) // waits for the event stream until the timeout
			_ = b.srv.Close()          // cuts it
			b.mu.Lock()
			for c := range b.hijacked {
				_ = c.Close() // as the process's exit would: no close frame
			}
			b.mu.Unlock()
			log.Info("stopped without the Shutdowner", zap.NamedError("shutdown", err))
			return nil
		},
	})
	return b
}

// servePort answers the bare server's port, for the page.
func (b *bareServer) servePort(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"port":"` + b.port + `"}`))
}
