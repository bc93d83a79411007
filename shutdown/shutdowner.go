package shutdown

import (
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wsshutdown/wsshutdown/internal/drainsignal"
)

// A Shutdowner drains the handlers wrapped by its [Shutdowner.Middleware] and
// the connections they hijack.
//
// The zero value is ready to use, with the defaults of [New]:
//
//	var s shutdown.Shutdowner
//
// All methods are safe for concurrent use. A Shutdowner must not be copied
// after first use, and is not reusable after a drain, like [http.Server]: once
// its drain has begun, its middleware answers every new request with 503.
type Shutdowner struct {
	// Options, set by New before the Shutdowner is shared.
	keepOpen     bool          // WithForceClose(false)
	retryAfter   time.Duration // 0: DefaultRetryAfter; < 0: no header
	stagger      time.Duration // WithStagger
	drainDelay   time.Duration // WithDrainDelay
	goodbye      []byte        // WithGoodbye's close frame; nil: defaultGoodbye
	goodbyeOff   bool          // WithGoodbye(0, ...)
	pendingGrace time.Duration // WithPendingGrace; 0: DefaultPendingGrace, < 0: never

	// state holds drainingBit, the number of running handlers plus
	// tracked connections, and the number of tracked connections above
	// it (hijackedOne): one word, so that a request is either counted
	// before the drain begins or sees the drain and backs out, the count
	// reaching zero during a drain is seen by exactly the atomic
	// operation that made it so, and Stats reads both counts at one
	// instant without a lock.
	state atomic.Int64

	rejected   atomic.Uint64
	forced     atomic.Uint64
	goodbyes   atomic.Uint64
	unwritten  atomic.Uint64
	unanswered atomic.Uint64

	// goodbyeCap, in Unix nanoseconds, is the latest write deadline a
	// goodbye may have once the end game of a drain has begun; zero before.
	goodbyeCap atomic.Int64

	// ownGoodbyes is WithOwnGoodbyes: the application says every
	// goodbye itself, and gets none on its behalf but at a deadline.
	ownGoodbyes bool

	initOnce sync.Once
	notReady chan struct{} // closed when Shutdown is first called
	draining chan struct{} // closed when the drain begins, after the drain delay
	idle     chan struct{} // closed when, draining, state's count reaches zero

	mu sync.Mutex
	// The hijacked connections not yet closed, in shards, so that the
	// thousands of connections a drain closes at once do not queue on
	// one lock to be forgotten (untrack). Added under mu.
	conns     [connShards]connShard
	nextShard atomic.Uint32
	// idleClosed is set once idle is closed, drainBegun once the drain
	// has begun.
	idleClosed, drainBegun atomic.Bool

	// Server connections seen through ConnState and ConnContext
	// (connstate.go, pending.go), changed under serverMu: their states
	// and slots until they are hijacked or closed, and, once a drain is
	// over, that new ones are to be closed.
	serverMu    sync.Mutex
	serverConns serverConns
	closeNew    bool
	hooked      atomic.Bool               // ConnState has been called
	hijacked    []net.Conn                // seen hijacked, not yet forgotten (sweepHijacked)
	configured  map[*http.Server]struct{} // by ConfigureServer

	slotted    atomic.Bool // ConnContext has been called
	graceEnded atomic.Bool // the pending requests have been cancelled
	// The cancellation of the pending requests, once the drain has
	// begun; guarded by mu.
	pendingTimer *time.Timer

	// With a stagger window only, guarded by mu: the requests that asked
	// for their own drain signal and have not ended, and, once the drain
	// has begun, when the window ends.
	signals    map[*requestContext]struct{}
	staggerEnd time.Time

	// The servers watched for their first request (watch.go): watching
	// is set while one has had none; watched, guarded by watchMu, says
	// for each whether it has.
	watching atomic.Bool
	watchMu  sync.Mutex
	watched  map[*http.Server]bool

	// The requests whose responses are event streams, until their
	// handlers return (sse.go); guarded by mu.
	streams map[*requestContext]struct{}

	// ended stands for every request served with its connection's
	// context that has returned (pending.go).
	ended requestContext
}

// drainingBit is set in Shutdowner.state once the drain has begun; the bits
// below hijackedOne count the running handlers and the tracked
// connections, and those from hijackedOne up to drainingBit the tracked
// connections alone.
const (
	drainingBit = 1 << 62
	hijackedOne = 1 << 31
	countMask   = hijackedOne - 1
)

// New returns a Shutdowner configured by opts. Without options it is the same
// as the zero value: force-close on, Retry-After of [DefaultRetryAfter].
func New(opts ...Option) *Shutdowner {
	s := new(Shutdowner)
	for _, opt := range opts {
		opt.apply(s)
	}
	return s
}

func (s *Shutdowner) init() {
	s.initOnce.Do(func() {
		s.notReady = make(chan struct{})
		s.draining = make(chan struct{})
		s.idle = make(chan struct{})
		s.ended.s = s
		s.ended.flags.Store(returnedFlag | connCtxFlag)
	})
}

