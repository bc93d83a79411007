package shutdown

import (
	"errors"
	"math/rand/v2"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Goodbyes on the handlers' behalf. A connection hijacked through the
// middleware by a request that asked to upgrade to websocket follows its
// server-to-client frame stream (frames.go). When its drain signal fires and
// no application code has asked for a drain signal, neither the request's
// nor the Shutdowner's, the Shutdowner writes the close frame of WithGoodbye
// at the next frame boundary, then waits for the library underneath to close
// the connection (it does once the peer answers), or closes it itself. The
// close is at once where the peer's answering close frame has been read
// through the connection (its client-to-server frames are followed too), or
// the peer has closed its side with nothing left unread, and otherwise a
// lingering close, so that the frame is not lost to a reset. No goodbye and
// no Close waits for a handler's write, which a peer that stopped reading
// may block for good: a goodbye that finds a write in progress is left for
// that write to say, and Close closes the connection under it. A goodbye
// that cannot be written is counted (unwritten) and its connection closed at
// once. At a deadline, every websocket that has had no close frame gets one
// before the force-close.

// ErrGoodbyeSent is the error that writes to a connection or stream return
// once the [Shutdowner] has said goodbye on the handler's behalf: after a
// websocket close frame no data may follow (RFC 6455, section 5.5.1), and an
// event stream that has been ended takes no more events. A library may wrap
// it in an error of its own: test with [errors.Is].
var ErrGoodbyeSent = errors.New("shutdown: goodbye sent on the handler's behalf, no more data may follow")

// DefaultGoodbyeCode and DefaultGoodbyeReason are the websocket close code
// (Going Away) and reason that a [Shutdowner] sends on a handler's behalf
// unless [WithGoodbye] sets others.
const (
	DefaultGoodbyeCode   = 1001
	DefaultGoodbyeReason = "server shutting down"
)

var defaultGoodbye = closeFrame(DefaultGoodbyeCode, DefaultGoodbyeReason)

// goodbyeTimeout bounds the write of a goodbye on a handler's behalf, and
// how long the Shutdowner waits, once its close frame is written, for the
// library underneath to close the connection before it begins the
// lingering close itself.
const goodbyeTimeout = time.Second

// lingerQuiet is how long a lingering close waits on a peer that shows no
// sign of life (linger). Over loopback, whose segments are 64 KB, a client
// that reads 100 KB a second acknowledges in steps about 0.7 s apart.
const lingerQuiet = 2 * time.Second

// deadlineGoodbyeTimeout, plus deadlineGoodbyeCost for each connection,
// bounds the writes of the close frames sent at a deadline, all at once, just
// before the connections are closed: past it, writes fail at once, and the
// end game goes on to the closes. A write takes a few µs on two idle cores;
// on a loaded machine the bound, not the count of goodbyes, is what holds, so
// that the end game fits in the time the drain keeps for it (endGameCost).
const (
	deadlineGoodbyeTimeout = 50 * time.Millisecond
	deadlineGoodbyeCost    = 10 * time.Microsecond
)

// goodbyeFrame returns the close frame to send, nil when goodbyes are off.
func (s *Shutdowner) goodbyeFrame() []byte {
	switch {
	case s.goodbyeOff:
		return nil
	case s.goodbye != nil:
		return s.goodbye
	default:
		return defaultGoodbye
	}
}

// wsConn is the websocket part of a tracked conn, kept in the conn itself
// and packed, so that an open websocket costs one small allocation
// (TestConnMemory).
//
// mu is the write lock: held across every write to the connection, so that
// f follows the bytes in the order they go out, and never by Close or by a
// goodbye that would have to wait for it. A write may block for as long as
// the peer does not read; Close does not wait for it (it closes the
// connection, which ends the write, as net.Conn promises), and a goodbye
// that finds the lock held leaves wsPending for the writer, which says it
// at the next frame boundary once it gets through.
//
// r follows the client's frames as the library underneath reads them, so
// that a Close after the goodbye knows that the client's answer has been
// read (closeAnswered): only the reading goroutine touches it, and it tells
// the rest through state (wsAnswered).
type wsConn struct {
	mu sync.Mutex
	f  frameFollower // the server's frames; guarded by mu
	r  frameFollower // the client's frames; the reader's

	state atomic.Uint32 // wsPending and the rest
	on    bool          // the connection is a websocket; set before it is shared
	shard uint8         // the shard of the Shutdowner's conns it is in; set before it is shared
}

// The bits of wsConn.state. wsSent and wsClosed exclude each other: a
// goodbye claims the connection with wsSent only if its owner has not
// closed it, and Close marks it wsClosed only if no goodbye went out.
const (
	wsPending    = 1 << iota // a goodbye waits for the writer to reach a frame boundary
	wsSent                   // the Shutdowner's close frame has been written, or is being: no other byte goes out
	wsAwaiting               // sent on a signal, the goodbye awaits the peer's answer (unanswered if closed at a deadline)
	wsLinger                 // the lingering close has begun, or the force-close that follows a deadline goodbye owns the close
	wsClosed                 // closed by its owner with no goodbye sent, or by the Shutdowner after a goodbye it could not write
	wsBroken                 // a write failed: the frame it was writing may never be finished
	wsAsked                  // application code has asked for the request's signal: no goodbye on its behalf
	wsAnswered               // the client's close frame has been read whole through the conn: nothing more will come but its end
	wsUnfollowed             // the client's frames may be read past the conn: wsAnswered is not known
)

// isWebSocket reports whether h asks to upgrade to websocket.
func isWebSocket(h http.Header) bool {
	for _, v := range h["Upgrade"] {
		for tok := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), "websocket") {
				return true
			}
		}
	}
	return false
}

