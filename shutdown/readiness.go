package shutdown

import (
	"context"
	"net/http"
	"time"
)

// ReadinessHandler returns a handler for a readiness probe: it answers
// 200 OK while the Shutdowner is in service and 503 Service Unavailable from
// the moment [Shutdowner.Shutdown] or [Shutdowner.ShutdownWithServer] is
// first called, through the drain delay and the drain. It may be served
// inside [Shutdowner.Middleware] or outside: once the drain has begun the
// middleware's own 503 says the same. Every call returns an equivalent
// handler.
func (s *Shutdowner) ReadinessHandler() http.Handler {
	s.init()
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		select {
		case <-s.notReady:
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
		default:
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			_, _ = w.Write([]byte("ok\n"))
		}
	})
}

// delay reports not-ready and, with a drain delay, waits for it to pass
// before the drain begins: the first caller waits for the delay, the others
// for the drain, and every caller for no longer than its ctx.
func (s *Shutdowner) delay(ctx context.Context) {
	s.mu.Lock()
	first := false
	select {
	case <-s.notReady:
	default:
		close(s.notReady)
		first = true
	}
	s.mu.Unlock()
	if s.drainDelay <= 0 {
		return
	}
	var elapsed <-chan time.Time
	if first {
		t := time.NewTimer(s.drainDelay)
		defer t.Stop()
		elapsed = t.C
	}
	select {
	case <-elapsed:
	case <-s.draining: // begun by another caller
	case <-ctx.Done():
	}
}
