package shutdown

import (
	"context"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// Middleware returns a handler that runs next and counts it in the drain.
//
// The handler counts as running from the moment it is called until it
// returns, or panics (the panic goes on to net/http). A connection it hijacks
// counts from Hijack until it is closed, even after the handler has returned.
// The net.Conn that Hijack returns is therefore a wrapper, not the
// *net.TCPConn or *tls.Conn itself: a type switch on those misses it (some
// libraries then skip settings such as SetNoDelay), and its NetConn method,
// as in [crypto/tls.Conn.NetConn], returns the connection underneath.
// Its response writer has the optional interfaces of the one it wraps among
// [http.Flusher], [io.ReaderFrom], [io.StringWriter] and [http.Pusher], and
// an Unwrap method for [http.ResponseController]. It has [http.Hijacker] when
// the writer it wraps, or one that writer unwraps to, has it, so that no
// hijack bypasses the count; on HTTP/2 it has none. The request's context
// carries its drain signal for [Draining]: in a copy of the request, or,
// for an HTTP/1 request on a server with the [Shutdowner.ConnContext]
// hook, through the connection's context, which costs no allocation.
//
// Once a drain has begun, the handler answers every new request itself with
// 503 Service Unavailable, "Connection: close" and Retry-After, and does not
// call next.
//
// Middleware panics if next is nil. It may be called any number of times, on
// any number of handlers; they all count in the same drain. A request that is
// already inside this Shutdowner's middleware, as when a router wrapped in it
// also uses it for its routes, passes through the inner one untouched and
// counts once; another Shutdowner's middleware counts it in its own drain.
func (s *Shutdowner) Middleware(next http.Handler) http.Handler {
	if next == nil {
		panic("shutdown: Middleware called with a nil handler")
	}
	s.init()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		slot, nested := s.entry(r)
		if nested {
			next.ServeHTTP(w, r) // counted, or rejected, by the outer one
			return
		}
		if s.watching.Load() {
			s.noteServer(r) // watch.go
		}
		if !s.enter() {
			s.reject(w)
			return
		}
		protocol := protocolKind(r) != 0 // a gRPC or Connect call, which may stream
		if slot != nil && r.ProtoMajor == 1 && !protocol {
			s.serveOnSlot(slot, next, w, r)
			return
		}
		s.serveWrapped(slot, protocol, next, w, r)
	})
}

// serveWrapped serves a request with a copy of it whose context is the
// middleware's, and a writer of its own: HTTP/2 ones, protocol calls, and
// those on a connection without a slot. Apart from Middleware's handler,
// whose frame the path of a plain HTTP/1 request on a slotted connection
// then does not carry: a websocket's handler goroutine keeps the stack
// its deepest call needed, and a few hundred bytes more double it.
func (s *Shutdowner) serveWrapped(slot *connSlot, protocol bool, next http.Handler, w http.ResponseWriter, r *http.Request) {
	// One allocation holds the writer, the context and the copy of the
	// request, which a context kept past the handler's return then keeps
	// too: not for a request with a body, whose reader net/http's
	// connection and buffers are behind, nor one that asks to upgrade,
	// whose goroutines keep its context for the connection's life. Those
	// have a copy of their own, from WithContext: two allocations.
	var (
		rw  http.ResponseWriter
		b   *base
		req *http.Request
	)
	paired := (r.Body == nil || r.Body == http.NoBody) && len(r.Header["Upgrade"]) == 0
	if paired {
		rw, b, req = newWriterWithRequestOf(writerKind(w))
		b.rw = w
	} else {
		rw, b = newWriter(w)
	}
	b.ctx.Context, b.ctx.s, b.header = r.Context(), s, r.Header
	if protocol {
		var cancel context.CancelFunc
		b.ctx.Context, cancel = context.WithCancel(b.ctx.Context)
		b.ctx.more = &requestMore{cancel: cancel}
		b.ctx.flags.Store(protocolFlag)
	}
	if slot != nil {
		b.ctx.enterSlot(slot, r.ProtoMajor == 1)
	}
	defer func() {
		if slot != nil && b.ctx.leaveSlot(slot) {
			s.reject(w) // a long poll the drain ended, which said nothing
		}
		s.handlerReturned(&b.ctx)
		if b.ctx.flags.Load()&hijackedFlag != 0 {
			// The writer is dead, and a goroutine that keeps the
			// request's context, as a chat's pumps do, keeps this
			// allocation: not net/http's response, its buffers and
			// the request's header with it.
			b.rw, b.header = nil, nil
		}
		s.exit()
	}()
	if paired {
		copyWithContext(&b.ctx, req, r)
	} else {
		req = r.WithContext(&b.ctx)
	}
	next.ServeHTTP(rw, req)
}

