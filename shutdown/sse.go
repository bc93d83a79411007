package shutdown

import (
	"context"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Event streams (server-sent events). A response whose Content-Type is
// text/event-stream, once its header is written, follows the events the
// handler writes (eventFollower). When its drain signal fires and no
// application code has asked for a drain signal, the Shutdowner ends the
// stream on the handler's behalf: at the next event boundary it writes a
// retry field with a random delay, so that EventSource clients reconnect
// spread out, flushes it, cancels the request's context and fails the
// handler's writes with ErrGoodbyeSent. Both the usual loop on
// r.Context().Done() and a loop that stops on a write error then return,
// and net/http ends the response cleanly.

// The kinds of stream a response may be.
const (
	kindEvents  = 1 + iota // text/event-stream
	kindGRPC               // application/grpc, application/grpc+proto, ...
	kindGRPCWeb            // application/grpc-web, application/grpc-web+proto, ...
	kindConnect            // application/connect+proto, application/connect+json, ...

	// Any other response that its handler has flushed: an NDJSON watch,
	// a text/plain stream, an event stream with a Content-Encoding. Its
	// framing is unknown, so its goodbye writes nothing and fails no
	// write: it cancels the request's context between two writes, and the
	// handler, which loops on it, returns and lets net/http end the
	// response cleanly.
	kindFlushed
)

// retrySpread is the spread of the reconnection delays sent without a
// stagger window.
const retrySpread = 5 * time.Second

// streamGoodbyeTimeout bounds the write of an event stream's goodbye. Its
// handler's own writes are stuck on a peer that takes no more, and the
// drain's end game (which caps it) or the server's Close ends them; the
// bound only frees the goroutine that says the goodbye, and a loaded
// machine must not make it fail the goodbye of a peer that reads.
const streamGoodbyeTimeout = 5 * time.Second

// responseStream is the stream part of a request: an event stream, or a
// protocol stream (envelope.go). Like a websocket's
// (goodbye.go), its goodbye never waits for the handler's write: mu is held
// across the handler's writes and flushes, and a goodbye that finds it held
// leaves streamPending for the writer to say once it gets through.
type responseStream struct {
	mu    sync.Mutex          // held across the handler's writes and flushes, and the goodbye
	kind  uint8               // kindEvents, kindGRPC, kindGRPCWeb, kindConnect or kindFlushed
	f     eventFollower       // kindEvents
	env   envelopeFollower    // the protocol streams
	w     http.ResponseWriter // the writer the middleware wraps
	state atomic.Uint32       // streamPending, streamSent, streamDone

	// ctx is the request's context from the moment the stream began: the
	// request's own, cancelled by the goodbye.
	ctx    context.Context
	cancel context.CancelFunc
	// conn, for a request whose handler has its connection's context
	// (pending.go), cancels that context too, which the handler's is
	// derived from: the goodbye's only, not the end of the stream, since
	// the connection may serve another request.
	conn *connSlot
}

// The bits of responseStream.state.
const (
	streamPending   = 1 << iota // a goodbye waits for the next event boundary
	streamSent                  // the goodbye has gone out, or failed: writes fail
	streamDone                  // the handler has returned: nothing may be written
	streamCancelled             // kindFlushed: the goodbye has cancelled the context; writes go on
	streamUrgent                // a protocol stream's goodbye may be said at any boundary, not only before a next message
)

// eventFollower follows the lines of an event stream, as the
// HTML standard's parser reads them, to tell where an event ends: after an
// empty line. Lines end with CRLF, LF or CR.
type eventFollower struct {
	inLine  bool // a line has begun and not ended
	afterCR bool // the last byte was a CR, whose LF may follow
	atEvent bool // an empty line has ended an event (or nothing is written yet); never with inLine
}

// follow advances f over p.
func (f *eventFollower) follow(p []byte) {
	for _, b := range p {
		f.byte(b)
	}
}

func (f *eventFollower) byte(b byte) {
	if f.afterCR && b == '\n' {
		f.afterCR = false // the LF of a CRLF
		return
	}
	f.afterCR = b == '\r'
	switch b {
	case '\r', '\n':
		f.atEvent = !f.inLine // an empty line ends the event
		f.inLine = false
	default:
		f.inLine, f.atEvent = true, false
	}
}

// atBoundary reports whether the stream is between events.
func (f *eventFollower) atBoundary() bool { return f.atEvent }

// toBoundary returns how many bytes of p come before the first event
// boundary in it, or len(p); zero when f is at one now. A boundary that
// ends with a CR takes the LF that follows it in p: a CRLF is one line
// ending, and nothing may come between its two bytes. It does not move f.
func (f *eventFollower) toBoundary(p []byte) int {
	if f.atBoundary() {
		return 0
	}
	g := *f
	for i, b := range p {
		g.byte(b)
		if g.atBoundary() {
			if g.afterCR && i+1 < len(p) && p[i+1] == '\n' {
				return i + 2
			}
			return i + 1
		}
	}
	return len(p)
}

// follower returns the stream's follower.
func (st *responseStream) follower() boundaryFollower {
	switch st.kind {
	case kindEvents:
		return &st.f
	case kindFlushed:
		return betweenWrites{}
	}
	return &st.env
}

// followed reports whether st's writes go through it: a stream whose
// framing the Shutdowner knows. Those of a flushed stream of unknown
// framing, whose goodbye writes nothing, go straight to the response.
func (st *responseStream) followed() bool { return st != nil && st.kind != kindFlushed }

// betweenWrites follows a stream whose framing is unknown: every point
// between two writes is a boundary.
type betweenWrites struct{}

func (betweenWrites) follow([]byte)         {}
func (betweenWrites) toBoundary([]byte) int { return 0 }
func (betweenWrites) atBoundary() bool      { return true }

// sniff looks, once, at the response's header as it is written, and
// begins following an event stream or a protocol stream. A stream with a
// Content-Encoding (a compressing handler inside the middleware) is not
// followed: its bytes are not what they say, and a goodbye among them
// would corrupt it.
//
// A response whose handler has not called Header has no Content-Type but
// the one net/http detects, which is never a stream's; sniff then does not
// look, since calling Header before the header is written makes net/http
// clone the header map: an allocation on every plain request
// (TestMiddlewareAllocationsOnServer). A Content-Type set outside the
// middleware, before it runs, is therefore not seen.
func (b *base) sniff() {
	b.ctx.sniffed = true
	b.ctx.wrote()
	if !b.ctx.headerCalled {
		return
	}
	h := b.rw.Header()
	if k := streamKind(h["Content-Type"]); k != 0 && len(h["Content-Encoding"]) == 0 {
		b.ctx.s.openStream(&b.ctx, b.rw, k)
	}
}

// openStream begins following c's stream of kind k, written to w. A
// protocol request's context is cancellable from its start (envelope.go);
// another's becomes so now.
func (s *Shutdowner) openStream(c *requestContext, w http.ResponseWriter, k uint8) {
	st := &responseStream{w: w, kind: k, f: eventFollower{atEvent: true}}
	switch k {
	case kindGRPCWeb:
		st.env.endFlag = 0x80
	case kindConnect:
		st.env.endFlag = 0x02
	}
	if cancel := c.earlyCancel(); cancel != nil {
		st.ctx, st.cancel = c.Context, cancel
	} else {
		st.ctx, st.cancel = context.WithCancel(c.Context)
	}
	if c.flags.Load()&connCtxFlag != 0 {
		st.conn, _ = c.Context.Value(connSlotKey{}).(*connSlot)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c.stream.Store(st)
	if s.streams == nil {
		s.streams = make(map[*requestContext]struct{})
	}
	s.streams[c] = struct{}{}
	if s.isDraining() && s.streamOnBehalf(c) {
		if c.flags.Load()&cancelledFlag != 0 {
			// A pending protocol request the drain cancelled, now
			// answering: the goodbye comes before its first byte.
			st.state.Or(streamPending | streamUrgent)
		}
		s.lateGoodbye(c)
	}
}

// streamOnBehalf reports whether c's stream is ended on its handler's
// behalf when its signal fires. s.mu must be held.
func (s *Shutdowner) streamOnBehalf(c *requestContext) bool {
	return !c.asked() && !s.ownGoodbyes && !s.goodbyeOff
}

// closeStream stops following c's stream as its handler returns: no
// goodbye may write to the response from then on.
func (s *Shutdowner) closeStream(c *requestContext, st *responseStream) {
	st.mu.Lock() // a goodbye's write, bounded by its deadline, has ended
	st.state.Or(streamDone)
	if st.kind == kindGRPC && st.state.Load()&streamSent != 0 { // the goodbye said: the trailers are the Shutdowner's
		setGoodbyeTrailers(st.w.Header())
	}
	st.mu.Unlock()
	st.cancel()
	s.mu.Lock()
	delete(s.streams, c)
	c.stopTimer()
	s.mu.Unlock()
}

// goodbye ends c's stream on its handler's behalf, unless the handler has
// returned or application code has asked for a drain signal since the
// goodbye was scheduled. It never waits for a write in progress: it leaves
// the goodbye pending for that write to say.
func (c *requestContext) goodbye() {
	s := c.s
	s.mu.Lock()
	_, open := s.streams[c]
	ok := open && s.streamOnBehalf(c)
	s.mu.Unlock()
	if !ok {
		return
	}
	st := c.stream.Load()
	st.state.Or(streamPending)
	st.tryEnd(c)
}

// tryEnd ends the stream now if a goodbye is pending, no write holds the
// lock and the stream is between events. If a write holds it, that write
// says it once it lets go of the lock.
func (st *responseStream) tryEnd(c *requestContext) {
	if !st.mu.TryLock() {
		return
	}
	if st.state.Load()&streamPending != 0 {
		c.endStream(st, false)
	}
	st.mu.Unlock()
}

// afterWrite is what the handler's write or flush does once it has let go
// of the lock: say the goodbye asked for meanwhile.
func (st *responseStream) afterWrite(c *requestContext) {
	if st.state.Load()&(streamPending|streamSent|streamDone) == streamPending {
		st.tryEnd(c)
	}
}

// endStream says the stream's goodbye (a retry field, a trailer frame, an
// end-of-stream message, gRPC's trailers as the handler returns, or for a
// flushed stream nothing) and ends it, if it is at a boundary; otherwise
// the goodbye stays pending for the write that reaches the next one. What
// it writes is written within streamGoodbyeTimeout, or the end game's cap:
// a stream whose peer stopped reading counts it as unwritten. Either way
// the request's context is cancelled. st.mu must be held.
//
// A protocol stream's goodbye waits, unless urgent, for the handler to
// begin a message after at least one whole one (before, the caller passes
// next): a unary or client-streaming call, whose response is one message,
// is never ended between its message and its status.
func (c *requestContext) endStream(st *responseStream, next bool) {
	if !st.follower().atBoundary() {
		return
	}
	if st.protocol() && !next && st.state.Load()&streamUrgent == 0 {
		return
	}
	ended := uint32(streamSent)
	if st.kind == kindFlushed {
		ended = streamCancelled
	}
	for {
		v := st.state.Load()
		if v&(streamSent|streamDone|streamCancelled) != 0 {
			return
		}
		if st.state.CompareAndSwap(v, (v|ended)&^streamPending) {
			break
		}
	}
	s := c.s
	var goodbye []byte
	switch st.kind {
	case kindEvents:
		goodbye = st.retryField(s)
	case kindGRPCWeb:
		goodbye = grpcWebGoodbye
	case kindConnect:
		goodbye = connectGoodbye
	}
	switch {
	case st.env.ended:
		// The handler ended the stream itself: nothing may follow.
	case goodbye == nil: // gRPC's trailers, as the handler returns; a flushed stream's cancel
		s.goodbyes.Add(1)
	default:
		st.writeGoodbye(s, goodbye)
	}
	st.cancel()
	if st.conn != nil {
		st.conn.cancel()
	}
	var notify func()
	s.mu.Lock()
	if c.more != nil {
		notify = c.more.notify
	}
	s.mu.Unlock()
	if notify != nil {
		notify()
	}
}

// retryField returns an event stream's goodbye: a retry field with a
// random delay within the stagger window, or retrySpread, and no empty
// line after it. The HTML standard's parser applies a retry field as it
// reads its line, and dispatches an event only at an empty line, which
// the end of the stream never brings; clients that dispatch an empty
// event for a block with only a retry field (go-sse 0.12) then dispatch
// nothing.
func (st *responseStream) retryField(s *Shutdowner) []byte {
	spread := retrySpread
	if s.stagger > 0 {
		spread = s.stagger
	}
	retry := "retry: " + strconv.FormatInt(rand.Int64N(int64(spread/time.Millisecond)+1), 10) + "\n"
	if st.f.afterCR {
		// The last line ended with a CR: an LF completes it as a CRLF,
		// and after a CR alone it means nothing more, so that a reader
		// that splits lines on LF alone reads this one whole.
		retry = "\n" + retry
	}
	return []byte(retry)
}

// writeGoodbye writes and flushes the stream's goodbye within
// streamGoodbyeTimeout, or the end game's cap, and counts it as said or as
// unwritten. st.mu must be held.
func (st *responseStream) writeGoodbye(s *Shutdowner, goodbye []byte) {
	rc := http.NewResponseController(st.w)
	armed := s.goodbyeCap.Load()
	deadline := func() time.Time {
		d := time.Now().Add(streamGoodbyeTimeout)
		if armed != 0 && armed < d.UnixNano() {
			d = time.Unix(0, armed)
		}
		_ = rc.SetWriteDeadline(d) // not every writer can; the write then has the server's
		return d
	}
	d := deadline()
	_, err := st.w.Write(goodbye) // into the response's buffer
	if armed == 0 && time.Now().After(d) {
		deadline() // passed while this goroutine waited to run, on a loaded machine
	}
	if err == nil && rc.Flush() == nil {
		s.goodbyes.Add(1)
		_ = rc.SetWriteDeadline(time.Time{}) // the end of the response, and a next request on the connection, have the server's
	} else {
		s.unwritten.Add(1)
	}
}

// write writes p to the stream, following its events; see conn.Write for
// the goodbye's part.
func (st *responseStream) write(c *requestContext, p []byte) (int, error) {
	st.mu.Lock()
	var n int
	var err error
	switch v := st.state.Load(); {
	case v&streamSent != 0:
		err = ErrGoodbyeSent
	case v&streamPending == 0:
		n, err = st.w.Write(p)
		st.follower().follow(p[:n])
	default:
		if st.protocol() {
			n, err = st.writeMessages(c, p)
		} else {
			n, err = writeToGoodbye(st.follower(), st.w.Write, p, func() { c.endStream(st, true) })
		}
	}
	st.mu.Unlock()
	st.afterWrite(c)
	return n, err
}

// writeMessages writes p to a protocol stream whose goodbye is pending:
// message by message, saying the goodbye before the first message that
// follows a whole one (or before any, once urgent), and failing the rest
// of p. st.mu must be held.
func (st *responseStream) writeMessages(c *requestContext, p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if st.env.atBoundary() && (st.env.messages > 0 || st.state.Load()&streamUrgent != 0) {
			c.endStream(st, true)
			return n, ErrGoodbyeSent
		}
		k := st.env.span(p[n:])
		m, err := st.w.Write(p[n : n+k])
		st.env.follow(p[n : n+m])
		if n += m; err != nil {
			return n, err
		}
	}
	return n, nil
}

// protocol reports whether st is a gRPC, gRPC-Web or Connect stream.
func (st *responseStream) protocol() bool {
	return st != nil && (st.kind == kindGRPC || st.kind == kindGRPCWeb || st.kind == kindConnect)
}

// urge makes a protocol stream's pending goodbye say itself at the next
// boundary, the one it is at included: the grace after the stagger window
// is over, or the deadline is near. A unary call still running then has
// had time to finish.
func (st *responseStream) urge(c *requestContext) {
	if st.protocol() {
		st.state.Or(streamUrgent | streamPending)
		st.tryEnd(c)
	}
}

// flush flushes the stream unless it has ended.
func (st *responseStream) flush(b *base, withError bool) error {
	st.mu.Lock()
	var err error
	if st.state.Load()&streamSent == 0 {
		err = b.flushInner(withError)
	}
	st.mu.Unlock()
	st.afterWrite(&b.ctx)
	return err
}

// Done returns the stream's context's Done once the response has become an
// event stream, so that a goodbye on the handler's behalf cancels it, and
// the request's before. A context derived from the request's before the
// response's header was written, or a Done channel taken then, ends with
// the request only.
func (c *requestContext) Done() <-chan struct{} {
	if st := c.stream.Load(); st != nil {
		return st.ctx.Done()
	}
	return c.Context.Done()
}

// Err returns the error of the context that Done's channel belongs to.
func (c *requestContext) Err() error {
	if st := c.stream.Load(); st != nil {
		return st.ctx.Err()
	}
	return c.Context.Err()
}

// LetFinish returns a handler that runs h and marks its requests as ones
// that the Shutdowner never ends on their behalf: no goodbye when their
// signal fires, no cancelled context, no failed write. They finish on their
// own until the deadline, when a websocket still gets its close frame. Use
// it for streams that must not be cut, such as a model's output.
//
// LetFinish works inside [Shutdowner.Middleware] (wrap the handler, or a
// route of a router that the middleware wraps); outside it, it only runs h.
// It panics if h is nil.
func LetFinish(h http.Handler) http.Handler {
	if h == nil {
		panic("shutdown: LetFinish called with a nil handler")
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, ok := r.Context().Value(requestContextKey{}).(*requestContext); ok {
			c.s.mu.Lock()
			c.markAsked()
			c.s.mu.Unlock()
		}
		h.ServeHTTP(w, r)
	})
}
