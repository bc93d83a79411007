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
	if state == http.StateHijacked {
		// Called inside the handler's Hijack, about the deepest its
		// goroutine goes: the map work there would double a
		// websocket's 4 KB stack for the connection's life. It waits
		// for the next look at the connections (sweepHijacked).
		s.serverMu.Lock()
		s.hijacked = append(s.hijacked, c)
		s.serverMu.Unlock()
		return
	}
	s.connState(c, state)
}

// connState is ConnState for every state but StateHijacked.
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
		s.setConnState(c, state)
	case http.StateActive, http.StateIdle:
		s.setConnState(c, state)
	default: // closed
		s.forgetConn(c)
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
		s.forgetConn(c)
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

// forgetConn forgets c, hijacked or closed. s.serverMu must be held.
func (s *Shutdowner) forgetConn(c net.Conn) {
	if sc := s.serverConns.get(c); sc != nil {
		if sc.state != http.StateIdle {
			s.openConns--
		}
		s.serverConns.remove(c)
	}
}

// setConnState records c's state, and counts it in s.openConns unless it
// is idle. A connection keeps its entry, idle or not, until it closes: a
// request then changes the entry rather than adding and removing a key,
// and looks it up once. s.serverMu must be held.
func (s *Shutdowner) setConnState(c net.Conn, state http.ConnState) {
	sc := s.serverConns.get(c) // not of: a call less on every request
	if sc == nil {
		sc = s.serverConns.add(c)
	}
	switch wasOpen, isOpen := sc.state != http.StateIdle, state != http.StateIdle; {
	case isOpen && !wasOpen:
		s.openConns++
	case wasOpen && !isOpen:
		s.openConns--
	}
	sc.state = state
}

// closeUnstarted closes the server connections, seen through ConnState, on
// which no request has begun, now and as they arrive: the end of a drain.
func (s *Shutdowner) closeUnstarted() {
	s.serverMu.Lock()
	s.sweepHijacked()
	s.closeNew = true
	var unstarted []net.Conn
	for sc := range s.serverConns.all() {
		if sc.state == http.StateNew {
			unstarted = append(unstarted, sc.c)
			s.serverConns.remove(sc.c)
			s.openConns--
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
	s.sweepHijacked()
	return s.openConns
}