// Draining returns a channel that is closed the moment the drain begins: when
// [Shutdowner.Shutdown] or [Shutdowner.ShutdownWithServer] is first called,
// or after the delay of [WithDrainDelay]. Every call returns the same
// channel, and calling it changes nothing: a goroutine that waits on it to
// log the drain, or to stop a job, leaves the goodbyes as they were.
//
// Code that owns many connections (a hub) selects on it to say goodbye to
// all of them, and claims those goodbyes with [WithOwnGoodbyes], or for each
// connection with the request's signal, [Draining](ctx), asked before the
// upgrade; a single handler uses its request's signal.
func (s *Shutdowner) Draining() <-chan struct{} {
	s.init()
	return s.draining
}

func init() {
	drainsignal.Drain = func(ctx context.Context, s any, servers []*http.Server) error {
		return s.(*Shutdowner).drain(ctx, servers)
	}
}

// Stats is a snapshot of a [Shutdowner]'s counts, as returned by
// [Shutdowner.Stats].
type Stats struct {
	Active   int    // wrapped handlers running now
	Hijacked int    // connections hijacked through the middleware and not yet closed, whether or not their handler returned
	Rejected uint64 // requests answered 503 because a drain had begun
	Forced   uint64 // hijacked connections closed by the Shutdowner at a deadline
	Goodbyes uint64 // goodbyes sent on the handlers' behalf: websocket close frames and ended event streams
	Draining bool   // a drain has begun

	// Unwritten counts the goodbyes on the handlers' behalf that could
	// not be written within a second, because the peer had stopped
	// reading, or at all, because a failed write had left a websocket
	// inside a frame: the Shutdowner closed those connections at once, and
	// their clients see an abnormal end (1006, or a broken stream).
	Unwritten uint64
	// Unanswered counts the websocket goodbyes, written on the handlers'
	// behalf, whose peers had neither answered nor received them when the
	// Shutdowner closed their connections: at a deadline, or after two
	// seconds in which the peer showed no sign of life (it sent nothing
	// and, on Linux, acknowledged nothing more of what was sent). Those
	// clients may not have read the close frame.
	Unanswered uint64

	// Open counts the server connections, seen through
	// [Shutdowner.ConnState], that are neither idle nor hijacked: a
	// request is being served on them, or none has begun yet (the client
	// has not sent one, or not all of its header). Zero without the hook.
	// It is counted by a look at each connection the hook has seen, since
	// keeping a count would cost every request: Stats takes time in
	// proportion to the server connections open, idle ones included.
	Open int
}

// Stats returns the current counts. Active and Hijacked are taken together, at
// one instant, and Open just after; Rejected, Forced, Goodbyes, Unwritten and
// Unanswered are totals since the Shutdowner was made.
func (s *Shutdowner) Stats() Stats {
	state := s.state.Load()
	hijacked := int(state>>31) & countMask
	return Stats{
		Active:   int(state&countMask) - hijacked,
		Hijacked: hijacked,
		Rejected: s.rejected.Load(),
		Forced:   s.forced.Load(),
		Goodbyes: s.goodbyes.Load(),
		Draining: state&drainingBit != 0,
		Open:     s.openServerConns(-1),

		Unwritten:  s.unwritten.Load(),
		Unanswered: s.unanswered.Load(),
	}
}

// enter counts a request in, unless the drain has begun; it reports whether
// the request was counted.
func (s *Shutdowner) enter() bool {
	if s.state.Load()&drainingBit != 0 {
		return false // the common case during a drain: no write to the shared word
	}
	if s.state.Add(1)&drainingBit != 0 {
		s.exit()
		return false
	}
	return true
}

// exit counts a handler out, and ends the drain when it was the last one.
func (s *Shutdowner) exit() {
	if s.countOut(1) {
		s.closeIdle()
	}
}

// isDraining reports whether the drain has begun.
func (s *Shutdowner) isDraining() bool {
	return s.state.Load()&drainingBit != 0
}

// countOut takes n handlers out of the count and reports whether that
// ended a drain: the caller then closes s.idle.
func (s *Shutdowner) countOut(n int64) bool {
	return s.state.Add(-n) == drainingBit
}

// countOutConns is countOut for n tracked connections.
func (s *Shutdowner) countOutConns(n int64) bool {
	return s.state.Add(-n*(1+hijackedOne)) == drainingBit
}

// closeIdle closes s.idle once.
func (s *Shutdowner) closeIdle() {
	if s.idleClosed.CompareAndSwap(false, true) {
		close(s.idle)
	}
}

// beginDrain closes s.draining, sets drainingBit and schedules the requests'
// drain signals, once. ctx is that of the Shutdown call that begins it.
// s.draining is closed before s.mu is taken, so that the handlers it wakes
// to say their goodbyes, thousands at once, do not wake into a held lock;
// the signals of a stagger window fire only once they are scheduled, after.
func (s *Shutdowner) beginDrain(ctx context.Context) {
	if !s.drainBegun.CompareAndSwap(false, true) {
		return
	}
	close(s.draining)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state.Or(drainingBit) == 0 {
		s.closeIdle()
	}
	s.staggerSignals(ctx)
}
