package shutdown

import (
	"crypto/tls"
	"net"
	"testing"
)

// The set of server connections keys net/http's own connection types by
// their pointers and any other by the interface: each kind is found, made
// once, listed and forgotten, apart from the others.
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
	conns := []net.Conn{accepted, tls.Server(dialed, &tls.Config{}), pipe}

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
