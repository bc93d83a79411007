package shutdown

import (
	"bufio"
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
	rw, b := newWriterOf(m)
	b.rw = w
	return rw, b
}

// base is the part common to all writer types: the writer it wraps, the
// methods of http.ResponseWriter, Unwrap, and the request's context, kept
// here so that one allocation holds both.
type base struct {
	rw       http.ResponseWriter
	header   http.Header    // the request's, read if it hijacks
	switched bool           // 101 Switching Protocols written through rw
	ctx      requestContext // a named field: its methods are not the writer's
}

func (b *base) Header() http.Header         { return b.rw.Header() }
func (b *base) Write(p []byte) (int, error) { return b.rw.Write(p) }
func (b *base) WriteHeader(statusCode int) {
	if statusCode == http.StatusSwitchingProtocols {
		b.switched = true
	}
	b.rw.WriteHeader(statusCode)
}
func (b *base) Unwrap() http.ResponseWriter         { return b.rw }
func (b *base) readFrom(r io.Reader) (int64, error) { return b.rw.(io.ReaderFrom).ReadFrom(r) }
func (b *base) writeString(s string) (int, error)   { return b.rw.(io.StringWriter).WriteString(s) }

func (b *base) push(target string, opts *http.PushOptions) error {
	return b.rw.(http.Pusher).Push(target, opts)
}

func (b *base) flush() { b.rw.(http.Flusher).Flush() }

func (b *base) closeNotify() <-chan bool {
	return b.rw.(http.CloseNotifier).CloseNotify() //nolint:staticcheck // kept for the code that still calls it
}

// flushError is FlushError for every writer that has Flush, so that
// http.ResponseController.Flush, which prefers FlushError, still sees the
// error of a wrapped writer that has one.
func (b *base) flushError() error {
	if f, ok := b.rw.(interface{ FlushError() error }); ok {
		return f.FlushError()
	}
	b.rw.(http.Flusher).Flush()
	return nil
}

// hijack hijacks the connection, through whichever writer canHijack found,
// and tracks it until it is closed. The buffered writer it returns writes
// to the tracked connection, so that a websocket library that writes its
// frames there (coder/websocket, x/net/websocket, gobwas/ws) is followed.
func (b *base) hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(b.rw).Hijack()
	if err != nil {
		return c, brw, err
	}
	tc := b.ctx.s.track(c, &b.ctx, isWebSocket(b.header), b.switched)
	if brw != nil && brw.Writer != nil {
		// net/http's is empty; another's may not be. Reset keeps the
		// buffer: no allocation.
		if brw.Writer.Flush() == nil {
			brw.Writer.Reset(tc)
		}
	}
	return tc, brw, nil
}
