package shutdown

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unsafe"
)

// interfacesOf returns the has* bits of the optional interfaces w has.
func interfacesOf(w http.ResponseWriter) int {
	m := 0
	if _, ok := w.(http.Flusher); ok {
		m |= hasFlusher
	}
	if _, ok := w.(http.Hijacker); ok {
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
	if _, ok := w.(http.CloseNotifier); ok { //nolint:staticcheck // kept for gin
		m |= hasCloseNotifier
	}
	return m
}

// allWriter has every optional interface and records which were called.
type allWriter struct {
	*httptest.ResponseRecorder
	calls    []string
	peer     net.Conn // the client end of a hijacked connection
	flushErr error
}

func (w *allWriter) Flush()            { w.calls = append(w.calls, "Flush") }
func (w *allWriter) FlushError() error { w.calls = append(w.calls, "FlushError"); return w.flushErr }

func (w *allWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	w.calls = append(w.calls, "Hijack")
	server, client := net.Pipe()
	w.peer = client
	return server, bufio.NewReadWriter(bufio.NewReader(server), bufio.NewWriter(server)), nil
}

func (w *allWriter) ReadFrom(r io.Reader) (int64, error) {
	w.calls = append(w.calls, "ReadFrom")
	return io.Copy(w.ResponseRecorder, r)
}

func (w *allWriter) WriteString(s string) (int, error) {
	w.calls = append(w.calls, "WriteString")
	return w.ResponseRecorder.WriteString(s)
}

func (w *allWriter) Push(string, *http.PushOptions) error {
	w.calls = append(w.calls, "Push")
	return nil
}

func (w *allWriter) CloseNotify() <-chan bool {
	w.calls = append(w.calls, "CloseNotify")
	return make(chan bool)
}

// For each of the 64 combinations of optional interfaces, the middleware's
// writer has the interfaces of the writer it wraps, and each of them reaches
// that writer. The wrapped writers here unwrap to one that can hijack, so
// the middleware's writer has Hijack in every combination: see
// TestWriterHijacksThroughUnwrap.
func TestWriterKeepsTheOptionalInterfaces(t *testing.T) {
	for m := range 1 << len(optionalMethods) {
		t.Run(writerName(m), func(t *testing.T) {
			all := &allWriter{ResponseRecorder: httptest.NewRecorder(), flushErr: errors.New("flush failed")}
			// The wrapped writer is another Shutdowner's, as with nested
			// middleware: the generated types have each combination.
			var innerS Shutdowner
			inner, b := newWriterOf(m)
			b.rw = all
			b.ctx = requestContext{Context: context.Background(), s: &innerS}
			if got := interfacesOf(inner); got != m {
				t.Fatalf("generated %T has interfaces %06b, want %06b", inner, got, m)
			}
			var s Shutdowner
			var want []string
			h := s.Middleware(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				if got := interfacesOf(w); got != m|hasHijacker {
					t.Fatalf("middleware's writer has interfaces %06b, wrapping %06b", got, m)
				}
				if u := w.(interface{ Unwrap() http.ResponseWriter }).Unwrap(); u != inner {
					t.Errorf("Unwrap() = %T, want the wrapped writer", u)
				}
				if f, ok := w.(http.Flusher); ok {
					f.Flush()
					want = append(want, "Flush")
				}
				// Through FlushError where the writer has Flush, through
				// Unwrap where it has not: either way the error arrives.
				if err := http.NewResponseController(w).Flush(); err == nil || err.Error() != "flush failed" {
					t.Errorf("ResponseController.Flush() = %v, want the innermost FlushError's error", err)
				}
				want = append(want, "FlushError")
				if rf, ok := w.(io.ReaderFrom); ok {
					_, _ = rf.ReadFrom(strings.NewReader("from"))
					want = append(want, "ReadFrom")
				}
				if sw, ok := w.(io.StringWriter); ok {
					_, _ = sw.WriteString("string")
					want = append(want, "WriteString")
				}
				if p, ok := w.(http.Pusher); ok {
					_ = p.Push("/style.css", nil)
					want = append(want, "Push")
				}
				if cn, ok := w.(http.CloseNotifier); ok { //nolint:staticcheck // kept for gin
					// Answered from the request's context, not by the
					// wrapped writer (sse.go).
					if cn.CloseNotify() == nil {
						t.Error("CloseNotify() = nil")
					}
				}
				c, _, err := w.(http.Hijacker).Hijack()
				if err != nil {
					t.Fatal(err)
				}
				want = append(want, "Hijack")
				if got := s.Stats().Hijacked; got != 1 {
					t.Errorf("Stats().Hijacked = %d after Hijack, want 1", got)
				}
				c.Close()
				all.peer.Close()
				if got := s.Stats().Hijacked; got != 0 {
					t.Errorf("Stats().Hijacked = %d after Close, want 0", got)
				}
			}))
			h.ServeHTTP(inner, httptest.NewRequest(http.MethodGet, "/", nil))
			if strings.Join(all.calls, " ") != strings.Join(want, " ") {
				t.Fatalf("wrapped writer saw calls %q, want %q", all.calls, want)
			}
		})
	}
}

// A writer with no Hijacker anywhere in its chain gives a middleware writer
// without one: http.ResponseController and websocket libraries get
// ErrNotSupported and a refusal, as without the middleware.
func TestWriterWithoutHijacker(t *testing.T) {
	var s Shutdowner
	rec := httptest.NewRecorder() // has Flush and WriteString, no Unwrap
	s.Middleware(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if got, want := interfacesOf(w), hasFlusher|hasStringWriter; got != want {
			t.Errorf("middleware's writer has interfaces %06b, want %06b", got, want)
		}
		if _, _, err := http.NewResponseController(w).Hijack(); !errors.Is(err, http.ErrNotSupported) {
			t.Errorf("ResponseController.Hijack() = %v, want ErrNotSupported", err)
		}
	})).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
}

// The writer and the request's context are the one allocation per request
// that the middleware makes itself; 80 bytes is a size class of Go's
// allocator, and a word more would take it to 96 (BenchmarkMiddleware).
func TestWriterSize(t *testing.T) {
	if got := unsafe.Sizeof(base{}); got > 80 {
		t.Errorf("the writer with its context takes %d bytes, want at most 80", got)
	}
}