// Write writes p to the connection, following the frames of a websocket.
// Once the Shutdowner's goodbye has gone out it writes nothing and returns
// ErrGoodbyeSent; a goodbye that waits for a frame boundary is written at
// the first one in p, and Write then returns the bytes before it.
func (c *conn) Write(p []byte) (int, error) {
	w := &c.ws
	if !w.on {
		return c.Conn.Write(p)
	}
	w.mu.Lock()
	var n int
	var err error
	switch st := w.state.Load(); {
	case st&wsSent != 0:
		err = ErrGoodbyeSent
	case st&wsPending == 0:
		n, err = c.Conn.Write(p)
		w.f.follow(p[:n])
	default:
		n, err = writeToGoodbye(&w.f, c.Conn.Write, p, func() { c.sendGoodbye(false) })
	}
	if err != nil && !errors.Is(err, ErrGoodbyeSent) {
		w.state.Or(wsBroken)
	}
	w.mu.Unlock()
	if w.state.Load()&(wsPending|wsSent) == wsPending {
		c.tryGoodbye() // asked for while this write held the lock
	}
	return n, err
}

// A boundaryFollower follows the units of a protocol in the bytes written:
// websocket frames, or events.
type boundaryFollower interface {
	follow(p []byte)
	toBoundary(p []byte) int
	atBoundary() bool
}

// writeToGoodbye writes p through write, following it with f, for a
// goodbye that waits for the next boundary: it writes p up to the first
// boundary in it and says goodbye there. It returns how much of p was
// written, with ErrGoodbyeSent when the goodbye cut p short.
func writeToGoodbye(f boundaryFollower, write func([]byte) (int, error), p []byte, goodbye func()) (int, error) {
	var n int
	if k := f.toBoundary(p); k > 0 {
		var err error
		n, err = write(p[:k])
		f.follow(p[:n])
		if err != nil || !f.atBoundary() {
			return n, err
		}
	}
	goodbye()
	if n < len(p) {
		return n, ErrGoodbyeSent
	}
	return n, nil
}

