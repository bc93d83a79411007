package shutdown

import (
	"context"
	"net"
	"net/http"
)

// ConfigureServer sets srv's ConnContext and ConnState hooks to the
// Shutdowner's, in one call:
//
//	srv := &http.Server{Addr: ":8080", Handler: s.Middleware(mux)}
//	s.ConfigureServer(srv)
//
// Hooks srv already has keep running: its ConnContext first, with
// [Shutdowner.ConnContext] on the context it returns, and
// [Shutdowner.ConnState] before its ConnState. It does not wrap srv's
// Handler: that is [Shutdowner.Middleware]'s, wherever in the handler chain
// the application puts it.
//
// Call it before srv serves, as net/http reads the hooks for every
// connection. A second call for the same srv does nothing, so that a
// server handed both to code of its own and to a framework that calls it
// (the Fx module) is hooked once. ConfigureServer panics if srv is nil. It
// is safe for concurrent use on different servers.
func (s *Shutdowner) ConfigureServer(srv *http.Server) {
	if srv == nil {
		panic("shutdown: ConfigureServer called with a nil server")
	}
	s.serverMu.Lock()
	_, done := s.configured[srv]
	if !done {
		if s.configured == nil {
			s.configured = make(map[*http.Server]struct{})
		}
		s.configured[srv] = struct{}{}
	}
	s.serverMu.Unlock()
	if done {
		return
	}
	if own := srv.ConnContext; own == nil {
		srv.ConnContext = s.ConnContext
	} else {
		srv.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
			return s.ConnContext(own(ctx, c), c)
		}
	}
	if own := srv.ConnState; own == nil {
		srv.ConnState = s.ConnState
	} else {
		srv.ConnState = func(c net.Conn, state http.ConnState) {
			s.ConnState(c, state)
			own(c, state)
		}
	}
}