// serveOnSlot serves a plain HTTP/1 request on a connection with a slot
// (pending.go), allocating nothing: the writer is the slot's spare, and the
// request keeps net/http's context, derived from the slot, which finds the
// request's own for Draining and LetFinish.
func (s *Shutdowner) serveOnSlot(slot *connSlot, next http.Handler, w http.ResponseWriter, r *http.Request) {
	rw, b := slot.plainWriter(w)
	c := &b.ctx
	c.Context, c.s, b.header = r.Context(), s, r.Header
	c.flags.Store(connCtxFlag) // a spare's were its last request's, returned
	c.slotted = true
	if slot.req.Load() != c { // a spare is in the slot already: no store
		slot.req.Store(c)
	}
	defer s.leaveSlot(slot, b)
	next.ServeHTTP(rw, r)
}

// leaveSlot ends serveOnSlot's request, whose writer's base is b, as its
// handler returns or panics.
func (s *Shutdowner) leaveSlot(slot *connSlot, b *base) {
	c := &b.ctx
	if c.cancelledSilent() {
		s.reject(b.rw) // a long poll the drain ended, which said nothing
	}
	s.handlerReturned(c)
	slot.release(b)
	s.exit()
}

// copyWithContext sets *dst to a copy of r with context ctx. WithContext's
// own copy stays on the stack, in this frame, which returns before the
// handler runs: in the handler's caller's frame, its few hundred bytes
// would double a websocket handler's 4 KB stack for the connection's life
// (TestConnMemory).
//
//go:noinline
func copyWithContext(ctx context.Context, dst, r *http.Request) {
	*dst = *r.WithContext(ctx)
}

// reject answers a request that arrived during the drain.
func (s *Shutdowner) reject(w http.ResponseWriter) {
	s.rejected.Add(1)
	h := w.Header()
	h.Set("Connection", "close")
	if d := s.retryAfter; d >= 0 {
		if d == 0 {
			d = DefaultRetryAfter
		}
		h.Set("Retry-After", strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10))
	}
	http.Error(w, "shutdown: server is draining", http.StatusServiceUnavailable)
}

// requestContext is the context of a request inside Middleware: its parent's,
// plus the request's drain signal for Draining.
type requestContext struct {
	context.Context
	s *Shutdowner

	// The connection the request hijacked, if any. Guarded by s.mu.
	conn *conn

	// The response's event stream, once its header says it is one
	// (sse.go).
	stream atomic.Pointer[responseStream]

	// What few requests need, made when first needed; guarded by s.mu.
	more *requestMore

	// flags holds askedFlag and returnedFlag, for the lock-free check at
	// the handler's return.
	flags atomic.Uint32

	// Read and written by the handler's goroutine only: whether a 101
	// Switching Protocols went out through the response writer, whether
	// the handler has called the writer's Header, whether the response's
	// Content-Type has been looked at (sse.go), and whether the request's
	// connection has a slot (pending.go), so that only those requests pay
	// for telling it they have written. Here rather than in base, where
	// they would cost a word: the writer and this context are one
	// allocation, which TestWriterSize holds to 80 bytes.
	switched, headerCalled, sniffed, slotted bool
}

const (
	askedFlag     = 1 << iota // application code asked for the request's signal
	returnedFlag              // the handler has returned
	protocolFlag              // a protocol request: more.cancel, set before the request was shared, cancels its context
	wroteFlag                 // the response has begun: a header or a byte written, a flush, or a hijack
	cancelledFlag             // pending, its context was cancelled by the drain (pending.go)
	settledFlag               // no longer pending: it wrote, hijacked or asked (pending.go)
	sharedFlag                // an HTTP/2 request on a slotted connection: more.slot counts it, set before the request was shared
	hijackedFlag              // the handler hijacked the connection
	connCtxFlag               // an HTTP/1 request whose handler has net/http's context, which finds this one through its connection's slot (pending.go)
)

// earlyCancel returns the cancel of a protocol request's context, or nil.
func (c *requestContext) earlyCancel() context.CancelFunc {
	if c.flags.Load()&protocolFlag == 0 {
		return nil // and c.more may be another goroutine's to make
	}
	return c.more.cancel
}

