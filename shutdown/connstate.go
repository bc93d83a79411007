package shutdown

import (
	"net"
	"net/http"
)

// ConnState is a hook for [http.Server.ConnState], which
// [Shutdowner.ConfigureServer] sets with ConnContext:
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
	switch state {
	case http.StateActive, http.StateIdle:
		// Every request's two calls: no lock, and no count kept, where
		// the connection has its entry, as it has from StateNew on.
		// Counting takes a look at every entry (openServerConns).
		if sc := s.serverConns.get(c); sc != nil {
			sc.state.Store(int32(state))
			return
		}
	case http.StateHijacked:
		// Called inside the handler's Hijack, about the deepest its
		// goroutine goes: the table's work there would double a
		// websocket's 4 KB stack for the connection's life. It waits
		// for the next look at the connections (sweepHijacked).
		s.serverMu.Lock()
		s.hijacked = append(s.hijacked, c)
		s.serverMu.Unlock()
		return
	}
	s.connState(c, state)
}

// connState is ConnState for the states that change the table: new,
// closed, and active or idle for a connection it has not seen.
func (s *Shutdowner) connState(c net.Conn, state http.ConnState) {
	if !s.hooked.Load() {
		s.hooked.Store(true)
	}
	s.serverMu.Lock()
	if len(s.hijacked) > 0 {
		s.sweepHijacked()
	}
	switch state {
	case http.StateNew:
		if s.closeNew {
			s.serverMu.Unlock()
			_ = c.Close() // the drain is over; the error tells nothing
			return
		}
		s.serverConns.of(c).state.Store(int32(state))
	case http.StateActive, http.StateIdle:
		// Not seen at StateNew: the hook was set later, or, once the
		// drain is over, closeUnstarted has closed and forgotten the
		// connection as its first request began, and its goroutine has
		// yet to see it closed.
		if !s.closeNew {
			s.serverConns.of(c).state.Store(int32(state))
		}
	default: // closed
		s.serverConns.remove(c)
	}
	s.serverMu.Unlock()
}

// sweepHijacked forgets the connections that ConnState has seen hijacked
// since it last ran. s.serverMu must be held.
func (s *Shutdowner) sweepHijacked() {
	if len(s.hijacked) == 0 {
		return
	}
	for _, c := range s.hijacked {
		s.serverConns.remove(c)
	}
	clear(s.hijacked) // nothing kept for the garbage collector to miss
	s.hijacked = s.hijacked[:0]
}

// forgetHijacked forgets the connections that ConnState has seen hijacked,
// as the middleware's Hijack returns.
func (s *Shutdowner) forgetHijacked() {
	s.serverMu.Lock()
	s.sweepHijacked()
	s.serverMu.Unlock()
}

// closeUnstarted closes the server connections, seen through ConnState, on
// which no request has begun, now and as they arrive: the end of a drain.
func (s *Shutdowner) closeUnstarted() {
	s.serverMu.Lock()
	s.sweepHijacked()
	s.closeNew = true
	var unstarted []net.Conn
	for sc := range s.serverConns.all() {
		// A request may begin as this looks, without the lock: then
		// the connection stays.
		if sc.state.CompareAndSwap(int32(http.StateNew), int32(http.StateClosed)) {
			unstarted = append(unstarted, sc.c)
			s.serverConns.remove(sc.c)
		}
	}
	s.serverMu.Unlock()
	closeAll(unstarted)
}

// openServerConns returns how many server connections, seen through
// ConnState, are neither idle nor hijacked nor closed, counting no further
// than limit. It looks at each, as ConnState keeps no count: a request
// would pay for it twice.
func (s *Shutdowner) openServerConns(limit int) int {
	s.serverMu.Lock()
	defer s.serverMu.Unlock()
	s.sweepHijacked()
	n := 0
	for sc := range s.serverConns.all() {
		if http.ConnState(sc.state.Load()) != http.StateIdle {
			if n++; n == limit {
				break
			}
		}
	}
	return n
}
