package fxshutdown

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.uber.org/fx"
	"go.uber.org/zap"

	"github.com/wsshutdown/wsshutdown/internal/drainsignal"
	"github.com/wsshutdown/wsshutdown/shutdown"
)

// hookParams is what the module's hooks need from the graph.
type hookParams struct {
	fx.In

	Params
	Shutdowner    *shutdown.Shutdowner
	Lifecycle     fx.Lifecycle
	Stopper       fx.Shutdowner
	Logger        *zap.Logger          `optional:"true"`
	Slog          *slog.Logger         `optional:"true"`
	MeterProvider metric.MeterProvider `optional:"true"`
	HTTPServers   []*http.Server       `group:"fxshutdown.servers"`  // serversGroupName
	Servers       []Server             `group:"fxshutdown.listened"` // listenedGroupName

	// An *http.Server provided as a plain type, as Fx's tutorial does:
	// the module does not serve it, and says so.
	Plain *http.Server `optional:"true"`
}

// register appends the module's hooks: OnStart serves the servers, OnStop
// drains and shuts them down.
func register(p hookParams) error {
	config, err := p.config()
	if err != nil {
		return err
	}
	servers := make([]Server, 0, len(p.HTTPServers)+len(p.Servers))
	for _, srv := range p.HTTPServers {
		servers = append(servers, Server{HTTP: srv})
	}
	servers = append(servers, p.Servers...)
	plain := p.Plain != nil
	https := make([]*http.Server, len(servers))
	for i, srv := range servers {
		https[i] = srv.HTTP
		if srv.HTTP == nil {
			return fmt.Errorf("fxshutdown: server %d of %d given with AsServer is nil", i+1, len(servers))
		}
		plain = plain && srv.HTTP != p.Plain
	}
	if plain && len(servers) == 0 {
		return errors.New("fxshutdown: an *http.Server is in the graph, but no server is given with fxshutdown.AsServer, " +
			"so the module neither serves nor drains it: provide it with fx.Provide(fxshutdown.AsServer(NewHTTPServer)), " +
			"and delete the server's own OnStart and OnStop hooks and any fx.Invoke(func(*http.Server) {})")
	}
	log := p.Logger
	if log == nil {
		sl := p.Slog
		if sl == nil {
			sl = slog.Default() // so that the deadline's warning is never silent
		}
		log = zap.New(&slogCore{h: sl.Handler()})
	}
	m, err := newMetrics(p.MeterProvider, p.Shutdowner)
	if err != nil {
		return fmt.Errorf("fxshutdown: metrics: %w", err)
	}
	h := &hooks{
		s:       p.Shutdowner,
		stopper: p.Stopper,
		log:     log.Named("shutdown"),
		metrics: m,
		config:  config,
		servers: servers,
		https:   https,
		watches: make([]serverWatch, len(servers)),
		plain:   plain,
	}
	p.Lifecycle.Append(fx.Hook{OnStart: h.start, OnStop: h.stop})
	return nil
}

type hooks struct {
	s       *shutdown.Shutdowner
	stopper fx.Shutdowner
	log     *zap.Logger
	metrics *metrics
	config  Config
	servers []Server
	https   []*http.Server // each of servers' HTTP
	watches []serverWatch  // one for each of servers
	plain   bool           // an *http.Server in the graph is not among servers
	serving sync.WaitGroup // the Serve goroutines
}

// A serverWatch follows one server's connections until the module knows
// whether its requests reach the Shutdowner's middleware.
type serverWatch struct {
	addr   string
	began  atomic.Bool // a request has begun on one of its connections
	judged atomic.Bool // the module has checked, and warned if it had to
}

// start listens on every server's address, or calls its Listen, before it
// returns, so that a busy or bad address fails the application's start, and
// serves each in a goroutine.
func (h *hooks) start(ctx context.Context) error {
	switch {
	case len(h.servers) == 0:
		h.log.Warn("no servers: the module serves nothing, and drains only the handlers of servers run otherwise",
			zap.String("fix", "provide each server with fx.Provide(fxshutdown.AsServer(NewHTTPServer))"))
	case h.plain:
		h.log.Warn("an *http.Server in the graph is not given with fxshutdown.AsServer: the module neither serves nor drains it")
	}
	listeners := make([]net.Listener, 0, len(h.servers))
	for _, srv := range h.servers {
		ln, err := listen(ctx, srv)
		if err != nil {
			for _, ln := range listeners {
				_ = ln.Close() // nothing was served on it
			}
			return err
		}
		listeners = append(listeners, ln)
	}
	drainsignal.Watch(h.s, h.https)
	for i, srv := range h.servers {
		ln := listeners[i]
		h.watches[i].addr = ln.Addr().String()
		h.watchConns(srv.HTTP, &h.watches[i])
		h.log.Info("serving", zap.String("addr", ln.Addr().String()), zap.Bool("tls", hasCertificates(srv.HTTP.TLSConfig)))
		h.serving.Go(func() { h.serve(srv.HTTP, ln) })
	}
	return nil
}

// listen opens srv's listener: its own, or TCP on its address.
func listen(ctx context.Context, srv Server) (net.Listener, error) {
	if srv.Listen != nil {
		ln, err := srv.Listen(ctx)
		if err != nil {
			return nil, fmt.Errorf("fxshutdown: a server's Listen: %w", err)
		}
		return ln, nil
	}
	addr := srv.HTTP.Addr
	if addr == "" {
		addr = ":http" // as net/http
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("fxshutdown: listen on %q: %w", addr, err)
	}
	return ln, nil
}

