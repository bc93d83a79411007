// Package fxshutdown provides a [shutdown.Shutdowner] as an Fx component.
//
// One line gives an Fx application the Shutdowner and the lifecycle that
// uses it:
//
//	fx.New(
//		fxshutdown.Module,
//		fx.Provide(fxshutdown.AsServer(NewHTTPServer)),
//	)
//
// where NewHTTPServer wraps its handler in the Shutdowner's Middleware. The
// module starts every server given with [AsServer], on its address or on a
// listener of the application's own ([Server]), and, in a single OnStop hook,
// drains the wrapped handlers and shuts the servers down concurrently,
// within a share of Fx's stop timeout ([Config]), logging the remaining
// connection counts through zap or log/slog (slog.Default without a logger
// in the graph) and recording them as OpenTelemetry metrics ([MeterName])
// when the graph has a MeterProvider. It sets each server's ConnState and
// ConnContext to the Shutdowner's, after the server's own. Wiring it cannot
// serve fails [fx.New] or warns at start, naming [AsServer].
//
// The logic is in package shutdown; this package only wires it into Fx.
package fxshutdown
