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
// from its request: one allocation a connection, none a request. HTTP/2
// requests, which share their connection's context, are not cancelled.

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
// ConnContext and ConnState hooks ([Shutdowner.ConnContext]), and reaches
// HTTP/1 requests only. The default is [DefaultPendingGrace]; d < 0 never
// cancels them.
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
// costs one allocation a connection. Without ConnState, the Shutdowner
// never learns that a connection has closed, and keeps what it made for
// it.
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
// the Shutdowner, and holding the request inside the middleware, if any.
type connSlot struct {
	context.Context
	cancel context.CancelFunc
	req    atomic.Pointer[requestContext]
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

// slotOf returns the slot of r's connection, for an HTTP/1 request on a
// server with the ConnContext hook, or nil.
func (s *Shutdowner) slotOf(r *http.Request) *connSlot {
	if !s.slotted.Load() || r.ProtoMajor != 1 {
		return nil
	}
	sl, _ := r.Context().Value(connSlotKey{}).(*connSlot)
	return sl
}

// pending reports whether c is running with nothing written, and nobody
// asked for its signal.
func (c *requestContext) pending() bool {
	return c.flags.Load()&(wroteFlag|askedFlag|returnedFlag) == 0
}

// cancelPending cancels the contexts of the pending requests, marking
// them cancelledFlag for their middleware to answer.
func (s *Shutdowner) cancelPending() {
	s.serverMu.Lock()
	var cancel []context.CancelFunc
	for _, sl := range s.slots {
		if c := sl.req.Load(); c != nil && c.pending() {
			c.flags.Or(cancelledFlag)
			cancel = append(cancel, sl.cancel)
		}
	}
	s.serverMu.Unlock()
	for _, f := range cancel {
		f()
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

// graceOver is the end of the grace: the pending requests are cancelled,
// and the protocol streams' goodbyes urged.
func (s *Shutdowner) graceOver() {
	s.cancelPending()
	s.urgeStreams()
}

// schedulePending arms graceOver, the grace after window, once the drain
// has begun. s.mu must be held.
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
