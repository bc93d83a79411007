package shutdown_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/wsshutdown/wsshutdown/shutdown"
)

// stuckTLSServer serves, on a TLS server, a handler that hijacks its
// connection, writes until its peer's buffers are full (the peer never
// reads) and then waits for the peer, ignoring the drain: the connection a
// *tls.Conn's Close would wait on for five seconds to send close_notify.
// stuck receives once each connection is in that state.
func stuckTLSServer(t testing.TB, s *shutdown.Shutdowner, stuck chan<- struct{}) *httptest.Server {
	t.Helper()
	ts := httptest.NewTLSServer(s.Middleware(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		c, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		tcp := c.(interface{ NetConn() net.Conn }).NetConn().(*tls.Conn).NetConn().(*net.TCPConn)
		_ = tcp.SetWriteBuffer(4096) // full sooner
		chunk := make([]byte, 16<<10)
		for {
			_ = c.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
			if _, err := c.Write(chunk); err != nil {
				break // full: the peer does not read
			}
		}
		stuck <- struct{}{}
		_, _ = c.Read(make([]byte, 1)) // until the connection is closed
	})))
	t.Cleanup(ts.Close)
	return ts
}

// dialStuck opens a TLS connection to ts, sends a request and never reads.
func dialStuck(t testing.TB, ts *httptest.Server) net.Conn {
	t.Helper()
	raw, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_ = raw.(*net.TCPConn).SetReadBuffer(4096)
	config := ts.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	config.ServerName = "example.com" // in httptest's certificate
	c := tls.Client(raw, config)
	if _, err := fmt.Fprint(c, "GET /stuck HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// At the deadline, TLS connections whose peers stopped reading are closed
// within the deadline, all of them, in Shutdown and ShutdownWithServer.
func TestForceCloseTLSPeersThatStoppedReading(t *testing.T) {
	for _, n := range []int{4, 100} {
		for _, withServer := range []bool{false, true} {
			t.Run(fmt.Sprintf("%d/server=%v", n, withServer), func(t *testing.T) {
				var s shutdown.Shutdowner
				stuck := make(chan struct{}, n)
				ts := stuckTLSServer(t, &s, stuck)
				for range n {
					dialStuck(t, ts)
				}
				for range n {
					<-stuck
				}
				const budget = time.Second
				ctx, cancel := context.WithTimeout(context.Background(), budget)
				defer cancel()
				start := time.Now()
				var err error
				if withServer {
					err = s.ShutdownWithServer(ctx, ts.Config)
				} else {
					err = s.Shutdown(ctx)
				}
				took := time.Since(start)
				var de *shutdown.DrainError
				if !errors.As(err, &de) || de.Hijacked != n {
					t.Fatalf("err = %v, want a DrainError with %d hijacked connections", err, n)
				}
				if took > budget+200*time.Millisecond {
					t.Fatalf("returned after %v with a %v context", took, budget)
				}
				if got := s.Stats(); got.Forced != uint64(n) || got.Hijacked != 0 {
					t.Fatalf("Stats() = %+v, want %d forced and none left", got, n)
				}
			})
		}
	}
}
