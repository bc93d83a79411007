package shutdown

import (
	"net/http"

	"github.com/wsshutdown/wsshutdown/internal/drainsignal"
)

// The servers that fxshutdown serves, watched until a request of each has
// reached the middleware, so that the module can say which server's
// handler is not wrapped. Until then the middleware looks up each
// request's server; after, it loads one atomic flag.

func init() {
	drainsignal.Watch = func(s any, servers []*http.Server) { s.(*Shutdowner).watch(servers) }
	drainsignal.Served = func(s any, srv *http.Server) bool { return s.(*Shutdowner).served(srv) }
}

// watch starts watching servers.
func (s *Shutdowner) watch(servers []*http.Server) {
	s.watchMu.Lock()
	defer s.watchMu.Unlock()
	if s.watched == nil {
		s.watched = make(map[*http.Server]bool, len(servers))
	}
	for _, srv := range servers {
		if _, ok := s.watched[srv]; !ok {
			s.watched[srv] = false
			s.watching.Store(true)
		}
	}
}

// noteServer records that a request of r's server has reached the
// middleware, and stops the watch once every watched server has had one.
func (s *Shutdowner) noteServer(r *http.Request) {
	srv, _ := r.Context().Value(http.ServerContextKey).(*http.Server)
	s.watchMu.Lock()
	defer s.watchMu.Unlock()
	if seen, ok := s.watched[srv]; !ok || seen {
		return
	}
	s.watched[srv] = true
	for _, seen := range s.watched {
		if !seen {
			return
		}
	}
	s.watching.Store(false)
}

// served reports whether a request of srv, a watched server, has reached
// the middleware.
func (s *Shutdowner) served(srv *http.Server) bool {
	s.watchMu.Lock()
	defer s.watchMu.Unlock()
	return s.watched[srv]
}
