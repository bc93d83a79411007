package shutdown

import (
	"context"
	"errors"
	"net"
	"net/http"
	"runtime"
	"testing"
	"time"
)

// A connection's context from ConnContext behaves as context.WithCancel's:
// contexts derived from it as net/http derives its connection's (through
// a context.WithValue) and its requests' end when it is cancelled, with
// context.Canceled, and its values are its parent's. Deriving them costs
// no goroutine: a context of the Shutdowner's own making that the context
// package could not register with would cost one a connection, which no
// heap measure sees.
func TestConnContextIsAContext(t *testing.T) {
	var s Shutdowner
	type key struct{}
	parent := context.WithValue(context.Background(), key{}, "v")
	const n = 100
	slots := make([]*connSlot, n)
	reqs := make([]context.Context, n)
	before := runtime.NumGoroutine()
	for i := range n {
		conn, peer := net.Pipe()
		defer conn.Close()
		defer peer.Close()
		ctx := s.ConnContext(parent, conn)
		slots[i] = ctx.(*connSlot)
		// As net/http's conn.serve and readRequest derive theirs.
		connCtx, cancelConn := context.WithCancel(context.WithValue(ctx, http.LocalAddrContextKey, conn.LocalAddr()))
		defer cancelConn()
		var cancelReq context.CancelFunc
		reqs[i], cancelReq = context.WithCancel(connCtx)
		defer cancelReq()
		s.ConnState(conn, http.StateNew)
	}
	if grown := runtime.NumGoroutine() - before; grown > 0 {
		t.Fatalf("%d goroutines for %d connections' contexts, want none", grown, n)
	}
	if v := reqs[0].Value(key{}); v != "v" || reqs[0].Err() != nil {
		t.Fatalf("Value = %v, Err = %v; want the parent's value and nil", v, reqs[0].Err())
	}
	slots[0].cancel()
	select {
	case <-reqs[0].Done():
	case <-time.After(5 * time.Second):
		t.Fatal("a request's context did not end with its connection's")
	}
	if err := reqs[0].Err(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Err = %v, want context.Canceled", err)
	}
	if reqs[1].Err() != nil {
		t.Fatal("another connection's request ended with the first's")
	}
}
