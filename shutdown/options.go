package shutdown

import "time"

// DefaultRetryAfter is the Retry-After that a [Shutdowner] sends with the 503
// responses of a drain unless [WithRetryAfter] sets another.
const DefaultRetryAfter = 5 * time.Second

// An Option configures a [Shutdowner] made by [New].
type Option interface {
	apply(*Shutdowner)
}

type optionFunc func(*Shutdowner)

func (f optionFunc) apply(s *Shutdowner) { f(s) }

// WithForceClose sets whether [Shutdowner.Shutdown] closes the hijacked
// connections still open when its context ends. The default is true: a drain
// then ends at its deadline, and the peers see their connections closed.
// With false the connections stay open, are reported in the [DrainError],
// and remain the caller's to close, but for those whose owner closed them
// after a goodbye on its behalf and that still wait for their peer's
// answer: the Shutdowner closes those.
func WithForceClose(enabled bool) Option {
	return optionFunc(func(s *Shutdowner) { s.keepOpen = !enabled })
}

// WithRetryAfter sets the Retry-After header of the 503 responses sent to
// requests that arrive during a drain, rounded up to whole seconds. The
// default is [DefaultRetryAfter]; d <= 0 sends no Retry-After.
func WithRetryAfter(d time.Duration) Option {
	if d <= 0 {
		d = -1 // zero in the Shutdowner means the default
	}
	return optionFunc(func(s *Shutdowner) { s.retryAfter = d })
}

// WithStagger spreads the requests' drain signals, those that [Draining]
// returns, over window: when the drain begins they are closed one by one in
// random order, evenly over the window, so that thousands of clients told to
// reconnect do not all reconnect at once. [Shutdowner.Draining] still closes
// at the start, for code that owns many connections and paces itself.
//
// The window is shortened to end by half of the time left on the context of
// the Shutdown call that begins the drain, so that the goodbyes have time to
// complete before any force-close. A request that first asks for its signal
// during the window gets a random moment in what is left of it. Zero, the
// default, closes every signal as the drain begins.
func WithStagger(window time.Duration) Option {
	return optionFunc(func(s *Shutdowner) { s.stagger = max(window, 0) })
}

// WithDrainDelay makes [Shutdowner.Shutdown] report not-ready through
// [Shutdowner.ReadinessHandler] and keep serving normally for d before the
// drain begins: the time a load balancer needs to stop sending new traffic.
// The delay counts against Shutdown's context. Zero, the default, drains at
// once.
func WithDrainDelay(d time.Duration) Option {
	return optionFunc(func(s *Shutdowner) { s.drainDelay = max(d, 0) })
}

// WithGoodbye sets the websocket close code and reason that the Shutdowner
// sends on a handler's behalf. The default is [DefaultGoodbyeCode] (1001,
// Going Away) with [DefaultGoodbyeReason].
//
// A handler that has not asked for its drain signal ([Draining] for its
// request) when the signal fires gets a goodbye then, unless
// [WithOwnGoodbyes] is set. On a websocket it is the
// close frame, written at the next frame boundary, never inside a frame;
// the Shutdowner then waits for the peer's close and closes the connection.
// On an event stream it is a retry field at the next event boundary, after
// which the request's context is cancelled (see [LetFinish]). At a deadline,
// every websocket that has had no close frame gets one before it is closed,
// whether or not its handler asked. Once the goodbye is sent, the handler's
// writes return [ErrGoodbyeSent].
//
// A handler that sends its own close frame keeps it. To say its own
// goodbye, a handler asks first, before it upgrades or writes its header:
// one that first asks once the drain has begun may find the goodbye already
// said.
//
// Code 0 turns goodbyes on the handlers' behalf off: a handler that ignores
// the drain has its connection closed at the deadline without a close
// frame, and its stream cut. WithGoodbye panics on a code that RFC 6455 does
// not allow in a close frame (1004 to 1006, 1015, below 1000, 1016 to 2999,
// 5000 and above) and on a reason longer than 123 bytes or not UTF-8.
func WithGoodbye(code int, reason string) Option {
	if code == 0 {
		return optionFunc(func(s *Shutdowner) { s.goodbyeOff, s.goodbye = true, nil })
	}
	frame := closeFrame(code, reason)
	return optionFunc(func(s *Shutdowner) { s.goodbyeOff, s.goodbye = false, frame })
}

// WithOwnGoodbyes tells the Shutdowner that the application says every
// goodbye itself, as a hub that selects on [Shutdowner.Draining] and
// writes to all its connections does: the Shutdowner sends none on the
// handlers' behalf when their signals fire, only at a deadline, to the
// websockets that still have had no close frame (see [WithGoodbye]).
// Without it a handler claims its own goodbye by asking for its request's
// signal, [Draining], before it upgrades or writes its header.
func WithOwnGoodbyes() Option {
	return optionFunc(func(s *Shutdowner) { s.ownGoodbyes = true })
}