// sendGoodbye writes the Shutdowner's close frame if the stream is at a
// frame boundary, has had no close frame and has not been closed; otherwise
// a pending goodbye stays pending, for the write that reaches the next
// boundary. c.ws.mu must be held.
//
// Before the end game (a goodbye on the handler's behalf), a frame that
// cannot be written within goodbyeTimeout, or before the end game's cap,
// counts as unwritten and the connection is closed at once: its peer has
// stopped reading, and would hold the drain to its deadline. Once written,
// the goodbye awaits the peer's answer, and if nobody closes the
// connection within goodbyeTimeout the lingering close begins. In the end
// game, the force-close follows at once and owns the close.
//
// With handOff set, before the end game, the write is tryGoodbyeFirst's:
// one that the peer does not take at once, or any over TLS, goes on in a
// goroutine of its own, which holds c.ws.mu until it ends and then lets go
// of it; sendGoodbye then reports handedOff, and its caller must not
// unlock.
func (c *conn) sendGoodbye(handOff bool) (handedOff bool) {
	w := &c.ws
	frame := c.s.goodbyeFrame()
	if frame == nil || w.f.closed {
		w.state.And(^uint32(wsPending)) // the handler said its own
		return false
	}
	broken := false
	if !w.f.atBoundary() {
		// A write that failed inside a frame leaves the stream where
		// no close frame can go: a goodbye on the handler's behalf
		// cannot be said, and the connection is closed now rather than
		// at the deadline.
		if w.state.Load()&wsBroken == 0 || c.s.goodbyeCap.Load() != 0 {
			return false
		}
		broken = true
	}
	for {
		st := w.state.Load()
		if st&(wsSent|wsClosed) != 0 {
			return false
		}
		if w.state.CompareAndSwap(st, (st|wsSent)&^wsPending) {
			break
		}
	}
	if broken {
		c.abandon()
		return false
	}
	if handOff && c.s.goodbyeCap.Load() == 0 {
		return c.tryGoodbyeFirst(frame)
	}
	c.writeGoodbye(frame, 0)
	return false
}

// writeGoodbye writes frame from its n-th byte on, the bytes before it
// written already, within goodbyeTimeout or the end game's cap, and takes
// in how the write ended. c.ws.mu must be held.
func (c *conn) writeGoodbye(frame []byte, n int) {
	endGame, set := c.s.setGoodbyeDeadline(c.Conn, time.Now().Add(goodbyeTimeout))
	if !endGame && time.Now().After(set) {
		// The deadline passed while this goroutine waited to run, on a
		// loaded machine: the write would fail without trying the peer.
		endGame, _ = c.s.setGoodbyeDeadline(c.Conn, time.Now().Add(goodbyeTimeout))
	}
	m, err := c.Conn.Write(frame[n:])
	c.goodbyeWritten(n+m, err, endGame)
}

// tryGoodbyeFirst writes a goodbye's close frame from goodbyeAll's
// workers, before the end game, without holding up the goodbyes after it:
// on a socket, a first try that neither waits nor sets a deadline
// (tryWrite), which a peer with room in its buffers takes at once.
// Elsewhere, and for what a peer does not take so (it has stopped reading,
// or reads slowly), the write goes on in a goroutine of its own, for
// goodbyeTimeout from when that goroutine runs. A short deadline there
// would not do: a TLS connection whose write timed out is broken for good,
// and could not finish the frame. It reports whether it handed the write
// off so, as sendGoodbye does. c.ws.mu must be held.
func (c *conn) tryGoodbyeFirst(frame []byte) (handedOff bool) {
	n, tried, err := tryWrite(c.Conn, frame)
	if tried && (n == len(frame) || err != nil) {
		c.goodbyeWritten(n, err, c.s.goodbyeCap.Load() != 0)
		return false
	}
	go func() {
		c.writeGoodbye(frame, n)
		c.ws.mu.Unlock()
	}()
	return true
}

// goodbyeWritten takes in how the write of a goodbye's close frame ended:
// n bytes written, with err. endGame is set where the end game had begun
// when the write's deadline was set. c.ws.mu must be held.
func (c *conn) goodbyeWritten(n int, err error, endGame bool) {
	w := &c.ws
	switch {
	case err != nil || n < len(c.s.goodbyeFrame()):
		if !endGame {
			c.abandon()
		}
	case endGame:
		c.s.goodbyes.Add(1)
		w.state.Or(wsLinger)
	default:
		c.s.goodbyes.Add(1)
		w.state.Or(wsAwaiting)
		c.awaitAnswer(time.Now())
	}
}

