package fxshutdown

import (
	"context"
	"time"

	"go.uber.org/fx"

	"github.com/wsshutdown/wsshutdown/shutdown"
)

// Module provides a *[shutdown.Shutdowner] made by [New] and registers the
// lifecycle hooks that serve the servers given with [AsServer] and drain
// them. It reads an optional *zap.Logger and an optional [Config] from the
// graph, and provides neither.
var Module = fx.Module("shutdown",
	fx.Provide(New),
	fx.Invoke(register),
)

// serversGroup is the value group of the servers given with AsServer, as
// hookParams.Servers's tag spells it too.
const serversGroup = `group:"fxshutdown.servers"`

// AsServer annotates a constructor that returns an *http.Server, and
// optionally an error, so that [Module] serves that server and shuts it down
// with the drain:
//
//	fx.Provide(fxshutdown.AsServer(NewHTTPServer))
//
// The server then lives in a value group, not in the graph as a plain
// *http.Server. Its constructor may depend on the *shutdown.Shutdowner.
func AsServer(constructor any) any {
	return fx.Annotate(constructor, fx.ResultTags(serversGroup))
}

// DefaultDrainFraction is the share of the time left to Fx's stop that the
// drain takes at most, unless [Config] says otherwise: the rest is left to
// the OnStop hooks that run after the drain's.
const DefaultDrainFraction = 0.8

// DefaultLogInterval is how often the drain logs its counts while
// connections remain, unless [Config] says otherwise.
const DefaultLogInterval = time.Second

// Config configures the module. It is optional in the graph; its zero value
// is the defaults.
type Config struct {
	// DrainFraction is the share of the time left on the stop context, when
	// the drain begins, after which the drain force-closes what is left
	// and returns. Zero, or a value outside (0, 1], means
	// DefaultDrainFraction. The drain ends sooner when the connections
	// open as it begins need more of the rest to be closed (100 µs each:
	// 0.5 s for 5,000). With no deadline on the stop context the drain
	// waits as long as DrainTimeout allows.
	DrainFraction float64

	// DrainTimeout, when positive, caps the drain's time whatever the
	// stop context allows.
	DrainTimeout time.Duration

	// LogInterval is how often the drain logs its counts while
	// connections remain. Zero means DefaultLogInterval.
	LogInterval time.Duration

	// RetryAfter is the Retry-After of the 503 responses sent during the
	// drain, as shutdown.WithRetryAfter: zero means
	// shutdown.DefaultRetryAfter, a negative value none.
	RetryAfter time.Duration

	// StaggerWindow spreads the requests' drain signals over the window,
	// as shutdown.WithStagger. Zero closes them all at once.
	StaggerWindow time.Duration

	// DrainDelay keeps the servers serving, with the Shutdowner's
	// readiness handler answering 503, for the delay before the drain
	// begins, as shutdown.WithDrainDelay. It counts against the drain's
	// share of the stop timeout. Zero drains at once.
	DrainDelay time.Duration
}

// Params are the inputs of [New].
type Params struct {
	fx.In

	Config Config `optional:"true"`
}

// New returns a Shutdowner configured by p.Config. It registers no hooks, so
// it serves a program without Fx too; [Module] adds the hooks.
func New(p Params) *shutdown.Shutdowner {
	opts := []shutdown.Option{
		shutdown.WithStagger(p.Config.StaggerWindow),
		shutdown.WithDrainDelay(p.Config.DrainDelay),
	}
	if p.Config.RetryAfter != 0 {
		opts = append(opts, shutdown.WithRetryAfter(max(p.Config.RetryAfter, 0)))
	}
	return shutdown.New(opts...)
}

// endGameCost is the time that closing one connection at the drain's
// deadline may take: about four times what BenchmarkForceClose measures on
// two cores, for a loaded machine. The drain leaves that much of the stop
// budget per connection for its end game, so that a stop with thousands of
// connections still returns, and leaves the later hooks their turn, before
// Fx's deadline.
const endGameCost = 100 * time.Microsecond

// drainBudget returns how long the drain may take under ctx with conns
// connections to close at its deadline, and whether anything limits it at
// all.
func (c Config) drainBudget(ctx context.Context, conns int) (d time.Duration, limited bool) {
	deadline, hasDeadline := ctx.Deadline()
	if !hasDeadline {
		return c.DrainTimeout, c.DrainTimeout > 0
	}
	left := time.Until(deadline)
	fraction := c.DrainFraction
	if fraction <= 0 || fraction > 1 {
		fraction = DefaultDrainFraction
	}
	d = time.Duration(float64(left) * fraction)
	if c.DrainTimeout > 0 {
		d = min(d, c.DrainTimeout)
	}
	return max(min(d, left-time.Duration(conns)*endGameCost), 0), true
}

func (c Config) logInterval() time.Duration {
	if c.LogInterval > 0 {
		return c.LogInterval
	}
	return DefaultLogInterval
}
