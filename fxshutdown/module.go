package fxshutdown

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/fx"

	"github.com/wsshutdown/wsshutdown/shutdown"
)

// Module provides a *[shutdown.Shutdowner] made by [New] and registers the
// lifecycle hooks that serve the servers given with [AsServer] and drain
// them. It reads from the graph, and provides none of them: a [Config] or a
// *Config (not both); a *zap.Logger, or else a *slog.Logger, for its log
// entries; and a metric.MeterProvider for its metrics. All are optional.
var Module = fx.Module("shutdown",
	fx.Provide(New),
	fx.Invoke(register),
)

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
	// the drain begins, that the drain takes at most (its budget): it
	// force-closes what is left and returns within it, so that the hooks
	// that run after the module's have the rest. Zero, or a value outside
	// (0, 1], means DefaultDrainFraction. The end of the budget is the
	// drain's end game, for closing what is left: 50 ms and 100 µs for
	// each connection open when the drain begins, counted once whether a
	// request or a hijacked websocket holds it, and never more than three
	// quarters of the budget, so that connections which never sent a
	// request cannot take more than that of the drain's time. With no
	// deadline on the stop context the drain waits as long as DrainTimeout
	// allows.
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

	// GoodbyeCode is the websocket close code sent on the handlers'
	// behalf, as shutdown.WithGoodbye: zero means
	// shutdown.DefaultGoodbyeCode (1001), a negative value sends no
	// goodbyes on the handlers' behalf. A code that cannot be sent in a
	// close frame fails New.
	GoodbyeCode int

	// GoodbyeReason is the reason sent with GoodbyeCode. Empty means
	// shutdown.DefaultGoodbyeReason; at most 123 bytes of UTF-8.
	GoodbyeReason string

	// PendingGrace is how long after the stagger window a request still
	// running with nothing written (a long poll) may go on before its
	// context is cancelled, as shutdown.WithPendingGrace: zero means
	// shutdown.DefaultPendingGrace, a negative value never cancels them.
	PendingGrace time.Duration

	// OwnGoodbyes says that the application says every goodbye itself,
	// as shutdown.WithOwnGoodbyes: a hub that selects on the Shutdowner's
	// Draining and writes to all its connections. The Shutdowner then
	// sends goodbyes only at the deadline.
	OwnGoodbyes bool
}

// Params are the inputs of [New]. Fields may be added; set them by name.
type Params struct {
	fx.In

	Config        Config  `optional:"true"`
	ConfigPointer *Config `optional:"true"` // as supplied with fx.Supply(&fxshutdown.Config{...})
}

// config returns the configuration the graph holds, or an error if it holds
// two.
func (p Params) config() (Config, error) {
	if p.ConfigPointer == nil {
		return p.Config, nil
	}
	if p.Config != (Config{}) {
		return Config{}, errors.New("fxshutdown: both a Config and a *Config are in the graph; supply one")
	}
	return *p.ConfigPointer, nil
}

// Result is what [New] provides. Fields may be added.
type Result struct {
	fx.Out

	Shutdowner *shutdown.Shutdowner
}

// New returns a Shutdowner configured by p's Config or *Config, and an
// error if p has both. It registers no hooks, so it serves a program without
// Fx too; [Module] adds the hooks.
func New(p Params) (Result, error) {
	c, err := p.config()
	if err != nil {
		return Result{}, err
	}
	opts := []shutdown.Option{
		shutdown.WithStagger(c.StaggerWindow),
		shutdown.WithDrainDelay(c.DrainDelay),
	}
	if c.RetryAfter != 0 {
		opts = append(opts, shutdown.WithRetryAfter(max(c.RetryAfter, 0)))
	}
	goodbye, err := c.goodbye()
	if err != nil {
		return Result{}, err
	}
	opts = append(opts, goodbye)
	if c.PendingGrace != 0 {
		opts = append(opts, shutdown.WithPendingGrace(c.PendingGrace))
	}
	if c.OwnGoodbyes {
		opts = append(opts, shutdown.WithOwnGoodbyes())
	}
	return Result{Shutdowner: shutdown.New(opts...)}, nil
}

// goodbye returns the WithGoodbye option of GoodbyeCode and GoodbyeReason,
// or the error that says why they cannot be sent.
func (c Config) goodbye() (opt shutdown.Option, err error) {
	code, reason := c.GoodbyeCode, c.GoodbyeReason
	switch {
	case code < 0:
		return shutdown.WithGoodbye(0, ""), nil
	case code == 0:
		code = shutdown.DefaultGoodbyeCode
	}
	if reason == "" {
		reason = shutdown.DefaultGoodbyeReason
	}
	defer func() {
		// WithGoodbye panics on what cannot be sent, as a programming
		// error; a Config is data, and gets an error.
		if r := recover(); r != nil {
			err = fmt.Errorf("fxshutdown: Config.GoodbyeCode %d with GoodbyeReason %q: %v", c.GoodbyeCode, c.GoodbyeReason, r)
		}
	}()
	return shutdown.WithGoodbye(code, reason), nil
}

// drainBudget returns how long the drain may take under ctx, and whether
// anything limits it at all. The drain keeps the end of its budget for its
// end game, closing what is left (see shutdown.Shutdowner.Shutdown), so
// that it returns within the budget whatever the peers do.
func (c Config) drainBudget(ctx context.Context) (d time.Duration, limited bool) {
	deadline, hasDeadline := ctx.Deadline()
	if !hasDeadline {
		return c.DrainTimeout, c.DrainTimeout > 0
	}
	fraction := c.DrainFraction
	if fraction <= 0 || fraction > 1 {
		fraction = DefaultDrainFraction
	}
	d = max(time.Duration(float64(time.Until(deadline))*fraction), 0)
	if c.DrainTimeout > 0 {
		d = min(d, c.DrainTimeout)
	}
	return d, true
}

func (c Config) logInterval() time.Duration {
	if c.LogInterval > 0 {
		return c.LogInterval
	}
	return DefaultLogInterval
}