// awaitAnswer begins the lingering close of a connection whose goodbye went
// out at sent, unless its owner has closed it goodbyeTimeout later, as the
// owner of most does once its peer has answered. It costs no system call:
// linger looks at the socket only if the close has not begun by then.
func (c *conn) awaitAnswer(sent time.Time) {
	time.AfterFunc(goodbyeTimeout, func() {
		if c.lingers(false) { // not once the owner's Close has begun the linger
			c.linger(sent)
		}
	})
}

// abandon closes the connection after a goodbye that could not be
// written, and counts the goodbye as unwritten unless the connection had
// been closed meanwhile.
func (c *conn) abandon() {
	c.ws.state.Or(wsClosed)
	if c.s.untrack(c) {
		c.s.unwritten.Add(1)
	}
	closeNow(c.Conn)
}

// setGoodbyeDeadline sets the write deadline of a goodbye on nc: d, or the
// end game's cap if that is sooner. It reports whether the end game has
// begun, and the deadline set.
func (s *Shutdowner) setGoodbyeDeadline(nc net.Conn, d time.Time) (endGame bool, set time.Time) {
	limit := s.goodbyeCap.Load()
	if limit != 0 && limit < d.UnixNano() {
		d = time.Unix(0, limit)
	}
	_ = nc.SetWriteDeadline(d) // a failure shows in the write
	// The end game stores its cap before it shortens the deadlines of
	// the writes it finds in progress: if it stored it after the load
	// above, it may have shortened this deadline before it was set.
	if now := s.goodbyeCap.Load(); now != limit {
		limit = now
		if limit < d.UnixNano() {
			d = time.Unix(0, limit)
			_ = nc.SetWriteDeadline(d)
		}
	}
	return limit != 0, d
}

// goodbye says goodbye on the handler's behalf, unless the connection is
// closed or application code has asked for a drain signal since the
// goodbye was scheduled. It never waits for a write in progress: it leaves
// the goodbye pending for that write to say.
func (c *conn) goodbye() {
	w := &c.ws
	if w.state.Load()&wsAsked != 0 || c.s.ownGoodbyes || w.state.Load()&(wsSent|wsClosed) != 0 {
		return
	}
	w.state.Or(wsPending)
	c.tryGoodbye()
}

// tryGoodbye says a pending goodbye now if no write holds the lock, and the
// stream is at a frame boundary. If a write holds it, that write says it
// (Write looks for wsPending once it has let go of the lock).
func (c *conn) tryGoodbye() {
	w := &c.ws
	if !w.mu.TryLock() {
		return
	}
	if w.state.Load()&wsPending != 0 && c.sendGoodbye(true) {
		return // the goodbye's goroutine has the lock now
	}
	w.mu.Unlock()
}

// onBehalf reports whether c gets a goodbye on its handler's behalf when
// its signal fires. s.mu must be held.
func (s *Shutdowner) onBehalf(c *conn) bool {
	return c.ws.on && c.ws.state.Load()&wsAsked == 0 && !s.ownGoodbyes && !s.goodbyeOff
}

// A goodbyer is what the Shutdowner says goodbye to on a handler's behalf:
// a websocket (*conn) or an event stream (*requestContext).
type goodbyer interface {
	goodbye()
	setTimer(*time.Timer) // s.mu held
}

func (c *conn) setTimer(t *time.Timer)           { c.extra().timer = t }
func (c *requestContext) setTimer(t *time.Timer) { c.extra().timer = t }

// scheduleGoodbye schedules g's goodbye at d from now, or says it at once
// (in a goroutine of its own: the peer may not be reading) if d <= 0.
// s.mu must be held.
func (s *Shutdowner) scheduleGoodbye(g goodbyer, d time.Duration) {
	if d <= 0 {
		go g.goodbye()
		return
	}
	g.setTimer(time.AfterFunc(d, g.goodbye))
}

