package shutdown

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
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
// drain begins, even when ctx has already ended. If the time runs out first,
// during the delay included, Shutdown begins the drain if it has not, closes
// every drain signal still open, closes every tracked hijacked connection
// (unless [WithForceClose](false)) and returns a [*DrainError] with the counts
// it saw at that moment. The time runs out when ctx ends or, if ctx has a
// deadline, shortly before it: early enough to close what is left by the
// deadline (the end game: 50 ms and 100 µs for each connection left, at most
// three quarters of the time left when the drain began), so that Shutdown returns by
// then whatever the peers do. It does not wait for handlers still running
// after that: net/http owns them. Either way, with the [Shutdowner.ConnState]
// hook it then closes the server connections on which no request has begun.
//
// A drain whose handlers all finished still returns a [*DrainError], with a
// nil Err, when goodbyes said on the handlers' behalf could not be written
// (Unwritten): their clients saw their connections end without one.
//
// Shutdown is safe to call concurrently and repeatedly: every call waits on
// the same delay and drain, each until its own time runs out, and after a
// completed drain Shutdown returns nil at once. The callers share one drain,
// so the first whose time runs out force-closes the connections for all of
// them. It panics if ctx is nil.
func (s *Shutdowner) Shutdown(ctx context.Context) error {
	if ctx == nil {
		panic("shutdown: Shutdown called with a nil context")
	}
	return s.drain(ctx, nil)
}

// ShutdownWithServer shuts srv down and drains s, and returns [errors.Join]
// of [Shutdowner.Shutdown]'s error and the errors of srv.Shutdown and
// srv.Close other than the end of ctx.
//
// srv keeps serving through the drain delay, if any. When the drain begins,
// ShutdownWithServer calls srv.Shutdown, concurrently with the drain, so
// that streaming handlers that srv.Shutdown waits for learn to stop. It
// returns once both are done. If the time runs out before srv has shut down
// and force-close is on (the default), ShutdownWithServer calls srv.Close
// in the end game, which closes the connections of handlers that are still
// running, as [Shutdowner.Shutdown] closes the hijacked ones, and the
// [*DrainError] counts srv in Servers.
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
// and a drain with nothing left runs to a deadline shorter than that. With
// it, once the handlers have finished and the hook sees no connection but
// idle ones, ShutdownWithServer closes srv (which closes those) rather than
// wait up to half a second for srv.Shutdown to look again.
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
	return s.drain(ctx, []*http.Server{srv})
}

// Closing what is left at the end of a drain takes time: endGameBase for
// the deadline's goodbyes (deadlineGoodbyeTimeout), and about 20 µs for each
// connection on two idle cores, with its goodbye (BenchmarkForceClose).
// endGameCost leaves room for a machine five times as busy, so that the end
// game that begins endGameReserve before a deadline is over by then.
const (
	endGameBase = deadlineGoodbyeTimeout
	endGameCost = 100 * time.Microsecond
)

// endGameReserve returns how long before its deadline a drain that has
// left of its time, with st's counts, begins its end game: endGameBase and
// endGameCost for each connection to close, at most three quarters of left,
// so that the drain always waits a quarter of its time.
func endGameReserve(left time.Duration, st Stats) time.Duration {
	return max(min(endGameBase+time.Duration(closable(st))*endGameCost, left/4*3), 0)
}

// closable returns how many connections an end game with st's counts has
// to close, each counted once: the hijacked ones, and the server
// connections with a request in progress or none begun (Open), or, without
// the ConnState hook, the running handlers that did not hijack.
func closable(st Stats) int {
	return st.Hijacked + max(st.Active-st.Hijacked, st.Open, 0)
}

