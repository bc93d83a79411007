package shutdown

import (
	"context"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"
)

// A connection's context from ConnContext behaves as context.WithCancel's
// would: contexts derived from it, as net/http derives its connection's
// and requests' contexts, end when it is cancelled, with
// context.Canceled; a derived context that ended first leaves nothing
// registered; the values are its parent's; and a parent that ends ends
// it, until ConnState has seen the connection close.
func TestConnContextIsAContext(t *testing.T) {
	var s Shutdowner
	conn, peer := net.Pipe()
	defer conn.Close()
	defer peer.Close()
	type key struct{}
	parent, cancelParent := context.WithCancel(context.WithValue(context.Background(), key{}, "v"))
	defer cancelParent()
	ctx := s.ConnContext(parent, conn)
	sl := ctx.(*connSlot)
	if ctx.Value(key{}) != "v" || ctx.Err() != nil {
		t.Fatalf("Value = %v, Err = %v; want the parent's value and nil", ctx.Value(key{}), ctx.Err())
	}
	connCtx, cancelConn := context.WithCancel(ctx) // as net/http's connection context
	reqCtx, cancelReq := context.WithCancel(connCtx)
	defer cancelReq()
	early, cancelEarly := context.WithCancel(ctx)
	cancelEarly() // ends first: its registration goes
	if n := len(sl.after); n != 1 {
		t.Fatalf("%d functions registered, want 1: the one of the context still derived", n)
	}
	sl.cancel()
	select {
	case <-reqCtx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("a request's context did not end with its connection's")
	}
	if !errors.Is(reqCtx.Err(), context.Canceled) || !errors.Is(ctx.Err(), context.Canceled) || early.Err() == nil {
		t.Fatalf("errors %v, %v, %v; want context.Canceled", reqCtx.Err(), ctx.Err(), early.Err())
	}
	select {
	case <-ctx.Done():
	default:
		t.Fatal("Done is open after the cancel")
	}
	cancelConn()
	late, cancelLate := context.WithCancel(ctx) // derived once cancelled: ends at once
	defer cancelLate()
	if late.Err() == nil {
		t.Fatal("a context derived from a cancelled one did not end")
	}
	fired := make(chan struct{})
	context.AfterFunc(ctx, func() { close(fired) })
	select {
	case <-fired:
	case <-time.After(5 * time.Second):
		t.Fatal("AfterFunc on a cancelled context did not call its function")
	}

	// The parent's end ends a slot, until its connection closes.
	conn2, peer2 := net.Pipe()
	defer conn2.Close()
	defer peer2.Close()
	conn3, peer3 := net.Pipe()
	defer conn3.Close()
	defer peer3.Close()
	open, closed := s.ConnContext(parent, conn2), s.ConnContext(parent, conn3)
	s.ConnState(conn3, http.StateNew)
	s.ConnState(conn3, http.StateClosed)
	cancelParent()
	select {
	case <-open.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("a slot did not end with its parent")
	}
	if closed.Err() != nil {
		t.Fatalf("the slot of a closed connection ended with its parent: %v", closed.Err())
	}
}
