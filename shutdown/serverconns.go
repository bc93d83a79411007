package shutdown

import (
	"crypto/tls"
	"iter"
	"net"
	"net/http"
)

// serverConn is a server connection seen through the hooks: its state,
// seen through ConnState, and its slot, made by ConnContext.
type serverConn struct {
	c     net.Conn
	state http.ConnState // StateIdle until ConnState has said otherwise
	slot  *connSlot      // nil without ConnContext
}

// serverConns is the set of a Shutdowner's server connections, guarded by
// its serverMu. net/http's own connections, *net.TCPConn and *tls.Conn,
// are keyed by their pointers, any other by the interface: hashing and
// comparing an interface took a third of what a request costs with the
// hooks, which look its connection up twice (BenchmarkMiddleware's
// instruction counts, README).
type serverConns struct {
	tcp   map[*net.TCPConn]*serverConn
	tls   map[*tls.Conn]*serverConn
	other map[net.Conn]*serverConn
}

// get returns c's entry, or nil.
func (m *serverConns) get(c net.Conn) *serverConn {
	switch c := c.(type) {
	case *net.TCPConn:
		return m.tcp[c]
	case *tls.Conn:
		return m.tls[c]
	}
	return m.other[c]
}

// of returns c's entry, made if need be.
func (m *serverConns) of(c net.Conn) *serverConn {
	if sc := m.get(c); sc != nil {
		return sc
	}
	return m.add(c)
}

// add makes c's entry, which it has not, and returns it.
func (m *serverConns) add(c net.Conn) *serverConn {
	sc := &serverConn{c: c, state: http.StateIdle}
	switch c := c.(type) {
	case *net.TCPConn:
		m.tcp = put(m.tcp, c, sc)
	case *tls.Conn:
		m.tls = put(m.tls, c, sc)
	default:
		m.other = put(m.other, c, sc)
	}
	return sc
}

// put sets m[k] to v, making m if it is nil, and returns m.
func put[K comparable](m map[K]*serverConn, k K, v *serverConn) map[K]*serverConn {
	if m == nil {
		m = make(map[K]*serverConn)
	}
	m[k] = v
	return m
}

// remove forgets c's entry.
func (m *serverConns) remove(c net.Conn) {
	switch c := c.(type) {
	case *net.TCPConn:
		delete(m.tcp, c)
	case *tls.Conn:
		delete(m.tls, c)
	default:
		delete(m.other, c)
	}
}

// all yields every entry; the loop may remove the one it is given.
func (m *serverConns) all() iter.Seq[*serverConn] {
	return func(yield func(*serverConn) bool) {
		for _, sc := range m.tcp {
			if !yield(sc) {
				return
			}
		}
		for _, sc := range m.tls {
			if !yield(sc) {
				return
			}
		}
		for _, sc := range m.other {
			if !yield(sc) {
				return
			}
		}
	}
}

// len returns the number of entries.
func (m *serverConns) len() int { return len(m.tcp) + len(m.tls) + len(m.other) }