// drain is Shutdown, with servers shut down alongside as by
// ShutdownWithServer. servers have no nil entry.
func (s *Shutdowner) drain(ctx context.Context, servers []*http.Server) error {
	s.init()
	s.delay(ctx)
	s.beginDrain(ctx)
	defer s.closeUnstarted()
	before := s.lost()

	// The time runs out at the end game's moment, which ctx's deadline
	// sets, or when ctx ends.
	var endGame <-chan time.Time
	deadline, hasDeadline := ctx.Deadline()
	if hasDeadline && !s.keepOpen {
		left := time.Until(deadline)
		t := time.NewTimer(left - endGameReserve(left, s.Stats()))
		defer t.Stop()
		endGame = t.C
	}
	srvs := shutDown(ctx, servers)
	defer srvs.end()
	idle := s.idle
	var poll <-chan time.Time
	drained := func() {
		idle = nil
		s.closeUnstarted() // which the servers' Shutdown waits for
		if srvs.busy() > 0 {
			t := time.NewTicker(serverPoll)
			srvs.stopPoll = t.Stop
			poll = t.C
		}
	}
	select {
	case <-idle:
		drained() // first, so that an ended ctx does not hide a finished drain
	default:
	}
	var timeUp error
	for timeUp == nil && (idle != nil || srvs.busy() > 0) {
		select {
		case <-idle:
			drained()
		case r := <-srvs.results:
			srvs.got(r)
		case <-poll:
			srvs.poll(s)
		case <-ctx.Done():
			timeUp = ctx.Err()
		case <-endGame:
			timeUp = context.DeadlineExceeded
		}
	}
	if timeUp == nil {
		return errors.Join(append([]error{s.lostGoodbyes(before)}, srvs.errs...)...)
	}

	s.fireAll()
	s.graceOver() // pending handlers may yet answer 503, and streams UNAVAILABLE, before the force-close
	st := s.Stats()
	left := &DrainError{Active: st.Active, Hijacked: st.Hijacked, Open: st.Open, Err: timeUp}
	if s.keepOpen {
		s.forceClose(false) // the lingering closes are the Shutdowner's own
	} else {
		s.deadlineGoodbyes(endGameDeadline(deadline, hasDeadline, st))
		s.forceClose(true)
	}
	left.Servers = srvs.finish(s, !s.keepOpen)
	now := s.lost()
	left.Unwritten = int(now.unwritten - before.unwritten)
	left.Unanswered = int(now.unanswered - before.unanswered)
	if left.Active == 0 && left.Hijacked == 0 && left.Servers == 0 {
		// The drain finished as the time ran out.
		return errors.Join(append([]error{s.lostGoodbyes(before)}, srvs.errs...)...)
	}
	return errors.Join(append([]error{left}, srvs.errs...)...)
}

// serverPoll is how often a drain whose handlers have finished looks
// whether the servers still shutting down are done: net/http's Shutdown
// looks itself at intervals that grow to half a second, which would
// otherwise keep the drain waiting that long after the last handler.
const serverPoll = 5 * time.Millisecond

// serversDown is the servers of a drain, shutting down alongside it.
type serversDown struct {
	servers  []*http.Server
	down     []bool // shut down
	running  int    // Shutdown calls that have not returned
	results  chan serverResult
	ctx      context.Context // the Shutdown calls', ended by the end game
	cancel   context.CancelFunc
	stopPoll func()
	errs     []error // other than the end of ctx: a listener's, say
}

type serverResult struct {
	i   int
	err error
}

// shutDown calls the Shutdown of every server of servers under ctx.
func shutDown(ctx context.Context, servers []*http.Server) *serversDown {
	d := &serversDown{
		servers: servers,
		down:    make([]bool, len(servers)),
		running: len(servers),
		results: make(chan serverResult, len(servers)),
	}
	d.ctx, d.cancel = context.WithCancel(ctx)
	for i, srv := range servers {
		go func() { d.results <- serverResult{i, srv.Shutdown(d.ctx)} }()
	}
	return d
}

// end ends the Shutdown calls still running, which return at once.
func (d *serversDown) end() {
	d.cancel()
	if d.stopPoll != nil {
		d.stopPoll()
	}
}

// got takes in the result of a server's Shutdown.
func (d *serversDown) got(r serverResult) {
	d.running--
	if d.ctx.Err() != nil && errors.Is(r.err, d.ctx.Err()) {
		return // still busy when the time ran out
	}
	d.down[r.i] = true
	if r.err != nil {
		d.errs = append(d.errs, r.err)
	}
}

// busy returns how many servers have not shut down.
func (d *serversDown) busy() int {
	n := 0
	for _, down := range d.down {
		if !down {
			n++
		}
	}
	return n
}

// poll looks, through s's ConnState hook, whether the servers have any
// connection left but idle ones; if none, the servers are done, and Close
// closes the idle ones, as their Shutdown would at its next look (its
// error is about listeners that Shutdown has closed already). Without the
// hook nothing is known, and only Shutdown tells.
func (d *serversDown) poll(s *Shutdowner) {
	if !s.hooked.Load() || s.openServerConns(1) > 0 {
		return
	}
	for i, srv := range d.servers {
		if !d.down[i] {
			d.down[i] = true
			_ = srv.Close()
		}
	}
}