// goodbyeAll says the goodbyes of gs now, a few at a time, in goroutines of
// their own: thousands at once would contend for two cores, and a goodbye's
// write deadline could pass while its goroutine waits to run, failing the
// write of a peer that reads. A goodbye never waits for a handler's write;
// one whose peer does not take it at once goes on in a goroutine of its
// own, for goodbyeTimeout at most (tryGoodbyeFirst), so that peers that
// stopped reading do not hold up the goodbyes of those that read.
func goodbyeAll(gs []goodbyer) {
	if len(gs) == 0 {
		return
	}
	// Each worker takes the next goodbye by an index, not from a
	// channel: a handoff would send it to the back of the run queue,
	// behind the thousands of handlers the goodbyes wake, at every one.
	var next atomic.Int64
	for range min(len(gs), goodbyeWorkers) {
		go func() {
			for i := next.Add(1) - 1; i < int64(len(gs)); i = next.Add(1) - 1 {
				gs[i].goodbye()
			}
		}()
	}
}

// goodbyeWorkers is how many goodbyes goodbyeAll says at once.
const goodbyeWorkers = 32

// lateGoodbye schedules the goodbye of g, which began once the drain had:
// at a random moment in what is left of the stagger window, as a late
// signal. s.mu must be held.
func (s *Shutdowner) lateGoodbye(g goodbyer) {
	left := time.Until(s.staggerEnd)
	if left > 0 {
		left = rand.N(left)
	}
	s.scheduleGoodbye(g, left)
}

// deadlineGoodbyes sends a close frame, at a frame boundary, to every
// tracked websocket that has had none, and returns when each has been
// written or has failed, by deadline at the latest: the end game of a
// drain, before the force-close. It waits for no write of a handler's: a
// connection whose write lock is held gets its goodbye pending, and the
// write in progress is given deadline, so that one blocked on a peer that
// stopped reading fails by then, and the force-close that follows closes
// the connection whatever the write does.
func (s *Shutdowner) deadlineGoodbyes(deadline time.Time) {
	if s.goodbyeFrame() == nil {
		return
	}
	s.goodbyeCap.Store(deadline.UnixNano())
	s.mu.Lock()
	var ws []*conn
	for _, c := range s.tracked() {
		if c.ws.on && c.ws.state.Load()&(wsSent|wsClosed) == 0 {
			ws = append(ws, c)
		}
	}
	s.mu.Unlock()
	// A few workers rather than a goroutine each: the writes rarely
	// block, and thousands of goroutines only queue for two cores.
	var wg sync.WaitGroup
	next := make(chan *conn)
	for range min(len(ws), 4*runtime.GOMAXPROCS(0)) {
		wg.Go(func() {
			for c := range next {
				c.ws.state.Or(wsPending)
				if c.ws.mu.TryLock() {
					c.sendGoodbye(false)
					c.ws.mu.Unlock()
				} else {
					_ = c.SetWriteDeadline(deadline)
				}
			}
		})
	}
	for _, c := range ws {
		next <- c
	}
	close(next)
	wg.Wait()
}

// lingers reports whether the connection is left to a lingering close,
// because the Shutdowner's goodbye went out on it. The first call that
// reports so begins that close, in a goroutine of its own if spawn is set;
// without spawn it reports true to the first call only, which runs the
// linger itself. Once no goodbye can go out, lingers marks the connection
// closed, so that none does from then on.
func (c *conn) lingers(spawn bool) bool {
	w := &c.ws
	for {
		st := w.state.Load()
		switch {
		case st&wsClosed != 0:
			return false
		case st&wsSent == 0:
			if w.state.CompareAndSwap(st, st|wsClosed) {
				return false
			}
		case st&wsLinger != 0:
			return spawn
		default:
			if w.state.CompareAndSwap(st, st|wsLinger) {
				if spawn && !c.closeAnswered() {
					go c.linger(time.Now())
				}
				return true
			}
		}
	}
}

// closeAnswered does at once what linger would, without its goroutine,
// where the peer has answered already: the library underneath has read its
// close frame through the conn (as gorilla's read loop has when it closes
// the connection), after which RFC 6455 lets nothing follow but the end of
// the stream, or, where the reads went past the conn, the socket shows that
// the peer has closed its side with nothing left unread. It reports whether
// it did, or there was nothing to do: a goodbye that could not be written
// closed the connection. A goodbye's write still in progress, or a peer
// not yet done, is linger's.
func (c *conn) closeAnswered() bool {
	w := &c.ws
	if !w.mu.TryLock() {
		return false
	}
	abandoned := w.state.Load()&wsClosed != 0
	w.mu.Unlock()
	if abandoned {
		return true
	}
	// The follower saves a system call on the close of every answered
	// websocket: at 15,000 of them the peek cost about a tenth of the
	// drain's CPU time (BenchmarkDrainAtScale).
	if w.state.Load()&(wsAnswered|wsUnfollowed) != wsAnswered && !peerClosed(bottom(c.Conn)) {
		return false
	}
	c.s.untrack(c)
	_ = c.Conn.Close()
	return true
}

