package shutdown

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
)

// The optional interfaces of a response writer that the middleware's writer
// keeps, one bit each. writers.go has a writer type for each of their 64
// combinations, so that a writer claims what the one it wraps has and no
// more: websocket libraries test for http.Hijacker, which an HTTP/2 writer
// lacks, and net/http's io.ReaderFrom and io.StringWriter save copies and
// allocations. http.CloseNotifier is deprecated, but gin's writer asserts it
// on the writer it wraps in every c.Stream.
//
// The types are written out, by TestWritersGenerated, rather than taken from
// github.com/felixge/httpsnoop: httpsnoop's Wrap costs three allocations of
// its own per request (its hooks, its writer, and the combination that holds
// it), where here one allocation holds the writer and the request's context
// (BenchmarkMiddleware measures both), and this
// package imports the standard library only.
const (
	hasFlusher = 1 << iota
	hasHijacker
	hasReaderFrom
	hasStringWriter
	hasPusher
	hasCloseNotifier
)

// canHijack reports whether w, or a writer it unwraps to, is an
// http.Hijacker, as http.ResponseController and coder/websocket look for
// one. The middleware's writer then has Hijack itself: were it to lack it,
// those callers would unwrap it and hijack the connection uncounted.
func canHijack(w http.ResponseWriter) bool {
	for {
		switch t := w.(type) {
		case http.Hijacker:
			return true
		case interface{ Unwrap() http.ResponseWriter }:
			w = t.Unwrap()
		default:
			return false
		}
	}
}

// newWriter returns a writer for w with w's optional interfaces, and the base
// inside it.
func newWriter(w http.ResponseWriter) (http.ResponseWriter, *base) {
	rw, b := newWriterOf(writerKind(w))
	b.rw = w
	return rw, b
}

// withRequest is a writer and a copy of its request, made together.
type withRequest[W any] struct {
	w W
	r http.Request
}

// writerKind returns the set of w's optional interfaces, which picks the
// writer type for it.
func writerKind(w http.ResponseWriter) int {
	var m int
	if _, ok := w.(http.Flusher); ok {
		m |= hasFlusher
	}
	if canHijack(w) {
		m |= hasHijacker
	}
	if _, ok := w.(io.ReaderFrom); ok {
		m |= hasReaderFrom
	}
	if _, ok := w.(io.StringWriter); ok {
		m |= hasStringWriter
	}
	if _, ok := w.(http.Pusher); ok {
		m |= hasPusher
	}
	if _, ok := w.(http.CloseNotifier); ok { //nolint:staticcheck // kept for the code that still calls it
		m |= hasCloseNotifier
	}
	return m
}

// base is the part common to all writer types: the writer it wraps, the
// methods of http.ResponseWriter, Unwrap, and the request's context, kept
// here so that one allocation holds both.
type base struct {
	rw     http.ResponseWriter
	header http.Header    // the request's, read if it hijacks
	ctx    requestContext // a named field: its methods are not the writer's
}

func (b *base) Header() http.Header {
	b.ctx.headerCalled = true
	return b.rw.Header()
}

func (b *base) Unwrap() http.ResponseWriter { return b.rw }

func (b *base) WriteHeader(statusCode int) {
	if statusCode == http.StatusSwitchingProtocols {
		b.ctx.switched = true
		b.ctx.wrote()
	} else if statusCode >= 200 && !b.ctx.sniffed {
		b.sniff()
	}
	b.rw.WriteHeader(statusCode)
}

func (b *base) Write(p []byte) (int, error) {
	if !b.ctx.sniffed {
		b.sniff()
	}
	if st := b.ctx.stream.Load(); st.followed() {
		return st.write(&b.ctx, p)
	}
	return b.rw.Write(p)
}

func (b *base) readFrom(r io.Reader) (int64, error) {
	if !b.ctx.sniffed {
		b.sniff()
	}
	if b.ctx.stream.Load().followed() {
		return io.Copy(writerOnly{b}, r) // through Write, which follows the stream
	}
	return b.rw.(io.ReaderFrom).ReadFrom(r)
}

