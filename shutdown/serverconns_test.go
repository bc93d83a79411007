package shutdown

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// The set of server connections finds each kind of connection net/http
// may be given, makes an entry once, lists and forgets them.
func TestServerConns(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dialed, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer dialed.Close()
	accepted, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer accepted.Close()
	pipe, peer := net.Pipe()
	defer pipe.Close()
	defer peer.Close()
	conns := []net.Conn{accepted, tls.Server(dialed, &tls.Config{}), pipe, valueConn{pipe, 1}, valueConn{pipe, 2}}

	var m serverConns
	for _, c := range conns {
		if m.get(c) != nil {
			t.Fatalf("%T found before it was added", c)
		}
		sc := m.of(c)
		if m.get(c) != sc || sc.c != c || m.of(c) != sc {
			t.Fatalf("%T: get gave %p, want %p, for the connection", c, m.get(c), sc)
		}
	}
	if m.len() != len(conns) {
		t.Fatalf("len = %d, want %d", m.len(), len(conns))
	}
	listed := map[net.Conn]bool{}
	for sc := range m.all() {
		listed[sc.c] = true
		m.remove(sc.c) // as closeUnstarted does while it lists
	}
	for _, c := range conns {
		if !listed[c] {
			t.Errorf("%T not listed", c)
		}
		if m.get(c) != nil {
			t.Errorf("%T still found once removed", c)
		}
	}
	if m.len() != 0 {
		t.Fatalf("len = %d once all were removed, want 0", m.len())
	}
}

// valueConn is a connection of a type that is not a pointer, as a
// listener of an application's may return: its interface value points to
// a copy, which net/http passes to the hooks each time.
type valueConn struct {
	net.Conn
	id int
}

// Entries made and forgotten by the thousand, through the table's growth
// and its tombstones, are found exactly while they are in it, and gets
// without the lock see a consistent table while it changes (go test
// -race).
func TestServerConnsGrowAndForget(t *testing.T) {
	conns := make([]net.Conn, 3000)
	for i := range conns {
		conns[i] = &net.TCPConn{} // only its pointer is looked at
	}
	var (
		m  serverConns
		mu sync.Mutex // the Shutdowner's serverMu
	)
	// Readers look up entries they know are in, as a connection's
	// goroutine does its own, while the writer changes the rest.
	const readers = 4
	resident := conns[:readers]
	for _, c := range resident {
		m.of(c)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	for _, c := range resident {
		want := m.get(c)
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				if got := m.get(c); got != want {
					t.Errorf("resident entry: got %p, want %p", got, want)
					return
				}
			}
		})
	}
	rest := conns[readers:]
	for round := range 3 {
		for i, c := range rest {
			mu.Lock()
			m.of(c)
			if i%3 == round { // forget a third at once, leaving tombstones
				m.remove(c)
			}
			mu.Unlock()
		}
		for i, c := range rest {
			if found := m.get(c) != nil; found != (i%3 != round) {
				t.Fatalf("round %d, entry %d: found %v", round, i, found)
			}
		}
		mu.Lock()
		for _, c := range rest {
			m.remove(c)
		}
		mu.Unlock()
		if m.len() != readers {
			t.Fatalf("round %d: len = %d once the rest were removed, want %d", round, m.len(), readers)
		}
	}
	close(done)
	wg.Wait()
	if n := len(m.table.Load().slots); n > 8192 {
		t.Errorf("the table has %d slots for at most %d entries", n, len(conns))
	}
}

// closedPipe reports whether c, one end of a net.Pipe whose other end is
// open, has been closed.
func closedPipe(c net.Conn) bool {
	return errors.Is(c.SetReadDeadline(time.Time{}), io.ErrClosedPipe)
}

// The end of a drain closes the connections on which no request has begun,
// as requests begin on others without a lock: a connection is closed, and
// forgotten, exactly when its first request had not begun when the drain
// looked; the others stay, and count in Stats().Open while a request runs
// on them. Run it with -race, and -count for the interleavings.
func TestCloseUnstartedWhileRequestsBegin(t *testing.T) {
	const n = 300 // a third never begins, a third has begun, a third races
	var s Shutdowner
	conns := make([]net.Conn, n)
	for i := range conns {
		c, peer := net.Pipe()
		defer c.Close()
		defer peer.Close()
		conns[i] = c
		s.ConnState(c, http.StateNew)
	}
	for _, c := range conns[n/3 : 2*n/3] {
		s.ConnState(c, http.StateActive)
	}
	if got := s.Stats().Open; got != n {
		t.Fatalf("Open = %d with every connection new or active, want %d", got, n)
	}
	var wg sync.WaitGroup
	for _, c := range conns[2*n/3:] {
		wg.Go(func() {
			s.ConnState(c, http.StateActive)
			s.ConnState(c, http.StateIdle)
			s.ConnState(c, http.StateActive)
		})
	}
	s.closeUnstarted()
	wg.Wait()
	open := 0
	for i, c := range conns {
		closed, found := closedPipe(c), s.serverConns.get(c) != nil
		switch {
		case i < n/3 && (!closed || found):
			t.Errorf("connection %d, never begun: closed %v, still known %v", i, closed, found)
		case i >= n/3 && i < 2*n/3 && (closed || !found):
			t.Errorf("connection %d, begun: closed %v, still known %v", i, closed, found)
		case closed == found:
			t.Errorf("connection %d, racing: closed %v and still known %v", i, closed, found)
		}
		if found {
			open++
		}
	}
	if got := s.Stats().Open; got != open {
		t.Errorf("Open = %d, want the %d connections left, each active", got, open)
	}
	for _, c := range conns {
		s.ConnState(c, http.StateIdle)
	}
	if got := s.Stats().Open; got != 0 {
		t.Errorf("Open = %d once every connection left is idle, want 0", got)
	}
	for _, c := range conns {
		s.ConnState(c, http.StateClosed)
	}
	if got := s.serverConns.len(); got != 0 {
		t.Errorf("%d connections still known once all have closed", got)
	}
}
