package fxshutdown_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/wsshutdown/wsshutdown/fxshutdown"
	"github.com/wsshutdown/wsshutdown/internal/thirdparty/wstest"
	"github.com/wsshutdown/wsshutdown/shutdown"
)

// stuckApp starts an Fx app whose one server, over TLS if cert is set,
// serves h through the middleware on a listener with small send buffers,
// with a hook that runs after the module's and sets laterRan, and opts. It
// returns the app, its logs, and the server's websocket URL.
func stuckApp(t *testing.T, h http.Handler, cert *tls.Certificate, laterRan *atomic.Bool, opts ...fx.Option) (*fxtest.App, *observer.ObservedLogs, string) {
	t.Helper()
	core, logs := observer.New(zapcore.InfoLevel)
	app := fxtest.New(t, fx.Options(opts...),
		fx.Module("database", fx.Invoke(func(lc fx.Lifecycle) {
			lc.Append(fx.StopHook(func() { laterRan.Store(true) }))
		})),
		fx.NopLogger,
		fx.Supply(zap.New(core)),
		fxshutdown.Module,
		fx.Provide(fxshutdown.AsServer(func(s *shutdown.Shutdowner) fxshutdown.Server {
			srv := &http.Server{Handler: s.Middleware(h)}
			if cert != nil {
				srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{*cert}}
			}
			return fxshutdown.Server{HTTP: srv, Listen: func(ctx context.Context) (net.Listener, error) {
				ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", "127.0.0.1:0")
				return wstest.SmallSendBuffers(ln), err
			}}
		})),
	)
	app.RequireStart()
	scheme := "ws"
	if cert != nil {
		scheme = "wss"
	}
	return app, logs, scheme + "://" + logs.FilterMessage("serving").All()[0].ContextMap()["addr"].(string) + "/"
}

// Handlers that know nothing of the drain write to peers that stopped
// reading: a 1 s stop returns before its deadline, however many peers, over
// ws and wss, with the Warn entry written and the later hook run.
func TestStopWithStuckPeers(t *testing.T) {
	cert := testCertificate(t)
	for _, n := range []int{1, 16, 64, 1000} {
		for _, tlsOn := range []bool{false, true} {
			name := fmt.Sprintf("%d/ws", n)
			var c *tls.Certificate
			if tlsOn {
				name, c = fmt.Sprintf("%d/wss", n), &cert
			}
			t.Run(name, func(t *testing.T) {
				connected := make(chan struct{}, n)
				var laterRan atomic.Bool
				app, logs, url := stuckApp(t, wstest.Floods(connected), c, &laterRan)
				wstest.DialStuckPeers(t, url, &tls.Config{InsecureSkipVerify: true}, n) // the test's own certificate
				wstest.Receive(t, connected, n)

				const stopTimeout = time.Second
				ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
				defer cancel()
				start := time.Now()
				err := app.Stop(ctx)
				took := time.Since(start)
				warn := logs.FilterMessage("drain deadline reached, connections closed").All()
				if took > stopTimeout+200*time.Millisecond || ctx.Err() != nil {
					t.Errorf("Stop returned after %v of a %v stop timeout", took, stopTimeout)
				}
				var de *shutdown.DrainError
				if !errors.As(err, &de) || de.Hijacked != n {
					t.Fatalf("Stop = %v, want a DrainError with %d connections", err, n)
				}
				if len(warn) != 1 || warn[0].ContextMap()["forced"] != uint64(n) {
					t.Fatalf("Warn entries when Stop returned: %v, want one with forced=%d", warn, n)
				}
				if !laterRan.Load() {
					t.Error("the hook that runs after the module's did not run")
				}
			})
		}
	}
}

