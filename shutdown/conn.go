package shutdown

import (
	"io"
	"net"
	"sync"
	"time"
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
//
// It points to its request only while the request has a drain signal of its
// own to forget at Close (signal.go): a chat-style handler returns at once
// and hands the connection on, and the request, its response writer and
// net/http's response buffer then go to the garbage collector rather than
// live as long as the connection.
type conn struct {
	net.Conn
	s    *Shutdowner
	more *connMore // with a stagger window only; guarded by s.mu
	ws   wsConn    // a websocket's frame stream and goodbye (goodbye.go)

	// c's place in its shard's list of tracked connections, guarded by
	// the shard's mu: next, and the pointer to c (the shard's head or
	// the previous connection's next), nil once c is untracked.
	next *conn
	prev **conn
}

// connMore is the part of a conn that only a stagger window needs: out of
// conn, which an open websocket keeps, so that without one it costs no
// word.
type connMore struct {
	req   *requestContext // the request, whose own signal Close forgets
	timer *time.Timer     // a goodbye scheduled on the handler's behalf
}

// extra returns c.more, made if need be. s.mu must be held.
func (c *conn) extra() *connMore {
	if c.more == nil {
		c.more = new(connMore)
	}
	return c.more
}

// forget stops c's goodbye timer and forgets its request's own signal,
// if it has them: c is no longer tracked. s.mu must be held where c.more
// may be set, with a stagger window; without one it is always nil.
func (c *conn) forget() {
	if m := c.more; m != nil {
		if m.timer != nil {
			m.timer.Stop()
		}
		if m.req != nil {
			c.s.forgetSignal(m.req)
		}
	}
}

// track starts counting c, hijacked by req, in the drain and returns it
// wrapped. ws is set for a request that asked to upgrade to websocket, and
// switched once its 101 response has been written through the response
// writer, not onto c.
func (s *Shutdowner) track(c net.Conn, req *requestContext, ws, switched bool) *conn {
	tc := &conn{Conn: c, s: s}
	tc.ws.on = ws
	tc.ws.r = frameFollower{phase: phaseFrames, client: true}
	if switched {
		tc.ws.f.phase = phaseFrames
	}
	s.mu.Lock()
	req.conn = tc
	if req.asked() {
		tc.ws.state.Store(wsAsked)
	}
	if req.sig() != nil {
		tc.extra().req = req
	}
	s.addConn(tc)
	// The hijacking handler is still counted, so this never moves the
	// count away from zero during a drain.
	s.state.Add(1 + hijackedOne)
	if s.isDraining() && s.onBehalf(tc) {
		s.lateGoodbye(tc)
	}
	s.mu.Unlock()
	return tc
}

// connShards is how many shards the tracked connections are kept in.
const connShards = 32

// connShard is a shard of the tracked connections, on a cache line of
// its own. They are kept in a list threaded through the conns themselves
// rather than in a map: adding and removing one allocates nothing, and an
// open websocket pays two words for its place, not a map's share, which
// doubles in steps (TestConnMemory).
type connShard struct {
	mu   sync.Mutex
	head *conn // guarded by mu
	_    [64 - 16]byte
}

// addConn tracks c, in the next shard in turn.
func (s *Shutdowner) addConn(c *conn) {
	c.ws.shard = uint8(s.nextShard.Add(1) % connShards)
	sh := &s.conns[c.ws.shard]
	sh.mu.Lock()
	c.next, c.prev = sh.head, &sh.head
	if c.next != nil {
		c.next.prev = &c.next
	}
	sh.head = c
	sh.mu.Unlock()
}

// dropConn stops tracking c, and reports whether it was tracked: of two
// calls for c, one only reports true.
func (s *Shutdowner) dropConn(c *conn) bool {
	sh := &s.conns[c.ws.shard]
	sh.mu.Lock()
	ok := c.prev != nil
	if ok {
		*c.prev = c.next
		if c.next != nil {
			c.next.prev = c.prev
		}
		c.next, c.prev = nil, nil
	}
	sh.mu.Unlock()
	return ok
}

// open reports whether c is still tracked.
func (s *Shutdowner) open(c *conn) bool {
	sh := &s.conns[c.ws.shard]
	sh.mu.Lock()
	ok := c.prev != nil
	sh.mu.Unlock()
	return ok
}

// untrack stops counting c, and ends the request that hijacked it, unless
// forceClose already has. It reports whether c was still tracked. Without
// a stagger window, which alone gives a connection a signal or a timer to
// forget (c.more), it takes no lock of the Shutdowner's.
func (s *Shutdowner) untrack(c *conn) bool {
	if s.stagger > 0 {
		s.mu.Lock()
		defer s.mu.Unlock()
	}
	if !s.dropConn(c) {
		return false
	}
	c.forget()
	if s.countOutConns(1) {
		s.closeIdle()
	}
	return true
}

// tracked returns the tracked connections. s.mu must be held, so that
// none is tracked meanwhile; one may be untracked.
func (s *Shutdowner) tracked() []*conn {
	var cs []*conn
	for i := range s.conns {
		sh := &s.conns[i]
		sh.mu.Lock()
		for c := sh.head; c != nil; c = c.next {
			cs = append(cs, c)
		}
		sh.mu.Unlock()
	}
	return cs
}

// forceClose closes the tracked connections, every one or, with all unset,
// those whose close the Shutdowner owns (lingering after a goodbye), counts
// them in s.forced, and counts in s.unanswered the goodbyes among them whose
// peers had not answered.
func (s *Shutdowner) forceClose(all bool) {
	s.mu.Lock()
	var conns []net.Conn
	for _, c := range s.tracked() {
		st := c.ws.state.Load()
		if !all && st&wsLinger == 0 {
			continue
		}
		// Untracked here, so an owner's Close that runs now only
		// closes; unless its own untrack came first.
		if !s.dropConn(c) {
			continue
		}
		if st&wsAwaiting != 0 {
			s.unanswered.Add(1)
		}
		conns = append(conns, c.Conn)
		c.forget()
	}
	if len(conns) > 0 && s.countOutConns(int64(len(conns))) {
		s.closeIdle()
	}
	s.mu.Unlock()
	closeAll(conns)
	s.forced.Add(uint64(len(conns)))
}

// closeAll closes conns with closeNow and returns when all are closed,
// whatever their peers do. Closing a connection waits until the goroutines
// blocked on it have woken; a deadline in the past first wakes them all at
// once, without waiting, so that the closes that follow find them running
// rather than wake them one by one (about a third faster with thousands of
// connections on two cores, BenchmarkForceClose).
func closeAll(conns []net.Conn) {
	past := time.Unix(1, 0)
	for _, c := range conns {
		_ = c.SetDeadline(past) // the error is Close's to report, and nobody reads it
	}
	for _, c := range conns {
		closeNow(c)
	}
}

// closeNow closes c without waiting for its peer. The connection at the
// bottom of c's NetConn chain is closed first: a *tls.Conn's own Close
// sends close_notify under a write deadline of five seconds, which a peer
// that stopped reading makes it wait out in full. Then c's Close runs, and
// fails at once, so that wrappers in between (a listener's, say) still see
// their Close.
func closeNow(c net.Conn) {
	b := bottom(c)
	// What the peer sees is what counts; the errors tell nothing.
	_ = b.Close()
	if b != c {
		_ = c.Close()
	}
}

// Close closes the connection and stops counting it in the drain. It never
// waits for a write in progress: closing the connection ends the write, as
// [net.Conn] promises. After a goodbye on the handler's behalf the close
// lingers (goodbye.go): Close returns at once, and the connection counts
// until the peer has closed its side or the drain's deadline has come.
func (c *conn) Close() error {
	if c.ws.on && c.lingers(true) {
		return nil
	}
	c.s.untrack(c)
	return c.Conn.Close()
}

// NetConn returns the hijacked connection underneath, as
// [crypto/tls.Conn.NetConn] does: a *net.TCPConn, or a *tls.Conn on a TLS
// server. Closing it directly bypasses the drain's count: close the conn
// returned by Hijack instead. Writing to it bypasses the websocket's frame
// follower, so that a goodbye on the handler's behalf may then cut a frame
// that was written there. Reading from it may bypass the follower of the
// client's frames, which from this call on no longer tells.
func (c *conn) NetConn() net.Conn {
	c.ws.state.Or(wsUnfollowed)
	return c.Conn
}

// Read reads from the connection, following a websocket client's frames:
// once its close frame has been read whole, after a goodbye, Close closes
// at once (closeAnswered). Reads are a single goroutine's at a time, as
// every websocket library reads.
func (c *conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if w := &c.ws; w.on && n > 0 && w.state.Load()&(wsAnswered|wsUnfollowed) == 0 {
		w.r.follow(p[:n])
		if w.r.closed && w.r.atBoundary() {
			w.state.Or(wsAnswered)
		}
	}
	return n, err
}

// ReadFrom uses the underlying connection's ReadFrom where it has one, but
// on a websocket, whose bytes Write follows.
func (c *conn) ReadFrom(r io.Reader) (int64, error) {
	if c.ws.on {
		return io.Copy(writerOnly{c}, r)
	}
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(writerOnly{c.Conn}, r)
}

// WriteTo uses the underlying connection's WriteTo where it has one, past
// the follower of a websocket client's frames.
func (c *conn) WriteTo(w io.Writer) (int64, error) {
	c.ws.state.Or(wsUnfollowed)
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