func (c *requestContext) asked() bool    { return c.flags.Load()&askedFlag != 0 }
func (c *requestContext) returned() bool { return c.flags.Load()&returnedFlag != 0 }

// requestMore is the part of a request's context that few requests need.
type requestMore struct {
	// With a stagger window only (signal.go): the request's own signal,
	// made when first asked for.
	sig chan struct{}
	// The request's signal, or its event stream's goodbye, once scheduled.
	timer *time.Timer
	// What to tell code waiting on CloseNotify when the event stream is
	// ended on the handler's behalf (sse.go).
	notify func()
	// A protocol request's: cancels its context, which it has had from
	// its start (envelope.go). Set before the request is shared.
	cancel context.CancelFunc
	// An HTTP/2 request's connection, which counts it (pending.go). Set
	// before the request is shared.
	slot *connSlot
}

// extra returns c.more, made if need be. s.mu must be held.
func (c *requestContext) extra() *requestMore {
	if c.more == nil {
		c.more = new(requestMore)
	}
	return c.more
}

// sig returns the request's own signal, nil if it has none. s.mu must be
// held.
func (c *requestContext) sig() chan struct{} {
	if c.more == nil {
		return nil
	}
	return c.more.sig
}

// stopTimer stops and forgets the timer of the request's signal or goodbye,
// if any. s.mu must be held.
func (c *requestContext) stopTimer() {
	if c.more != nil && c.more.timer != nil {
		c.more.timer.Stop()
		c.more.timer = nil
	}
}

type requestContextKey struct{}

// entryKey finds, in one walk of a request's context, whichever comes
// first of a requestContext (whose Value gives itself for it) and a
// connection's slot (whose Value gives itself).
type entryKey struct{}

// entry returns the slot of r's connection if it is s's (a server with s's
// ConnContext hook), and whether r is inside s's middleware already: its
// context, or its connection's running request, is s's.
func (s *Shutdowner) entry(r *http.Request) (slot *connSlot, nested bool) {
	switch v := r.Context().Value(entryKey{}).(type) {
	case *connSlot:
		if c := v.req.Load(); c != nil && c.s == s && c.flags.Load()&(connCtxFlag|returnedFlag) == connCtxFlag {
			return nil, true // served with the connection's context, running
		}
		if l := v.live.Load(); l != nil && l.s == s {
			return v, false
		}
		return nil, false // another's, or hijacked
	case *requestContext:
		if v.s == s && !v.returned() {
			return nil, true
		}
		return s.slotOf(r), false // inside another Shutdowner's
	}
	return nil, false
}

// Value returns c itself for requestContextKey and defers to the parent for
// every other key.
func (c *requestContext) Value(key any) any {
	switch key.(type) {
	case requestContextKey, entryKey:
		return c
	}
	return c.Context.Value(key)
}

// Draining returns the drain signal of the request that ctx belongs to: a
// channel that is closed when the request should wind down. ctx is the
// context of a request inside [Shutdowner.Middleware], or one derived from it,
// so code deep in a handler, and goroutines the handler hands its connection
// to, need only the request's context. A context of a request that has
// ended gets the channel of [Shutdowner.Draining]; on a server with the
// [Shutdowner.ConnContext] hook, so does one without cancellation
// (context.WithoutCancel), which cannot be told from the connection's
// later requests. For any other context, nil ctx included, Draining
// returns nil, a channel that is never closed.
func Draining(ctx context.Context) <-chan struct{} {
	if ctx == nil {
		return nil
	}
	c, ok := ctx.Value(requestContextKey{}).(*requestContext)
	if !ok {
		return nil
	}
	if c.flags.Load()&(connCtxFlag|hijackedFlag) == connCtxFlag && ctx != c.Context && (ctx.Done() == nil || ctx.Err() != nil) {
		// Found through the connection's slot (pending.go), from a
		// context other than the request's own (which Done would give a
		// channel it may never need), that may be an earlier request's:
		// one kept with context.WithoutCancel, or one that net/http
		// ended with its request. It gets what an ended request gets,
		// and the connection's current request stays as it was. A
		// request that hijacked the connection is its last: its
		// pumps, asking once net/http has cancelled its context, get
		// its own signal.
		return c.s.draining
	}
	return c.signal()
}
