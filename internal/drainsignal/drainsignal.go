// Package drainsignal lets this module's packages reach what a Shutdowner
// does not export: waiting for its drain to begin without calling its
// Draining method (application code that calls Draining says its own
// goodbyes, and the Shutdowner then sends none on the handlers' behalf), and
// draining it together with several servers. It imports the standard
// library only, so that package shutdown still depends on nothing else.
package drainsignal

import (
	"context"
	"net/http"
)

// Began returns the channel that s.Draining() returns, for s a
// *shutdown.Shutdowner, without counting as application code that asked.
// Package shutdown sets it as it is initialised.
var Began func(s any) <-chan struct{}

// Drain is s.ShutdownWithServer for every server of servers at once, none
// of them nil, for s a *shutdown.Shutdowner. Package shutdown sets it as it
// is initialised.
var Drain func(ctx context.Context, s any, servers []*http.Server) error
