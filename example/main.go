// Command example is a complete Fx application that drains a websocket and a
// server-sent-events stream gracefully. Run it, open http://localhost:8080,
// and stop it with Ctrl-C: the page shows what a client sees.
package main

import (
	"flag"
	"net/http"
	"time"

	"go.uber.org/fx"
	"go.uber.org/fx/fxevent"
	"go.uber.org/zap"

	"github.com/wsshutdown/wsshutdown/fxshutdown"
	"github.com/wsshutdown/wsshutdown/shutdown"
)

func main() {
	addr := flag.String("addr", ":8080", "address to serve on")
	bareAddr := flag.String("bare-addr", ":8081", "address of the server without the Shutdowner, for comparison")
	tick := flag.Duration("tick", time.Second, "interval of the server's ticks")
	var config fxshutdown.Config
	flag.DurationVar(&config.StaggerWindow, "stagger", 0, "spread the goodbyes over this window")
	flag.DurationVar(&config.DrainDelay, "drain-delay", 0, "report not-ready and keep serving this long before draining")
	flag.Parse()
	fx.New(
		fx.Provide(func() (*zap.Logger, error) { return zap.NewProduction() }),
		fx.WithLogger(func(log *zap.Logger) fxevent.Logger { return &fxevent.ZapLogger{Logger: log} }),
		fx.Supply(config),
		appOptions(*addr, *bareAddr, *tick),
	).Run() // stops on SIGINT or SIGTERM, and exits non-zero if the stop fails
}

// appOptions is the application without its logger: the server on addr,
// its handlers, and the module that drains them, and for comparison the
// same drain-unaware handlers on bareAddr without the module.
func appOptions(addr, bareAddr string, tick time.Duration) fx.Option {
	return fx.Options(
		// Built for the module's server, before the module's hooks are
		// appended: at stop the module drains first, then the bare server
		// stops.
		fx.Provide(func(lc fx.Lifecycle, log *zap.Logger, cfg handlerConfig) *bareServer {
			return newBareServer(lc, log, bareAddr, cfg)
		}),
		fxshutdown.Module,
		fx.Supply(handlerConfig{Tick: tick}),
		fx.Provide(fxshutdown.AsServer(func(s *shutdown.Shutdowner, cfg handlerConfig, bare *bareServer) *http.Server {
			return &http.Server{
				Addr:              addr,
				Handler:           s.Middleware(newMux(cfg, s.ReadinessHandler(), bare)),
				ReadHeaderTimeout: 10 * time.Second,
			}
		})),
	)
}
