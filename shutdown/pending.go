package shutdown

import (
	"context"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// Pending requests: those still running, with nothing written, when the
// stagger window and a grace after it have passed: a long poll that waits
// on its context, or a handler that would answer late. The Shutdowner
// cancels their contexts, and answers 503 for those whose handler then
// returns without writing, so that they do not hold the drain to its
// deadline. It reaches them through their connections' contexts, made by
// ConnContext, whose cancellation reaches every context a handler took
// from its request: one allocation a connection, none an HTTP/1 request.
// HTTP/2 requests share their connection's context, which is cancelled
// only when every request on it is pending; each costs an allocation.

// DefaultPendingGrace is how long after the stagger window a request that
// has written nothing may still run before the Shutdowner cancels its
// context, unless [WithPendingGrace] says otherwise.
const DefaultPendingGrace = time.Second

// WithPendingGrace sets how long after the stagger window (after the drain
// begins, without one) a request still running with nothing written, a
// long poll, may go on before the Shutdowner cancels its context; if its
// handler then returns without writing, the middleware answers 503 with
// Retry-After and Connection: close. A request that has written anything,
// hijacked its connection, asked for its drain signal or runs under
// [LetFinish] is never cancelled this way. It needs the server's
// ConnContext and ConnState hooks ([Shutdowner.ConnContext]). HTTP/2
// requests share their connection's context: they are cancelled when all
// the requests on their connection are pending, after the grace or as
// the last request that was not returns, and gRPC ones never. The
// default is [DefaultPendingGrace]; d < 0 never cancels them.
func WithPendingGrace(d time.Duration) Option {
	if d == 0 {
		d = -1 // zero in the Shutdowner means the default
	}
	return optionFunc(func(s *Shutdowner) { s.pendingGrace = d })
}

// ConnContext is a hook for [http.Server.ConnContext], to be set with
// [Shutdowner.ConnState]:
//
//	srv.ConnContext = s.ConnContext
//	srv.ConnState = s.ConnState
//
// (call it from a hook of your own if you have one). It gives each
// connection a context the Shutdowner can cancel, so that a drain ends the
// requests that wait with nothing written (see [WithPendingGrace]). It
// costs one allocation a connection, and one an HTTP/2 request. Without
// ConnState, the Shutdowner never learns that a connection has closed,
// and keeps what it made for it.
func (s *Shutdowner) ConnContext(ctx context.Context, c net.Conn) context.Context {
	sl := new(connSlot)
	sl.Context, sl.cancel = context.WithCancel(ctx)
	s.serverMu.Lock()
	if s.slots == nil {
		s.slots = make(map[net.Conn]*connSlot)
	}
	s.slots[c] = sl
	s.serverMu.Unlock()
	s.slotted.Store(true)
	return sl
}

// connSlot is a connection's context, made by ConnContext: cancellable by
// the Shutdowner, and holding the HTTP/1 request inside the middleware, if
// any, or counting the HTTP/2 ones and those of them no longer pending.
type connSlot struct {
	context.Context
	cancel context.CancelFunc
	req    atomic.Pointer[requestContext] // HTTP/1

	active, settled atomic.Int32 // HTTP/2
	cancelled       atomic.Bool  // HTTP/2: cancelPending cancelled it
}

// enterSlot puts c, a request on sl's connection, in sl. An HTTP/2
// protocol request, which is not ended as a pending one (its status would
// be the handler's CANCELLED), counts as settled.
func (c *requestContext) enterSlot(sl *connSlot, http1 bool) {
	c.slotted = true
	if http1 {
		sl.req.Store(c)
		return
	}
	if c.more == nil {
		c.more = new(requestMore)
	}
	c.more.slot = sl
	sl.active.Add(1)
	if c.flags.Or(sharedFlag)&protocolFlag != 0 {
		c.settle(0)
	}
}

// leaveSlot takes c out of sl as its handler returns, and reports whether
// the drain cancelled it as pending and it wrote nothing: the middleware
// then answers 503. An HTTP/2 request that leaves after the grace, its
// connection's other requests all pending, cancels them: a long poll that
// shared its connection with a writing request is then no longer held.
func (c *requestContext) leaveSlot(sl *connSlot) bool {
	f := c.flags.Load()
	if f&sharedFlag == 0 {
		sl.req.Store(nil)
		return f&(cancelledFlag|wroteFlag) == cancelledFlag
	}
	if f&settledFlag != 0 {
		sl.settled.Add(-1)
	}
	// Counted out before graceEnded is read, as graceOver sets it before
	// it reads the counts: one of the two sees the other.
	if sl.active.Add(-1) > 0 && c.s.graceEnded.Load() {
		sl.cancelIfPending()
	}
	return f&wroteFlag == 0 && sl.cancelled.Load()
}

// cancelIfPending cancels an HTTP/2 connection's context if it has
// requests and all of them are pending.
func (sl *connSlot) cancelIfPending() {
	if sl.active.Load() > 0 && sl.settled.Load() == 0 {
		sl.cancelled.Store(true)
		sl.cancel()
	}
}

// wrote marks c's response as begun, for the pending requests' rule,
// which only slotted requests need.
func (c *requestContext) wrote() {
	if c.slotted {
		c.settle(wroteFlag)
	}
}

// settle sets bit in c's flags and, the first time, counts c as no longer
// pending in its HTTP/2 connection's slot.
func (c *requestContext) settle(bit uint32) {
	if old := c.flags.Or(bit | settledFlag); old&(settledFlag|sharedFlag) == sharedFlag {
		c.more.slot.settled.Add(1)
	}
}

type connSlotKey struct{}

// Value returns sl for connSlotKey and defers to the parent for every
// other key, the context package's own included: a context derived from
// sl is cancelled with it without a goroutine.
func (sl *connSlot) Value(key any) any {
	if _, ok := key.(connSlotKey); ok {
		return sl
	}
	return sl.Context.Value(key)
}

// slotOf returns the slot of r's connection, on a server with the
// ConnContext hook, or nil.
func (s *Shutdowner) slotOf(r *http.Request) *connSlot {
	if !s.slotted.Load() {
		return nil
	}
	sl, _ := r.Context().Value(connSlotKey{}).(*connSlot)
	return sl
}

// cancelPending cancels the contexts of the pending requests, marking
// them for their middleware to answer: an HTTP/1 connection's request if
// it is pending, and an HTTP/2 connection's requests if every one of them
// is, since they share its context. From then on an HTTP/2 request that
// leaves its connection looks again (leaveSlot).
func (s *Shutdowner) cancelPending() {
	s.graceEnded.Store(true)
	s.serverMu.Lock()
	slots := make([]*connSlot, 0, len(s.slots))
	for _, sl := range s.slots {
		slots = append(slots, sl)
	}
	s.serverMu.Unlock()
	for _, sl := range slots {
		if c := sl.req.Load(); c != nil {
			if c.markCancelled() {
				sl.cancel()
			}
		} else {
			sl.cancelIfPending()
		}
	}
}

// markCancelled marks c as cancelled by the drain if it is pending, in
// one step with the check, and reports whether it did.
func (c *requestContext) markCancelled() bool {
	for {
		f := c.flags.Load()
		if f&(settledFlag|returnedFlag) != 0 {
			return false
		}
		if c.flags.CompareAndSwap(f, f|cancelledFlag) {
			return true
		}
	}
}

// urgeStreams makes the pending goodbyes of the protocol streams say
// themselves at their next boundary, rather than before a next message
// (sse.go): the grace is over, or the deadline near.
func (s *Shutdowner) urgeStreams() {
	s.mu.Lock()
	var urged []*requestContext
	for c := range s.streams {
		if st := c.stream.Load(); st.protocol() && s.streamOnBehalf(c) {
			urged = append(urged, c)
		}
	}
	s.mu.Unlock()
	for _, c := range urged {
		c.stream.Load().urge(c)
	}
}

// graceOver is the end of the grace, or the end game of a drain that came
// first: the pending requests are cancelled, unless WithPendingGrace says
// never, and the protocol streams' goodbyes urged.
func (s *Shutdowner) graceOver() {
	if s.pendingGrace >= 0 {
		s.cancelPending()
	}
	s.urgeStreams()
}

// schedulePending arms graceOver, the grace after window, once the drain
// has begun; the end game stops it. s.mu must be held.
func (s *Shutdowner) schedulePending(window time.Duration) {
	grace := s.pendingGrace
	if grace < 0 {
		return
	}
	if grace == 0 {
		grace = DefaultPendingGrace
	}
	s.pendingTimer = time.AfterFunc(window+grace, s.graceOver)
}
