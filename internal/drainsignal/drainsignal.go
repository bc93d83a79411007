// Package drainsignal lets this module's packages wait for a Shutdowner's
// drain to begin without calling its Draining method: application code that
// calls Draining says its own goodbyes, and the Shutdowner then sends none
// on the handlers' behalf. It imports nothing, so that package shutdown
// still depends on the standard library alone.
package drainsignal

// Began returns the channel that s.Draining() returns, for s a
// *shutdown.Shutdowner, without counting as application code that asked.
// Package shutdown sets it as it is initialised.
var Began func(s any) <-chan struct{}