func (b *base) writeString(s string) (int, error) {
	if !b.ctx.sniffed {
		b.sniff()
	}
	if st := b.ctx.stream.Load(); st.followed() {
		return st.write(&b.ctx, []byte(s))
	}
	return b.rw.(io.StringWriter).WriteString(s)
}

func (b *base) push(target string, opts *http.PushOptions) error {
	return b.rw.(http.Pusher).Push(target, opts)
}

func (b *base) flush() { _ = b.flushVia(false) }

// flushError is FlushError for every writer that has Flush, so that
// http.ResponseController.Flush, which prefers FlushError, still sees the
// error of a wrapped writer that has one.
func (b *base) flushError() error { return b.flushVia(true) }

// flushVia flushes the response, through the wrapped writer's FlushError
// if withError is set and it has one, else through its Flush.
func (b *base) flushVia(withError bool) error {
	if !b.ctx.sniffed {
		b.sniff() // a flush writes the header
	}
	st := b.ctx.stream.Load()
	if st == nil && !b.ctx.switched {
		// A response its handler flushes is a stream, whatever it is.
		b.ctx.s.openStream(&b.ctx, b.rw, kindFlushed)
	}
	if st.followed() {
		return st.flush(b, withError)
	}
	return b.flushInner(withError)
}

func (b *base) flushInner(withError bool) error {
	if f, ok := b.rw.(interface{ FlushError() error }); ok && withError {
		return f.FlushError()
	}
	b.rw.(http.Flusher).Flush()
	return nil
}

// closeNotify returns a channel that receives true when the client has
// gone away, which the request's context tells as net/http's CloseNotify
// would, or when the Shutdowner has ended the request's event stream on its
// behalf: gin's c.Stream loops until it does. It does not call the wrapped
// writer's CloseNotify, and allocates only when called.
func (b *base) closeNotify() <-chan bool {
	ch := make(chan bool, 1)
	send := func() {
		select {
		case ch <- true:
		default:
		}
	}
	context.AfterFunc(b.ctx.Context, send)
	s := b.ctx.s
	s.mu.Lock()
	m := b.ctx.extra()
	if prev := m.notify; prev != nil {
		m.notify = func() { prev(); send() }
	} else {
		m.notify = send
	}
	s.mu.Unlock()
	return ch
}

// hijack hijacks the connection, through whichever writer canHijack found,
// and tracks it until it is closed. The buffered writer it returns writes
// to the tracked connection, so that a websocket library that writes its
// frames there (coder/websocket, x/net/websocket, gobwas/ws) is followed.
func (b *base) hijack() (net.Conn, *bufio.ReadWriter, error) {
	b.ctx.settle(wroteFlag | hijackedFlag)
	var (
		c   net.Conn
		brw *bufio.ReadWriter
		err error
	)
	// net/http's own writer directly: a frame less than through
	// ResponseController, on a path whose depth a websocket's handler
	// goroutine keeps (ConnState).
	if h, ok := b.rw.(http.Hijacker); ok {
		c, brw, err = h.Hijack()
	} else {
		c, brw, err = http.NewResponseController(b.rw).Hijack()
	}
	if err != nil {
		return c, brw, err
	}
	s := b.ctx.s
	if b.ctx.flags.Load()&connCtxFlag != 0 {
		if sl, ok := b.ctx.Context.Value(connSlotKey{}).(*connSlot); ok {
			sl.hijacked()
		}
	}
	if s.hooked.Load() {
		s.forgetHijacked()
	}
	tc := s.track(c, &b.ctx, isWebSocket(b.header), b.ctx.switched)
	if brw != nil && brw.Reader != nil && brw.Reader.Buffered() > 0 {
		// The client's first bytes were read ahead of the conn.
		tc.ws.state.Or(wsUnfollowed)
	}
	if brw != nil && brw.Writer != nil {
		// net/http's is empty; another's may not be. Reset keeps the
		// buffer: no allocation.
		if brw.Flush() == nil {
			brw.Writer.Reset(tc)
		}
	}
	return tc, brw, nil
}
