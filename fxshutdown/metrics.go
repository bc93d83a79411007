package fxshutdown

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/wsshutdown/wsshutdown/shutdown"
)

// MeterName is the name of the meter through which the module records its
// metrics, when a metric.MeterProvider is in the graph:
//
//   - wsshutdown.handlers.active: wrapped handlers running ({handler})
//   - wsshutdown.connections.hijacked: hijacked connections open ({connection})
//   - wsshutdown.requests.rejected: requests answered 503 during a drain ({request})
//   - wsshutdown.connections.forced: hijacked connections closed at a deadline ({connection})
//   - wsshutdown.goodbyes: goodbyes sent on the handlers' behalf ({goodbye})
//   - wsshutdown.goodbyes.unwritten and wsshutdown.goodbyes.unanswered:
//     goodbyes that did not reach their peers, as [shutdown.Stats] counts
//     them ({goodbye})
//   - wsshutdown.drain.duration: how long the stop's drain took (s), with
//     the attribute wsshutdown.drain.outcome, "drained" or "deadline"
//
// The first seven are observed from [shutdown.Shutdowner.Stats] when the
// provider's reader collects; the duration is recorded once, as the stop
// hook returns.
const MeterName = "github.com/wsshutdown/wsshutdown/fxshutdown"

// drainOutcome is the attribute key of wsshutdown.drain.duration.
const drainOutcome = attribute.Key("wsshutdown.drain.outcome")

var (
	outcomeDrained  = metric.WithAttributeSet(attribute.NewSet(drainOutcome.String("drained")))
	outcomeDeadline = metric.WithAttributeSet(attribute.NewSet(drainOutcome.String("deadline")))
)

// metrics are the module's instruments. A nil *metrics records nothing.
type metrics struct {
	drainDuration metric.Float64Histogram
}

// newMetrics creates the instruments of s in mp's meter, or returns nil
// when mp is nil.
func newMetrics(mp metric.MeterProvider, s *shutdown.Shutdowner) (*metrics, error) {
	if mp == nil {
		return nil, nil
	}
	m := mp.Meter(MeterName)
	active, err1 := m.Int64ObservableUpDownCounter("wsshutdown.handlers.active",
		metric.WithUnit("{handler}"), metric.WithDescription("Handlers wrapped by the Shutdowner's middleware that are running."))
	hijacked, err2 := m.Int64ObservableUpDownCounter("wsshutdown.connections.hijacked",
		metric.WithUnit("{connection}"), metric.WithDescription("Connections hijacked through the middleware and not yet closed."))
	rejected, err3 := m.Int64ObservableCounter("wsshutdown.requests.rejected",
		metric.WithUnit("{request}"), metric.WithDescription("Requests answered 503 because a drain had begun."))
	forced, err4 := m.Int64ObservableCounter("wsshutdown.connections.forced",
		metric.WithUnit("{connection}"), metric.WithDescription("Hijacked connections closed at a drain's deadline."))
	goodbyes, err5 := m.Int64ObservableCounter("wsshutdown.goodbyes",
		metric.WithUnit("{goodbye}"), metric.WithDescription("Goodbyes sent on the handlers' behalf."))
	unwritten, err7 := m.Int64ObservableCounter("wsshutdown.goodbyes.unwritten",
		metric.WithUnit("{goodbye}"), metric.WithDescription("Goodbyes on the handlers' behalf that could not be written: the peer had stopped reading."))
	unanswered, err8 := m.Int64ObservableCounter("wsshutdown.goodbyes.unanswered",
		metric.WithUnit("{goodbye}"), metric.WithDescription("Websocket goodbyes written whose peers neither answered nor received them before their connections were closed."))
	duration, err6 := m.Float64Histogram("wsshutdown.drain.duration",
		metric.WithUnit("s"), metric.WithDescription("How long the drain of a stop took."),
		metric.WithExplicitBucketBoundaries(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 60, 120))
	if err := errors.Join(err1, err2, err3, err4, err5, err6, err7, err8); err != nil {
		return nil, err
	}
	_, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		st := s.Stats()
		o.ObserveInt64(active, int64(st.Active))
		o.ObserveInt64(hijacked, int64(st.Hijacked))
		o.ObserveInt64(rejected, int64(st.Rejected))
		o.ObserveInt64(forced, int64(st.Forced))
		o.ObserveInt64(goodbyes, int64(st.Goodbyes))
		o.ObserveInt64(unwritten, int64(st.Unwritten))
		o.ObserveInt64(unanswered, int64(st.Unanswered))
		return nil
	}, active, hijacked, rejected, forced, goodbyes, unwritten, unanswered)
	if err != nil {
		return nil, err
	}
	return &metrics{drainDuration: duration}, nil
}

// recordDrain records a stop's drain.
func (m *metrics) recordDrain(d time.Duration, deadline bool) {
	if m == nil {
		return
	}
	outcome := outcomeDrained
	if deadline {
		outcome = outcomeDeadline
	}
	m.drainDuration.Record(context.Background(), d.Seconds(), outcome)
}