// watchConns hooks srv with the Shutdowner's ConnContext and ConnState
// (Shutdowner.ConfigureServer), after the hooks the server already had:
// connections with no request begun are closed once the drain is over,
// and requests still pending after the grace are ended
// (shutdown.WithPendingGrace). Until the first request has ended or
// hijacked its connection, it also follows w: if that request did not
// reach the Shutdowner's middleware, the module warns.
func (h *hooks) watchConns(srv *http.Server, w *serverWatch) {
	h.s.ConfigureServer(srv)
	hooked := srv.ConnState
	srv.ConnState = func(c net.Conn, state http.ConnState) {
		hooked(c, state)
		if !w.judged.Load() {
			switch state {
			case http.StateActive:
				w.began.Store(true)
			case http.StateIdle, http.StateHijacked: // the handler has run, or returned
				h.judge(srv, w)
			}
		}
	}
}

// judge warns, once, if a request of srv has begun and none has reached
// the Shutdowner's middleware.
func (h *hooks) judge(srv *http.Server, w *serverWatch) {
	switch {
	case drainsignal.Served(h.s, srv):
		w.judged.Store(true)
	case w.began.Load() && !w.judged.Swap(true):
		h.log.Warn("requests do not reach the Shutdowner's middleware: they are not drained, and get no goodbyes",
			zap.String("addr", w.addr), zap.String("fix", "wrap the server's handler with s.Middleware"))
	}
}

func hasCertificates(c *tls.Config) bool {
	return c != nil && (len(c.Certificates) > 0 || c.GetCertificate != nil || c.GetConfigForClient != nil)
}

// serve serves srv on ln until srv shuts down. Any other end of Serve stops
// the application with exit code 1.
func (h *hooks) serve(srv *http.Server, ln net.Listener) {
	addr := ln.Addr().String()
	var err error
	if hasCertificates(srv.TLSConfig) {
		err = srv.ServeTLS(ln, "", "")
	} else {
		err = srv.Serve(ln)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return
	}
	h.log.Error("serve failed", zap.String("addr", addr), zap.Error(err))
	if err := h.stopper.Shutdown(fx.ExitCode(1)); err != nil {
		h.log.Error("cannot stop the application", zap.Error(err))
	}
}

// stop drains the handlers and shuts every server down within the drain's
// share of ctx (Config), then waits for the Serve goroutines. It logs each
// phase: not ready (during a drain delay), drain started, draining (every
// LogInterval), and drained or, when the time ran out or goodbyes were
// lost, a Warn entry.
func (h *hooks) stop(ctx context.Context) error {
	defer h.serving.Wait()
	begin := time.Now()
	for i, srv := range h.servers {
		h.judge(srv.HTTP, &h.watches[i]) // a stream that is still open
	}
	before := h.s.Stats()
	drainCtx := ctx
	budget := zap.Skip()
	if d, limited := h.config.drainBudget(ctx); limited {
		var cancel context.CancelFunc
		drainCtx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
		budget = zap.Duration("budget", d)
	}
	if h.config.DrainDelay > 0 {
		h.log.Info("not ready", append(counts(before), zap.Duration("delay", h.config.DrainDelay), budget)...)
	} else {
		h.logDrainStarted(before, budget)
	}

	done, logged := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(logged)
		h.logProgress(done, budget)
	}()
	err := drainsignal.Drain(drainCtx, h.s, h.https)
	close(done)
	<-logged

	after := h.s.Stats()
	took := time.Since(begin)
	elapsed := zap.Duration("duration", took)
	var left *shutdown.DrainError
	errors.As(err, &left)
	timedOut := left != nil && left.Err != nil
	h.metrics.recordDrain(took, timedOut)
	switch {
	case timedOut:
		h.log.Warn("drain deadline reached, connections closed",
			zap.Int("active", left.Active), zap.Int("hijacked", left.Hijacked), nonZero("open", uint64(left.Open)),
			nonZero("servers", uint64(left.Servers)), zap.Uint64("forced", after.Forced-before.Forced),
			nonZero("rejected", after.Rejected), nonZero("goodbyes", after.Goodbyes),
			nonZero("unwritten", after.Unwritten), nonZero("unanswered", after.Unanswered), elapsed, zap.Error(err))
	case left != nil:
		h.log.Warn("drained, goodbyes not written", append(counts(after), elapsed, zap.Error(err))...)
	case err != nil:
		h.log.Error("shutdown failed", append(counts(after), elapsed, zap.Error(err))...)
	default:
		h.log.Info("drained", append(counts(after), elapsed)...)
	}
	return err
}

func (h *hooks) logDrainStarted(st shutdown.Stats, budget zap.Field) {
	h.log.Info("drain started", append(counts(st), budget, zap.Int("servers", len(h.servers)))...)
}

// logProgress logs the start of a drain that follows a delay, when it
// begins, then the counts every LogInterval until done is closed. Shutdown
// begins the drain before it returns, so the start is always logged.
func (h *hooks) logProgress(done <-chan struct{}, budget zap.Field) {
	if h.config.DrainDelay > 0 {
		<-h.s.Draining()
		h.logDrainStarted(h.s.Stats(), budget)
	}
	t := time.NewTicker(h.config.logInterval())
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			h.log.Info("draining", counts(h.s.Stats())...)
		}
	}
}

// counts are the fields of every entry about a drain.
func counts(st shutdown.Stats) []zap.Field {
	return []zap.Field{
		zap.Int("active", st.Active), zap.Int("hijacked", st.Hijacked), zap.Int("open", st.Open), nonZero("rejected", st.Rejected),
		nonZero("goodbyes", st.Goodbyes), nonZero("unwritten", st.Unwritten), nonZero("unanswered", st.Unanswered),
	}
}

func nonZero(key string, n uint64) zap.Field {
	if n == 0 {
		return zap.Skip()
	}
	return zap.Uint64(key, n)
}
