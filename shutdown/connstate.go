package shutdown

import (
	"net"
	"net/http"
)

// ConnState is a hook for [http.Server.ConnState]:
//
//	srv.ConnState = s.ConnState
//
// (call it from a hook of your own if you have one). With it, the Shutdowner
// knows the server's connections that are open but not idle: those on which
// no request has begun, in net/http's terms, because the client has not sent
// one yet (browsers open connections ahead of need) or is still sending the
// first one's header, and those whose request is being served. Once its
// drain is over, whether everything finished or the deadline came,
// [Shutdowner.Shutdown] closes the connections on which no request has
// begun, and from then on closes new ones as they arrive: a request on them
// would be answered 503, and [http.Server.Shutdown] would otherwise wait
// five seconds for each of them, or longer for a client that sends its
// header slowly. [Stats].Open counts them all.
//
// ConnState is safe for concurrent use, and may serve several servers.
func (s *Shutdowner) ConnState(c net.Conn, state http.ConnState) {
	if !s.hooked.Load() {
		s.hooked.Store(true)
	}
	s.serverMu.Lock()
	switch state {
	case http.StateNew:
		if s.closeNew {
			s.serverMu.Unlock()
			_ = c.Close() // the drain is over; the error tells nothing
			return
		}
		fallthrough
	case http.StateActive:
		if s.serverConns == nil {
			s.serverConns = make(map[net.Conn]http.ConnState)
		}
		s.serverConns[c] = state
	case http.StateIdle: // http.Server.Shutdown closes those
		delete(s.serverConns, c)
	default: // hijacked or closed
		delete(s.serverConns, c)
		delete(s.slots, c)
	}
	s.serverMu.Unlock()
}

// closeUnstarted closes the server connections, seen through ConnState, on
// which no request has begun, now and as they arrive: the end of a drain.
func (s *Shutdowner) closeUnstarted() {
	s.serverMu.Lock()
	s.closeNew = true
	var unstarted []net.Conn
	for c, state := range s.serverConns {
		if state == http.StateNew {
			unstarted = append(unstarted, c)
			delete(s.serverConns, c)
		}
	}
	s.serverMu.Unlock()
	closeAll(unstarted)
}

// openServerConns returns how many server connections, seen through
// ConnState, are neither idle nor hijacked nor closed.
func (s *Shutdowner) openServerConns() int {
	s.serverMu.Lock()
	defer s.serverMu.Unlock()
	return len(s.serverConns)
}
