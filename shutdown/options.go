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
// and remain the caller's to close.
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
