package shutdown

import (
	"errors"
	"io"
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
// the connection (it does once the peer answers), or closes it itself, with
// a lingering close so that the frame is not lost to a reset. At a deadline,
// every websocket that has had no close frame gets one before the
// force-close.

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

// goodbyeTimeout bounds each wait of a goodbye on its peer: the write of
// the close frame, the peer's answer before the Shutdowner closes the
// connection itself, and the lingering close.
const goodbyeTimeout = time.Second

// deadlineGoodbyeTimeout, plus deadlineGoodbyeCost for each connection,
// bounds the writes of the close frames sent at a deadline, all at once, just
// before the connections are closed: past it, writes fail at once, and the
// end game goes on to the closes. A write takes a few µs on two idle cores;
// on a loaded machine the bound, not the count of goodbyes, is what holds, so
// that the end game fits in the time fxshutdown leaves it (250 µs a
// connection, of which the closes take 20 µs idle and several times that
// under load).
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
type wsConn struct {
	mu         sync.Mutex  // held across every write, so that f follows them in order
	closeTimer *time.Timer // closes the connection if nobody does after the goodbye
	f          frameFollower

	on      bool // the connection is a websocket; set before it is shared
	pending bool // a goodbye waits for the next frame boundary
	sent    bool // the Shutdowner's close frame has gone out
	closing bool // a lingering close has begun, or the force-close after a deadline goodbye owns the close
	// asked is set once application code has asked for the request's
	// signal: atomic, because asking must not wait for a write that a
	// slow peer holds up.
	asked atomic.Bool
}

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
	defer w.mu.Unlock()
	if w.sent {
		return 0, ErrGoodbyeSent
	}
	if !w.pending {
		n, err := c.Conn.Write(p)
		w.f.follow(p[:n])
		return n, err
	}
	return writeToGoodbye(&w.f, c.Conn.Write, p, func() {
		c.sendGoodbye(time.Now().Add(goodbyeTimeout), true)
	})
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

// sendGoodbye writes the Shutdowner's close frame now if the stream is at a
// frame boundary and has had no close frame; otherwise, if wait is set, it
// leaves the goodbye to the write that reaches the next boundary. Sent on a
// signal (wait set), the goodbye is followed by a close of the connection
// if nobody closes it within goodbyeTimeout. c.ws.mu must be held.
func (c *conn) sendGoodbye(deadline time.Time, wait bool) {
	w := &c.ws
	frame := c.s.goodbyeFrame()
	if w.sent || w.f.closed || w.closing || frame == nil {
		return
	}
	if !w.f.atBoundary() {
		w.pending = wait
		return
	}
	w.pending = false
	w.sent = true // from here no write reaches the peer, whatever this one does
	_ = c.SetWriteDeadline(deadline)
	if _, err := c.Conn.Write(frame); err != nil {
		return
	}
	c.s.goodbyes.Add(1)
	if wait {
		w.closeTimer = time.AfterFunc(goodbyeTimeout, func() { _ = c.Close() })
	} else {
		// The force-close follows at once: the owner's Close, which
		// the deadline may wake it to make, leaves it to that.
		w.closing = true
	}
}

// goodbye says goodbye on the handler's behalf, unless the connection is
// closed or application code has asked for a drain signal since the
// goodbye was scheduled.
func (c *conn) goodbye() {
	c.ws.mu.Lock()
	defer c.ws.mu.Unlock()
	if c.ws.asked.Load() || c.s.hubAsked.Load() {
		return
	}
	// A connection closed meanwhile fails the write, and counts nothing.
	c.sendGoodbye(time.Now().Add(goodbyeTimeout), true)
}

// onBehalf reports whether c gets a goodbye on its handler's behalf when
// its signal fires. s.mu must be held.
func (s *Shutdowner) onBehalf(c *conn) bool {
	return c.ws.on && !c.ws.asked.Load() && !s.hubAsked.Load() && !s.goodbyeOff
}

// A goodbyer is what the Shutdowner says goodbye to on a handler's behalf:
// a websocket (*conn) or an event stream (*requestContext).
type goodbyer interface {
	goodbye()
	setTimer(*time.Timer) // s.mu held
}

func (c *conn) setTimer(t *time.Timer)           { c.timer = t }
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
// written or has failed: the end game of a drain, before the force-close.
func (s *Shutdowner) deadlineGoodbyes() {
	if s.goodbyeFrame() == nil {
		return
	}
	s.mu.Lock()
	var ws []*conn
	for c := range s.conns {
		if c.ws.on {
			ws = append(ws, c)
		}
	}
	s.mu.Unlock()
	deadline := time.Now().Add(deadlineGoodbyeTimeout + time.Duration(len(ws))*deadlineGoodbyeCost)
	// A few workers rather than a goroutine each: the writes rarely
	// block, and thousands of goroutines only queue for two cores.
	var wg sync.WaitGroup
	next := make(chan *conn)
	for range min(len(ws), 4*runtime.GOMAXPROCS(0)) {
		wg.Go(func() {
			for c := range next {
				if !c.ws.mu.TryLock() {
					// A write holds the lock, blocked perhaps on a
					// peer that stopped reading: the deadline wakes it.
					_ = c.SetWriteDeadline(deadline)
					c.ws.mu.Lock()
				}
				c.sendGoodbye(deadline, false)
				c.ws.mu.Unlock()
			}
		})
	}
	for _, c := range ws {
		next <- c
	}
	close(next)
	wg.Wait()
}

// lingerOnClose reports whether Close should close the connection with a
// lingering close, because the Shutdowner said goodbye on it, and marks
// that close as begun.
func (c *conn) lingerOnClose() (linger, again bool) {
	w := &c.ws
	if !w.on {
		return false, false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.sent {
		return false, false
	}
	if w.closeTimer != nil {
		w.closeTimer.Stop()
	}
	again = w.closing
	w.closing = true
	return true, again
}

// linger closes the connection after a goodbye: it half-closes it, so that
// the peer reads the close frame and then the end of the stream, reads and
// discards what the peer still sends until it closes its side or
// goodbyeTimeout passes, and only then closes it. Closing with unread data
// would answer the peer with a reset, which may discard the close frame
// before the peer reads it. The connection counts in the drain until then.
func (c *conn) linger() {
	if cw, ok := bottom(c.Conn).(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite() // errors tell nothing: the close follows
	}
	_ = c.SetReadDeadline(time.Now().Add(goodbyeTimeout))
	_, _ = io.Copy(io.Discard, readerOnly{c.Conn})
	c.s.untrack(c)
	_ = c.Conn.Close()
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
