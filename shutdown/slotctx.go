package shutdown

import (
	"context"
	"slices"
	"time"
)

// A connSlot is a context.Context with a cancellation of its own, written
// out rather than taken from context.WithCancel. The cancelCtx that would
// make, and the map in which it keeps the one context derived from it
// (net/http's connection context), cost about 330 bytes a connection,
// every connection of a hooked server; here the derived context is
// registered through AfterFunc, which the context package calls on a
// parent that has it, for about 50 (BenchmarkConnMemory).

// Deadline returns the parent's.
func (sl *connSlot) Deadline() (time.Time, bool) { return sl.parent.Deadline() }

// Done returns a channel closed once sl is cancelled, made when first
// asked for.
func (sl *connSlot) Done() <-chan struct{} {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	if sl.done == nil {
		sl.done = make(chan struct{})
		if sl.err != nil {
			close(sl.done)
		}
	}
	return sl.done
}

// Err returns context.Canceled once sl is cancelled, or its parent's
// error if the parent ended first; nil before.
func (sl *connSlot) Err() error {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	return sl.err
}

// AfterFunc arranges for f to be called once sl is cancelled, at once (in
// a goroutine of its own) if it is already, as context.AfterFunc does;
// stop keeps it from being called. The context package calls it for a
// context derived from sl, with a function that cancels that context.
func (sl *connSlot) AfterFunc(f func()) (stop func() bool) {
	sl.mu.Lock()
	if sl.err != nil {
		sl.mu.Unlock()
		go f()
		return func() bool { return false }
	}
	a := &slotAfter{sl: sl, f: f}
	sl.after = append(sl.after, a)
	sl.mu.Unlock()
	return a.stop
}

// slotAfter is a function to call once its slot is cancelled.
type slotAfter struct {
	sl *connSlot
	f  func()
}

// stop keeps a.f from being called, and reports whether it did.
func (a *slotAfter) stop() bool {
	sl := a.sl
	sl.mu.Lock()
	defer sl.mu.Unlock()
	i := slices.Index(sl.after, a)
	if i < 0 {
		return false
	}
	sl.after = slices.Delete(sl.after, i, i+1)
	return true
}

// cancel cancels sl, and so every context derived from it: its
// connection's requests. It may be called any number of times.
func (sl *connSlot) cancel() { sl.end(context.Canceled) }

// end ends sl with err, once, and calls the functions of AfterFunc. They
// run in the caller's goroutine: the context package's cancel a derived
// context, as a cancelCtx cancels its children.
func (sl *connSlot) end(err error) {
	sl.mu.Lock()
	if sl.err != nil {
		sl.mu.Unlock()
		return
	}
	sl.err = err
	if sl.done != nil {
		close(sl.done)
	}
	after := sl.after
	sl.after = nil
	sl.mu.Unlock()
	for _, a := range after {
		a.f()
	}
}
