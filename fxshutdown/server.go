package fxshutdown

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"reflect"
	"runtime"
	"strings"

	"go.uber.org/fx"
)

// A Server is an *http.Server with a listener of its own: a unix socket, or
// one handed over by systemd's socket activation. A constructor given to
// [AsServer] may return a Server where it would return an *http.Server; the
// module then serves HTTP on what Listen returns, and drains it like any
// other server.
type Server struct {
	// HTTP is the server. It must not be nil.
	HTTP *http.Server

	// Listen opens the listener, once, when the application starts; an
	// error fails the start. Nil listens on HTTP.Addr over TCP, as for an
	// *http.Server. The module closes the listener when the server shuts
	// down.
	Listen func(ctx context.Context) (net.Listener, error)
}

// The value groups of the servers given with AsServer, as hookParams's tags
// spell them too.
const (
	serversGroupName  = "fxshutdown.servers"  // *http.Server
	listenedGroupName = "fxshutdown.listened" // Server
)

var (
	httpServerType = reflect.TypeFor[*http.Server]()
	serverType     = reflect.TypeFor[Server]()
	errorType      = reflect.TypeFor[error]()
)

// AsServer annotates a constructor that returns an *http.Server or a
// [Server], and optionally an error, so that [Module] serves that server and
// shuts it down with the drain:
//
//	fx.Provide(fxshutdown.AsServer(NewHTTPServer))
//
// The server then lives in a value group, not in the graph as a plain
// *http.Server. Its constructor may depend on the *shutdown.Shutdowner, and
// registers no lifecycle hooks of its own: the module listens and serves at
// start and shuts the server down at stop. A constructor of any other shape
// fails the application, at [fx.New], with an error that names it and what
// it returns.
func AsServer(constructor any) any {
	// fx.Annotated rather than fx.Annotate, whose wrapper Fx's errors
	// would name instead of the constructor.
	group, err := serverGroup(constructor)
	if err != nil {
		return fx.Annotated{Group: serversGroupName, Target: func() (*http.Server, error) { return nil, err }}
	}
	return fx.Annotated{Group: group, Target: constructor}
}

// serverGroup returns the value group for what constructor returns, or an
// error that says why it cannot be a server's constructor.
func serverGroup(constructor any) (string, error) {
	t := reflect.TypeOf(constructor)
	if t == nil || t.Kind() != reflect.Func {
		return "", fmt.Errorf("fxshutdown: AsServer(%T): want a constructor function", constructor)
	}
	name := runtime.FuncForPC(reflect.ValueOf(constructor).Pointer()).Name()
	if n := t.NumOut(); n == 1 || n == 2 && t.Out(1) == errorType {
		switch t.Out(0) {
		case httpServerType:
			return serversGroupName, nil
		case serverType:
			return listenedGroupName, nil
		}
	}
	results := make([]string, t.NumOut())
	for i := range results {
		results[i] = t.Out(i).String()
	}
	return "", fmt.Errorf("fxshutdown: AsServer(%s): the constructor returns (%s); want *http.Server or fxshutdown.Server, and optionally an error",
		name, strings.Join(results, ", "))
}