// finish ends the Shutdown calls when the time has run out, closes the
// servers that have still not shut down if closeBusy is set, and returns
// how many there were.
func (d *serversDown) finish(s *Shutdowner, closeBusy bool) int {
	d.end()
	for d.running > 0 {
		d.got(<-d.results)
	}
	if closeBusy {
		d.poll(s)
	}
	busy := 0
	for i, srv := range d.servers {
		if d.down[i] {
			continue
		}
		busy++
		if closeBusy {
			d.errs = append(d.errs, srv.Close())
		}
	}
	return busy
}

// endGameDeadline returns the deadline of the end game's goodbyes, which
// begins now with st's counts: deadlineGoodbyeTimeout and
// deadlineGoodbyeCost for each connection or, under a deadline that leaves
// less than the end game's reserve, the goodbyes' share of what is left,
// so that the closes still fit before it.
func endGameDeadline(deadline time.Time, hasDeadline bool, st Stats) time.Time {
	conns := time.Duration(closable(st))
	now := time.Now()
	d := deadlineGoodbyeTimeout + conns*deadlineGoodbyeCost
	if hasDeadline {
		share := float64(d) / float64(endGameBase+conns*endGameCost)
		d = min(d, time.Duration(float64(deadline.Sub(now))*share))
	}
	// A floor past the deadline, when little or nothing is left of it:
	// goodbyes that are not blocked take microseconds.
	return now.Add(max(d, deadlineGoodbyeFloor))
}

// deadlineGoodbyeFloor is the least time the end game's goodbyes get.
const deadlineGoodbyeFloor = 10 * time.Millisecond

// lostGoodbyes returns the error of a drain that completed, nil unless
// goodbyes on the handlers' behalf could not be written since before, or
// went unanswered.
func (s *Shutdowner) lostGoodbyes(before lost) error {
	now := s.lost()
	if now == before {
		return nil
	}
	return &DrainError{Unwritten: int(now.unwritten - before.unwritten), Unanswered: int(now.unanswered - before.unanswered)}
}

// lost is the counts of goodbyes that did not reach their peers.
type lost struct{ unwritten, unanswered uint64 }

func (s *Shutdowner) lost() lost { return lost{s.unwritten.Load(), s.unanswered.Load()} }

// DrainError is the error of a drain whose time ran out before it
// completed, or that completed but could not say every goodbye on the
// handlers' behalf.
type DrainError struct {
	Active   int // wrapped handlers still running when the time ran out
	Hijacked int // hijacked connections still open when the time ran out
	// Open is the server connections, seen through [Shutdowner.ConnState],
	// that were neither idle nor hijacked when the time ran out: zero
	// without the hook.
	Open int
	// Servers is the servers of [Shutdowner.ShutdownWithServer] that had
	// not shut down when the time ran out, and were closed.
	Servers int
	// Unwritten and Unanswered are the goodbyes of [Stats] of the same
	// names: those that could not be written, and those written but not
	// answered before their connections were closed at the deadline.
	Unwritten  int
	Unanswered int
	// Err is the context's error, or context.DeadlineExceeded when the
	// end game began before a deadline; nil for a drain that completed.
	Err error
}

// Error states the counts and the context's error.
func (e *DrainError) Error() string {
	var b strings.Builder
	b.WriteString("shutdown: ")
	if e.Err == nil {
		b.WriteString("drained")
	} else {
		fmt.Fprintf(&b, "%d %s and %d hijacked %s still open",
			e.Active, plural(e.Active, "handler", "handlers"),
			e.Hijacked, plural(e.Hijacked, "connection", "connections"))
	}
	if e.Servers > 0 {
		fmt.Fprintf(&b, ", %d %s not shut down", e.Servers, plural(e.Servers, "server", "servers"))
		if e.Open > 0 {
			fmt.Fprintf(&b, " (%d busy %s)", e.Open, plural(e.Open, "connection", "connections"))
		}
	}
	if e.Unwritten > 0 {
		fmt.Fprintf(&b, ", %d %s not written (the %s stopped reading)", e.Unwritten,
			plural(e.Unwritten, "goodbye", "goodbyes"), plural(e.Unwritten, "peer", "peers"))
	}
	if e.Unanswered > 0 {
		fmt.Fprintf(&b, ", %d %s unanswered", e.Unanswered, plural(e.Unanswered, "goodbye", "goodbyes"))
	}
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	return b.String()
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
