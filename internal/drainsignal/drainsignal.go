// Package drainsignal lets this module's packages reach what a Shutdowner
// does not export: draining it together with several servers, and
// learning whether a server's requests reach its middleware. It imports the standard
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

// Watch makes s's middleware note, for each of servers, whether a request
// of that server has reached it, for s a *shutdown.Shutdowner. Package
// shutdown sets it as it is initialised.
var Watch func(s any, servers []*http.Server)

// Served reports whether a request of srv, a server given to Watch, has
// reached s's middleware. Package shutdown sets it as it is initialised.
var Served func(s any, srv *http.Server) bool
