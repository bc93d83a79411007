package shutdown

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func (s *Shutdowner) registeredSignals() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.signals)
}

// With a stagger window, a request's own signal is forgotten when the request
// ends: when its handler returns, or when the connection it hijacked is
// closed. A server that runs for months does not accumulate them.
func TestSignalsAreForgottenWhenRequestsEnd(t *testing.T) {
	s := New(WithStagger(time.Second))
	hijacked := make(chan net.Conn, 1)
	ts := httptest.NewServer(s.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if Draining(r.Context()) == nil {
			t.Error("no drain signal")
		}
		if r.URL.Path == "/hijack" {
			c, _, err := w.(http.Hijacker).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			hijacked <- c
		}
	})))
	defer ts.Close()

	for range 100 {
		resp, err := http.Get(ts.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if n := s.registeredSignals(); n != 0 {
		t.Fatalf("%d signals registered after 100 requests ended", n)
	}

	client, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if _, err := client.Write([]byte("GET /hijack HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	c := <-hijacked
	// The handler has returned; its connection lives on, and so does its
	// signal, for the goroutines that own the connection.
	for deadline := time.Now().Add(10 * time.Second); s.Stats().Active != 0; {
		if time.Now().After(deadline) {
			t.Fatal("the hijacking handler did not return")
		}
		time.Sleep(time.Millisecond) // the handler's return is not announced
	}
	if n := s.registeredSignals(); n != 1 {
		t.Fatalf("%d signals registered after the hijacking handler returned, want 1", n)
	}
	c.Close()
	if n := s.registeredSignals(); n != 0 {
		t.Fatalf("%d signals registered after the hijacked connection closed", n)
	}
	_, _ = bufio.NewReader(client).ReadByte() // the close reaches the client
}

// A request that first asks for its signal after it has ended registers
// nothing: its handler returned without hijacking, or the connection it
// hijacked was closed (the write pump of a chat connection whose read pump
// closed it). It gets Draining(), which still closes when the drain begins.
func TestSignalAskedAfterTheRequestEnded(t *testing.T) {
	s := New(WithStagger(time.Second))
	var ctx context.Context
	hijackCtx := make(chan context.Context, 1)
	h := s.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx = r.Context()
		if r.URL.Path != "/hijack" {
			return
		}
		hijackCtx <- r.Context()
		c, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		c.Close()
	}))
	for range 1000 {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil))
		if Draining(ctx) != s.Draining() {
			t.Fatal("a request that had ended got a signal of its own")
		}
	}
	if n := s.registeredSignals(); n != 0 {
		t.Fatalf("%d signals registered by 1,000 requests that asked after they ended", n)
	}

	ts := httptest.NewServer(h)
	defer ts.Close()
	client, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if _, err := client.Write([]byte("GET /hijack HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := bufio.NewReader(client).ReadByte(); err == nil {
		t.Fatal("the hijacked connection was not closed")
	}
	// The conn was closed before ReadByte returned; the handler may still
	// be returning, which ends nothing more.
	if Draining(<-hijackCtx) != s.Draining() {
		t.Fatal("a request whose hijacked connection was closed got a signal of its own")
	}
	if n := s.registeredSignals(); n != 0 {
		t.Fatalf("%d signals registered after the hijacked connection was closed", n)
	}
}
