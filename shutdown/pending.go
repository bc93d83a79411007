package shutdown

import (
	"context"
	"net"
	"net/http"
	"sync/atomic"
	"time"
	"unsafe"
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
// the requests on their connection are pending, at the grace's end or,
// after it, when the last one that was not returns; gRPC ones never. The
// default is [DefaultPendingGrace]; d < 0 never cancels them.
func WithPendingGrace(d time.Duration) Option {
	if d == 0 {
		d = -1 // zero in the Shutdowner means the default
	}
	return optionFunc(func(s *Shutdowner) { s.pendingGrace = d })
}

// ConnContext is a hook for [http.Server.ConnContext], to be set with
// [Shutdowner.ConnState], as [Shutdowner.ConfigureServer] does:
//
//	srv.ConnContext = s.ConnContext
//	srv.ConnState = s.ConnState
//
// (call it from a hook of your own if you have one). It gives each
// connection a context the Shutdowner can cancel, so that a drain ends the
// requests that wait with nothing written (see [WithPendingGrace]). It
// costs a few small allocations a connection, a few hundred bytes while
// the connection serves requests, of which a connection hijacked through
// the middleware keeps 32 (the README's Performance section), and one
// allocation an HTTP/2 request.
//
// On a connection with this context, an HTTP/1 request that is not a gRPC
// or Connect call costs the middleware no allocation: its handler gets
// net/http's request unchanged, whose context finds the request's drain
// signal through the connection's, and its response writer is kept for
// the connection's next request (a writer is dead once its handler has
// returned). A context kept past its request's end, which the
// connection's later requests share the same connection context with,
// is told apart by its cancellation: net/http cancels a request's context
// as its handler returns, so [Draining] gives one that is cancelled, or
// that has no cancellation (context.WithoutCancel), what an ended
// request gets, the channel of [Shutdowner.Draining], and leaves the
// connection's current request as it was.
//
// Without ConnState, the Shutdowner never learns that a connection has
// closed, and keeps what it made for it.
func (s *Shutdowner) ConnContext(ctx context.Context, c net.Conn) context.Context {
	sl, l := &connSlot{base: ctx}, &slotLive{s: s}
	// A cancelCtx, which net/http's connection context, derived from sl
	// through a context.WithValue, finds by the context package's own key
	// and registers in: a cancellation written out here would be found
	// by neither that key nor AfterFunc, which the context package looks
	// for on the value context only, and would cost a goroutine a
	// connection (TestConnContextIsAContext).
	l.Context, l.cancel = context.WithCancel(ctx)
	sl.live.Store(l)
	s.serverMu.Lock()
	s.serverConns.of(c).slot = sl
	s.serverMu.Unlock()
	s.slotted.Store(true)
	return sl
}

// connSlot is a connection's context, made by ConnContext: cancellable by
// the Shutdowner, and holding the HTTP/1 request inside the middleware, if
// any, or counting the HTTP/2 ones and those of them no longer pending.
//
// An HTTP/1 connection serves one request at a time, and a response
// writer is dead once its handler has returned: a plain request's writer,
// with the request's context inside it, is kept in the slot for the
// connection's next request (plainWriter), and the request's context is
// found through the slot rather than put in a copy of the request. A
// plain HTTP/1 request on a slotted connection thus allocates nothing.
//
// What only a connection that still serves requests needs is in live,
// which a hijack through the middleware lets go of (hijacked): a goroutine
// that keeps the hijacking request's context keeps sl, for Draining, but
// not the cancelCtx and the map of children net/http's contexts made in it.
type connSlot struct {
	req  atomic.Pointer[requestContext] // HTTP/1
	live atomic.Pointer[slotLive]       // nil once hijacked
	base context.Context                // ConnContext's, the parent once live is gone
}

// slotLive is the part of a connSlot that a connection serving requests
// needs.
type slotLive struct {
	context.Context // a cancelCtx, derived from the slot's base
	cancel          context.CancelFunc
	s               *Shutdowner
	plain           atomic.Bool // a request has been served with the connection's context

	// HTTP/1: the writer of the connection's last plain request, free
	// for its next one, and the writer kind it was made for, that of
	// writers of type kindOf unless that is nil. Touched only by the
	// goroutine that serves the connection's requests.
	spare     *base
	spareRW   http.ResponseWriter
	spareKind int
	kindOf    unsafe.Pointer

	active, settled atomic.Int32 // HTTP/2
	cancelled       atomic.Bool  // HTTP/2: cancelPending cancelled it
}

// ctx is the context sl stands for: the cancellable one while the
// connection serves requests, its parent once it has been hijacked.
func (sl *connSlot) ctx() context.Context {
	if l := sl.live.Load(); l != nil {
		return l.Context
	}
	return sl.base
}

// Deadline, Done and Err are those of sl.ctx(). Done changes only when
// sl is hijacked and nothing derived from it can still be cancelled
// through it (hijacked).
func (sl *connSlot) Deadline() (time.Time, bool) { return sl.ctx().Deadline() }
func (sl *connSlot) Done() <-chan struct{}       { return sl.ctx().Done() }
func (sl *connSlot) Err() error                  { return sl.ctx().Err() }

// cancel cancels the connection's context, unless it has been hijacked.
func (sl *connSlot) cancel() {
	if l := sl.live.Load(); l != nil {
		l.cancel()
	}
}

// hijacked lets go of sl.live once the middleware's request has hijacked
// the connection: it serves no request again, and nothing cancels it as
// pending. net/http's contexts stay registered in the live cancelCtx until
// the handler returns, and find nothing to deregister from then, since
// sl's Done is its base's, nil, which the context package takes for a
// parent that is never cancelled. The live part stays where the base can
// be cancelled, which would have to cancel it to let go (a server's
// BaseContext), and where it has been cancelled already.
func (sl *connSlot) hijacked() {
	if l := sl.live.Load(); l != nil && sl.base.Done() == nil && l.Err() == nil {
		sl.live.Store(nil)
	}
}

// plainWriter returns a writer for w, the connection's spare one if it is
// of w's kind, and the base inside it, ready for a request. The spare
// stays the slot's while the request runs, unless release finds that
// something may still reach it.
func (sl *connSlot) plainWriter(w http.ResponseWriter) (http.ResponseWriter, *base) {
	l := sl.live.Load() // not nil: a hijacked connection serves no request
	if !l.plain.Load() {
		l.plain.Store(true)
	}
	// A connection's writers are of one type, almost always: the kind is
	// looked up once (writerKind's type assertions cost more than the
	// rest of the request's path), unless the type unwraps to another
	// writer, whose interfaces its kind depends on too. The type is
	// told by the interface's first word, unique to it (ifaceWords).
	if t := wordsOf(&w).tab; t != l.kindOf || l.spare == nil {
		k := writerKind(w)
		l.kindOf = t
		if _, unwraps := w.(interface{ Unwrap() http.ResponseWriter }); unwraps {
			l.kindOf = nil
		}
		if l.spare == nil || l.spareKind != k {
			l.spareRW, l.spare = newWriterOf(k)
			l.spareKind = k
		}
	}
	b := l.spare
	b.rw = w
	return l.spareRW, b
}

// release lets go of b's request, served by plainWriter: of net/http's
// response and the request's header. It keeps b as the connection's spare
// writer if nothing can still reach it: its request was plain (no
// stream, no signal of its own, no hijack, not cancelled as pending,
// nothing in more). The slot still points to it, returned, until the
// next request, which resets its flags. A request that hijacked stays in
// the slot for its pumps; another leaves.
func (sl *connSlot) release(b *base) {
	b.rw, b.header = nil, nil
	c := &b.ctx
	f := c.flags.Load()
	if f&hijackedFlag != 0 {
		return // the connection serves no other request
	}
	if f&(askedFlag|cancelledFlag) != 0 || c.more != nil || c.stream.Load() != nil {
		sl.req.Store(nil)
		l := sl.live.Load()
		l.spare, l.spareRW = nil, nil
		return
	}
	c.Context = nil
	c.switched, c.headerCalled, c.sniffed = false, false, false
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
	sl.live.Load().active.Add(1) // HTTP/2: never hijacked
	if c.flags.Or(sharedFlag)&protocolFlag != 0 {
		c.settle(0)
	}
}

// leaveSlot takes c, a request served with a copy of it (r.WithContext), out
// of sl as its handler returns, and reports whether the drain cancelled it
// as pending and it wrote nothing: the middleware then answers 503. On
// HTTP/1 such a request is a gRPC or Connect call, which never hijacks;
// the plain ones leave through release. An HTTP/2 request that leaves
// after the grace, its connection's other requests all pending, cancels
// them: a long poll that shared its connection with a writing request is
// then no longer held.
func (c *requestContext) leaveSlot(sl *connSlot) bool {
	f := c.flags.Load()
	if f&sharedFlag == 0 {
		sl.req.Store(nil)
		return c.cancelledSilent()
	}
	l := sl.live.Load() // HTTP/2: never hijacked
	if f&settledFlag != 0 {
		l.settled.Add(-1)
	}
	// Counted out before graceEnded is read, as graceOver sets it before
	// it reads the counts: one of the two sees the other.
	if l.active.Add(-1) > 0 && c.s.graceEnded.Load() {
		l.cancelIfPending()
	}
	return f&wroteFlag == 0 && l.cancelled.Load()
}

// cancelledSilent reports whether the drain cancelled c, an HTTP/1
// request, as pending, and it has written nothing since.
func (c *requestContext) cancelledSilent() bool {
	return c.flags.Load()&(cancelledFlag|wroteFlag) == cancelledFlag
}

// cancelIfPending cancels an HTTP/2 connection's context if it has
// requests and all of them are pending.
func (l *slotLive) cancelIfPending() {
	if l.active.Load() > 0 && l.settled.Load() == 0 {
		l.cancelled.Store(true)
		l.cancel()
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
		c.more.slot.live.Load().settled.Add(1) // HTTP/2: never hijacked
	}
}

type connSlotKey struct{}

// Value returns sl for connSlotKey, the connection's HTTP/1 request for
// requestContextKey if that request's context is the connection's (its
// handler has net/http's request context, derived from sl), and defers to
// the parent for every other key, the context package's own included: a
// context derived from sl is cancelled with it without a goroutine.
func (sl *connSlot) Value(key any) any {
	switch key.(type) {
	case connSlotKey, entryKey:
		return sl
	case requestContextKey:
		// The connection's request, while it runs or, once it has
		// hijacked the connection, for good.
		if c := sl.req.Load(); c != nil {
			if f := c.flags.Load(); f&connCtxFlag != 0 && f&(returnedFlag|hijackedFlag) != returnedFlag {
				return c
			}
		}
		if l := sl.live.Load(); l != nil && l.plain.Load() {
			// The context of a request that has returned, kept by a
			// goroutine that outlives it: Draining gives it what an
			// ended request gets.
			return &l.s.ended
		}
	}
	return sl.ctx().Value(key)
}

// slotOf returns the slot of r's connection, on a server with s's
// ConnContext hook, or nil.
func (s *Shutdowner) slotOf(r *http.Request) *connSlot {
	if !s.slotted.Load() {
		return nil
	}
	if sl, ok := r.Context().Value(connSlotKey{}).(*connSlot); ok {
		if l := sl.live.Load(); l != nil && l.s == s {
			return sl
		}
	}
	return nil
}

// cancelPending cancels the contexts of the pending requests, marking
// them for their middleware to answer: an HTTP/1 connection's request if
// it is pending, and an HTTP/2 connection's requests if every one of them
// is, since they share its context. From then on an HTTP/2 request that
// leaves its connection looks again (leaveSlot).
func (s *Shutdowner) cancelPending() {
	s.graceEnded.Store(true)
	s.serverMu.Lock()
	s.sweepHijacked()
	slots := make([]*connSlot, 0, s.serverConns.len())
	for sc := range s.serverConns.all() {
		if sc.slot != nil {
			slots = append(slots, sc.slot)
		}
	}
	s.serverMu.Unlock()
	for _, sl := range slots {
		if c := sl.req.Load(); c != nil {
			if c.markCancelled() {
				sl.cancel()
			}
		} else if l := sl.live.Load(); l != nil {
			l.cancelIfPending()
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