// Thousands of open event streams whose handlers know nothing of the
// drain, and a 2 s stop: the drain's budget is more than a second, each
// connection counted once, and every stream ends with its retry field and a
// clean end.
func TestStopWithManyEventStreams(t *testing.T) {
	sizes := []int{2000, 4000}
	if wstest.Race {
		sizes = []int{2000} // the race detector's goroutines cost memory and time
	}
	for _, n := range sizes {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			app := newTestApp(t, func(*shutdown.Shutdowner) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Content-Type", "text/event-stream")
					rc := http.NewResponseController(w)
					ticker := time.NewTicker(time.Second) // a heartbeat, as streams keep idle ones alive
					defer ticker.Stop()
					for i := 0; ; i++ {
						fmt.Fprintf(w, "data: %d\n\n", i)
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
			})
			client := &http.Client{Transport: &http.Transport{}}
			defer client.CloseIdleConnections()
			started, ended := make(chan struct{}, n), make(chan error, n)
			for range n {
				go func() { ended <- readRetry(client, "http://"+app.addr+"/", started) }()
			}
			wstest.Receive(t, started, n)

			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if err := app.Stop(ctx); err != nil {
				t.Fatalf("Stop = %v", err)
			}
			began := app.logs.FilterMessage("drain started").All()
			if len(began) != 1 || began[0].ContextMap()["budget"].(time.Duration) <= time.Second {
				t.Fatalf("drain started entries %v, want one with a budget over 1 s", began)
			}
			for _, err := range wstest.Receive(t, ended, n) {
				if err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// readRetry reads url's event stream, tells started once its first event is
// in, and returns nil once it has read a retry field and a clean end.
func readRetry(client *http.Client, url string, started chan<- struct{}) error {
	resp, err := client.Get(url)
	if err != nil {
		started <- struct{}{}
		return err
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	retry := false
	for first := true; ; first = false {
		line, err := r.ReadString('\n')
		if first {
			started <- struct{}{}
		}
		switch {
		case err != nil && retry && line == "":
			return nil
		case err != nil:
			return fmt.Errorf("the stream ended with %w, retry read: %v", err, retry)
		case strings.HasPrefix(line, "retry: "):
			retry = true
		}
	}
}

// Peers whose buffers are full, of handlers gone idle: the stop is over in
// a second or two of its 4 s, and says so: a Warn entry and the metrics
// with the goodbyes that did not reach the peers, and the DrainError, which
// makes the exit status 1.
func TestStopWarnsOfLostGoodbyes(t *testing.T) {
	const n = 5
	full := make(chan struct{}, n)
	var laterRan atomic.Bool
	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer func() { _ = provider.Shutdown(context.Background()) }()
	app, logs, url := stuckApp(t, wstest.FillsThenIdles(full), nil, &laterRan,
		fx.Supply(fx.Annotate(provider, fx.As(new(metric.MeterProvider)))))
	wstest.DialStuckPeers(t, url, nil, n)
	wstest.Receive(t, full, n)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	start := time.Now()
	err := app.Stop(ctx)
	if took := time.Since(start); took > 2500*time.Millisecond {
		t.Errorf("Stop took %v of 4 s", took)
	}
	var de *shutdown.DrainError
	if !errors.As(err, &de) || de.Err != nil || de.Unwritten+de.Unanswered != n {
		t.Fatalf("Stop = %v, want a DrainError with %d goodbyes lost and no deadline", err, n)
	}
	warn := logs.FilterMessage("drained, goodbyes not written").All()
	if len(warn) != 1 || warn[0].Level != zapcore.WarnLevel {
		t.Fatalf("entries %v, want one Warn of lost goodbyes", messages(logs.All()))
	}
	m := warn[0].ContextMap()
	unwritten, _ := m["unwritten"].(uint64)
	unanswered, _ := m["unanswered"].(uint64)
	if unwritten != uint64(de.Unwritten) || unanswered != uint64(de.Unanswered) {
		t.Errorf("unwritten=%v unanswered=%v, want the error's %d and %d", m["unwritten"], m["unanswered"], de.Unwritten, de.Unanswered)
	}
	sums := collect(t, reader).sums
	if sums["wsshutdown.goodbyes.unwritten"] != int64(de.Unwritten) || sums["wsshutdown.goodbyes.unanswered"] != int64(de.Unanswered) {
		t.Errorf("metrics %v, want the error's %d unwritten and %d unanswered", sums, de.Unwritten, de.Unanswered)
	}
}
