// Package drainsignal lets this module's packages reach what a Shutdowner
// does not export: draining it together with several servers. It imports the standard
// library only, so that package shutdown still depends on nothing else.
package drainsignal

import (
	"context"
	"net/http"
)

// Drain is s.ShutdownWithServer for every server of servers at once, none
// of them nil, for s a *shutdown.Shutdowner. Package shutdown sets it as it
// is initialised.
var Drain func(ctx context.Context, s any, servers []*http.Server) error