// linger closes the connection after a goodbye: it half-closes it, so that
// the peer reads the close frame and then the end of the stream, and reads
// and discards what the peer still sends until the peer closes its side.
// It waits as long as the peer shows life, however long it takes to read
// what was queued before the close frame: input, or, where the system tells
// (unsent), more of what was sent acknowledged. lingerQuiet without either
// since the last sign, or since the goodbye, ends the wait: the goodbye is
// delivered if the peer's TCP has acknowledged all of it, and unanswered if
// not. The force-close at the drain's deadline ends the wait too. Only then
// does linger close the connection. Closing with unread input would answer
// the peer with a reset, which discards what it has not read yet, close
// frame included. The connection counts in the drain until then.
//
// quiet is when the peer last showed life, as far as the caller knows: when
// the goodbye went out, or now. Data the socket has sent since (lastSent),
// which only the peer's opening its window or acknowledging what was in
// flight lets out, is a sign of life too, so that a slow reader's progress
// before linger begins counts, while a peer that stopped reading is still
// given up lingerQuiet after its goodbye (TestSlowReadersGetTheirGoodbye,
// TestUnacknowledgedGoodbyeGivenUpAfterTwoSeconds). linger is the only
// look at the socket, for a connection still open a second after its
// goodbye: at 15,000 websockets on two cores, a look at what was
// unacknowledged 250 ms after each goodbye had cost about a tenth of the
// drain's CPU time (BenchmarkDrainAtScale).
//
// Its reads go past the conn's follower of the client's frames, which the
// library's read loop, still reading, may be using.
func (c *conn) linger(quiet time.Time) {
	w := &c.ws
	w.mu.Lock() // the goodbye's write, bounded by its deadline, has ended
	abandoned := w.state.Load()&wsClosed != 0
	w.mu.Unlock()
	if abandoned {
		return
	}
	b := bottom(c.Conn)
	if since := time.Since(quiet); since > sentSlack { // not for an owner's Close, whose quiet is now
		if ago, ok := lastSent(b); ok && since-ago > sentSlack {
			quiet = time.Now() // looked at before the FIN, which may push what waits
		}
	}
	if cw, ok := b.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite() // errors tell nothing: the close follows
	}
	unacked := unsent(b)
	var buf [512]byte
	answered := false
	for {
		// At least a moment, to read what already waits.
		_ = c.SetReadDeadline(later(quiet.Add(lingerQuiet), time.Now().Add(10*time.Millisecond)))
		n, err := c.Conn.Read(buf[:])
		if n > 0 || err == nil {
			quiet = time.Now() // the peer is alive
			continue
		}
		if ne := net.Error(nil); !errors.As(err, &ne) || !ne.Timeout() {
			// The peer's end of the stream (its answer, or an end
			// without one), a reset, or the force-close.
			answered = true
			break
		}
		q := unsent(b)
		if q == 0 {
			answered = true // delivered, if not answered
			break
		}
		if q >= 0 && q < unacked {
			quiet, unacked = time.Now(), q
			continue
		}
		if time.Since(quiet) >= lingerQuiet {
			break // no sign of life
		}
	}
	if c.s.untrack(c) && !answered {
		c.s.unanswered.Add(1)
	}
	_ = c.Conn.Close()
}

// sentSlack is how much later than quiet data must have gone out for
// linger to take it as a sign of life: more than the kernel's clock ticks,
// in which it keeps the time of the last send, can hide, so that the
// goodbye's own close frame does not count.
const sentSlack = 50 * time.Millisecond

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// bottom returns the connection at the bottom of c's NetConn chain.
func bottom(c net.Conn) net.Conn {
	for {
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return c
		}
		c = u.NetConn()
	}
}
