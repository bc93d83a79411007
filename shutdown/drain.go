package shutdown

import (
	"context"
	"errors"
	"fmt"
	"net/http"
)

// Shutdown begins the drain, if it has not begun, and waits until no wrapped
// handler runs and no tracked connection is open.
//
// From its first call the [Shutdowner.ReadinessHandler] answers 503. With
// [WithDrainDelay] the Shutdowner then keeps serving normally for the delay,
// so that a load balancer stops sending it traffic, before the drain begins.
// Beginning the drain closes [Shutdowner.Draining] and the requests' drain
// signals (spread over the window of [WithStagger], if set), and from then on
// the middleware answers new requests with 503.
//
// Shutdown returns nil once nothing is left, at once if nothing runs when the
// drain begins, even when ctx has already ended. If ctx ends first, during the
// delay included, Shutdown begins the drain if it has not, closes every drain
// signal still open, closes every tracked hijacked connection (unless
// [WithForceClose](false)) and returns a [*DrainError] with the counts it saw
// at that moment. It does not wait for handlers still running after that:
// net/http owns them. Either way, with the [Shutdowner.ConnState] hook it
// then closes the server connections on which no request has begun.
//
// Shutdown is safe to call concurrently and repeatedly: every call waits on
// the same delay and drain, each until its own ctx ends, and after a
// completed drain Shutdown returns nil at once. The callers share one drain,
// so the first ctx to end force-closes the connections for all of them. It
// panics if ctx is nil.
func (s *Shutdowner) Shutdown(ctx context.Context) error {
	if ctx == nil {
		panic("shutdown: Shutdown called with a nil context")
	}
	s.init()
	s.delay(ctx)
	s.beginDrain(ctx)
	defer s.closeUnstarted()
	select {
	case <-s.idle:
		return nil // first, so that an ended ctx does not hide a finished drain
	default:
	}
	select {
	case <-s.idle:
		return nil
	case <-ctx.Done():
	}
	s.fireAll()
	st := s.Stats()
	if st.Active == 0 && st.Hijacked == 0 {
		return nil // the drain finished as ctx ended
	}
	if !s.keepOpen {
		s.deadlineGoodbyes()
		s.forceClose()
	}
	return &DrainError{Active: st.Active, Hijacked: st.Hijacked, Err: ctx.Err()}
}

// ShutdownWithServer shuts srv down and drains s, and returns [errors.Join]
// of [Shutdowner.Shutdown]'s error and srv.Shutdown's.
//
// srv keeps serving through the drain delay, if any. When the drain begins,
// ShutdownWithServer calls srv.Shutdown, concurrently with the drain, so
// that streaming handlers that srv.Shutdown waits for learn to stop. If ctx
// ends before srv has shut down and force-close is on (the default),
// ShutdownWithServer also calls srv.Close, which closes the connections of
// handlers that are still running, as [Shutdowner.Shutdown] closes the
// hijacked ones.
//
// Requests that arrive once srv.Shutdown has closed its listeners are
// refused by the operating system: a client that connects during the drain
// usually meets a closed port rather than the middleware's 503. Keep serving
// through a drain delay ([WithDrainDelay]) for the time a load balancer needs
// to stop sending traffic.
//
// Set srv.ConnState to [Shutdowner.ConnState]: connections that have not
// sent a request, which browsers open ahead of need, are then closed once
// the drain is over. Without it srv.Shutdown waits five seconds for each,
// and a drain with nothing left runs to a deadline shorter than that.
//
// A nil srv drains the handlers only. The rest of the contract is
// [Shutdowner.Shutdown]'s.
func (s *Shutdowner) ShutdownWithServer(ctx context.Context, srv *http.Server) error {
	if srv == nil {
		return s.Shutdown(ctx)
	}
	if ctx == nil {
		panic("shutdown: ShutdownWithServer called with a nil context")
	}
	srvErr := make(chan error, 1)
	go func() {
		select {
		case <-s.drainBegan():
		case <-ctx.Done():
		}
		srvErr <- srv.Shutdown(ctx)
	}()
	err := s.Shutdown(ctx)
	serr := <-srvErr
	// Closed after the drain has taken its counts, which report the
	// handlers that the close will end.
	if serr != nil && ctx.Err() != nil && !s.keepOpen {
		serr = errors.Join(serr, srv.Close())
	}
	return errors.Join(err, serr)
}

// DrainError is the error of a drain whose context ended before it
// completed.
type DrainError struct {
	Active   int   // wrapped handlers still running when the context ended
	Hijacked int   // hijacked connections still open when the context ended
	Err      error // the context's error
}

// Error states both counts and the context's error.
func (e *DrainError) Error() string {
	return fmt.Sprintf("shutdown: %d %s and %d hijacked %s still open: %v",
		e.Active, plural(e.Active, "handler", "handlers"),
		e.Hijacked, plural(e.Hijacked, "connection", "connections"), e.Err)
}

// Unwrap returns Err, so that errors.Is(err, context.DeadlineExceeded) holds
// for a drain that ran out of time.
func (e *DrainError) Unwrap() error { return e.Err }

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
