package shutdown

import (
	"crypto/tls"
	"net"
	"sync"
	"testing"
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
