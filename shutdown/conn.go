package shutdown

import (
	"io"
	"net"
)

// conn is a connection hijacked through the middleware. It counts in the
// drain from Hijack until Close, whoever calls Close and whenever: the
// handler, a goroutine it handed the connection to, or the Shutdowner at a
// deadline.
//
// It keeps what callers of a net.Conn reach for: deadlines and addresses
// (embedded), io.ReaderFrom and io.WriterTo (so io.Copy keeps the splice and
// sendfile paths of the connection underneath), and NetConn for the
// connection itself.
type conn struct {
	net.Conn
	req *requestContext // the request that hijacked it, and its Shutdowner
}

// track starts counting c, hijacked by req, in the drain and returns it
// wrapped.
func (s *Shutdowner) track(c net.Conn, req *requestContext) net.Conn {
	tc := &conn{Conn: c, req: req}
	s.mu.Lock()
	req.hijacked = true
	if s.conns == nil {
		s.conns = make(map[*conn]struct{})
	}
	s.conns[tc] = struct{}{}
	// The hijacking handler is still counted, so this never moves the
	// count away from zero during a drain.
	s.state.Add(1)
	s.mu.Unlock()
	return tc
}

// untrack stops counting c, and ends the request that hijacked it, unless
// forceClose already has.
func (s *Shutdowner) untrack(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.conns[c]; !ok {
		return
	}
	delete(s.conns, c)
	s.forgetSignal(c.req)
	if s.countOut(1) {
		s.closeIdle()
	}
}

// forceClose closes every tracked connection and counts them in s.forced.
func (s *Shutdowner) forceClose() {
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
		delete(s.conns, c)
		s.forgetSignal(c.req)
	}
	if len(conns) > 0 && s.countOut(int64(len(conns))) {
		s.closeIdle()
	}
	s.mu.Unlock()
	for _, c := range conns {
		// Untracked above, so an owner's Close that runs now only closes.
		_ = c.Conn.Close() // what the peer sees is what counts; the error tells nothing
	}
	s.forced.Add(uint64(len(conns)))
}

// Close closes the connection and stops counting it in the drain.
func (c *conn) Close() error {
	c.req.s.untrack(c)
	return c.Conn.Close()
}

// NetConn returns the hijacked connection underneath, as
// [crypto/tls.Conn.NetConn] does. Closing it directly bypasses the drain's
// count: close the conn returned by Hijack instead.
func (c *conn) NetConn() net.Conn { return c.Conn }

// ReadFrom uses the underlying connection's ReadFrom where it has one.
func (c *conn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(writerOnly{c.Conn}, r)
}

// WriteTo uses the underlying connection's WriteTo where it has one.
func (c *conn) WriteTo(w io.Writer) (int64, error) {
	if wt, ok := c.Conn.(io.WriterTo); ok {
		return wt.WriteTo(w)
	}
	return io.Copy(w, readerOnly{c.Conn})
}

// writerOnly and readerOnly hide ReadFrom and WriteTo from io.Copy, which
// would otherwise call back into conn.
type (
	writerOnly struct{ io.Writer }
	readerOnly struct{ io.Reader }
)
