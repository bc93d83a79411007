package shutdown_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/wsshutdown/wsshutdown/shutdown"
)

// interfaces names the optional interfaces w has.
func interfaces(w http.ResponseWriter) map[string]bool {
	_, f := w.(http.Flusher)
	_, h := w.(http.Hijacker)
	_, r := w.(io.ReaderFrom)
	_, s := w.(io.StringWriter)
	_, p := w.(http.Pusher)
	return map[string]bool{"Flusher": f, "Hijacker": h, "ReaderFrom": r, "StringWriter": s, "Pusher": p}
}

// On net/http's own writers, HTTP/1.1 and HTTP/2, the middleware's writer has
// the same optional interfaces as the bare one, and http.ResponseController
// reaches the bare one's deadlines through Unwrap.
func TestWriterInterfacesOnRealServers(t *testing.T) {
	for _, proto := range []struct {
		name  string
		major int
		want  map[string]bool
	}{
		{"HTTP/1.1", 1, map[string]bool{"Flusher": true, "Hijacker": true, "ReaderFrom": true, "StringWriter": true, "Pusher": false}},
		{"HTTP/2", 2, map[string]bool{"Flusher": true, "Hijacker": false, "ReaderFrom": false, "StringWriter": true, "Pusher": true}},
	} {
		t.Run(proto.name, func(t *testing.T) {
			var s shutdown.Shutdowner
			type seen struct {
				major       int
				bare, inner map[string]bool
				deadlineErr error
			}
			got := make(chan seen, 1)
			var bare map[string]bool
			mw := s.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				got <- seen{
					major: r.ProtoMajor, bare: bare, inner: interfaces(w),
					deadlineErr: http.NewResponseController(w).SetWriteDeadline(time.Now().Add(time.Minute)),
				}
			}))
			ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				bare = interfaces(w)
				mw.ServeHTTP(w, r)
			}))
			if proto.major == 2 {
				ts.EnableHTTP2 = true
				ts.StartTLS()
			} else {
				ts.Start()
			}
			defer ts.Close()
			resp, err := ts.Client().Get(ts.URL)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			g := <-got
			if g.major != proto.major {
				t.Fatalf("served over HTTP/%d, want HTTP/%d", g.major, proto.major)
			}
			for name, want := range proto.want {
				if g.bare[name] != want {
					t.Errorf("bare writer: %s = %v, want %v (has net/http changed?)", name, g.bare[name], want)
				}
				if g.inner[name] != g.bare[name] {
					t.Errorf("middleware's writer: %s = %v, bare writer's %v", name, g.inner[name], g.bare[name])
				}
			}
			if g.deadlineErr != nil {
				t.Errorf("ResponseController.SetWriteDeadline through the middleware: %v", g.deadlineErr)
			}
		})
	}
}

// A hijacked connection keeps what callers of a net.Conn reach for:
// deadlines, io.ReaderFrom and io.WriterTo, and the connection underneath.
func TestHijackedConnKeepsConnMethods(t *testing.T) {
	var s shutdown.Shutdowner
	type result struct {
		readerFrom, writerTo bool
		under                net.Conn
		deadlineErr          error
		copied               int64
	}
	got := make(chan result, 1)
	ts, _ := serve(t, &s, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, brw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		var res result
		_, res.readerFrom = c.(io.ReaderFrom)
		_, res.writerTo = c.(io.WriterTo)
		if nc, ok := c.(interface{ NetConn() net.Conn }); ok {
			res.under = nc.NetConn()
		}
		res.deadlineErr = c.SetDeadline(time.Now().Add(10 * time.Second))
		_, _ = brw.WriteString("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\n")
		_ = brw.Flush()
		res.copied, _ = c.(io.ReaderFrom).ReadFrom(io.LimitReader(constReader('x'), 5))
		got <- res
	}))
	resp, err := http.Get(ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(body) != "xxxxx" {
		t.Fatalf("body %q, %v; want what ReadFrom copied", body, err)
	}
	r := <-got
	if !r.readerFrom || !r.writerTo {
		t.Errorf("hijacked conn: io.ReaderFrom %v, io.WriterTo %v; want both", r.readerFrom, r.writerTo)
	}
	if _, ok := r.under.(*net.TCPConn); !ok {
		t.Errorf("NetConn() = %T, want *net.TCPConn", r.under)
	}
	if r.deadlineErr != nil {
		t.Errorf("SetDeadline: %v", r.deadlineErr)
	}
	if r.copied != 5 {
		t.Errorf("ReadFrom copied %d bytes, want 5", r.copied)
	}
}

type constReader byte

func (c constReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(c)
	}
	return len(p), nil
}

// WriteTo on a hijacked connection reads it through the connection's own
// WriteTo, and the bytes arrive.
func TestHijackedConnWriteTo(t *testing.T) {
	var s shutdown.Shutdowner
	got := make(chan string, 1)
	ts, _ := serve(t, &s, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, brw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		var sb strings.Builder
		// What the client sends after its request; brw holds none of it
		// yet, as the client waits for the 200 below.
		_, _ = brw.WriteString("HTTP/1.1 200 OK\r\n\r\n")
		_ = brw.Flush()
		_, _ = c.(io.WriterTo).WriteTo(&sb)
		got <- sb.String()
	}))
	conn, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	status, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || status != "HTTP/1.1 200 OK\r\n" {
		t.Fatalf("status %q, %v", status, err)
	}
	_, _ = io.WriteString(conn, "payload")
	_ = conn.(*net.TCPConn).CloseWrite()
	if s := <-got; s != "payload" {
		t.Fatalf("WriteTo read %q, want %q", s, "payload")
	}
	conn.Close()
}
