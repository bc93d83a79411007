package fxshutdown_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/fx"

	"github.com/gorilla/websocket"

	"github.com/wsshutdown/wsshutdown/fxshutdown"
	"github.com/wsshutdown/wsshutdown/internal/thirdparty/wstest"
	"github.com/wsshutdown/wsshutdown/shutdown"
)

// collected is what one collection of the module's meter read.
type collected struct {
	sums      map[string]int64 // by instrument name
	durations []metricdata.HistogramDataPoint[float64]
}

func collect(t *testing.T, reader *sdkmetric.ManualReader) collected {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	c := collected{sums: make(map[string]int64)}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != fxshutdown.MeterName {
			t.Errorf("meter %q, want %q", sm.Scope.Name, fxshutdown.MeterName)
		}
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				c.sums[m.Name] = d.DataPoints[0].Value
			case metricdata.Histogram[float64]:
				if m.Name != "wsshutdown.drain.duration" || m.Unit != "s" {
					t.Errorf("histogram %q in %q", m.Name, m.Unit)
				}
				c.durations = d.DataPoints
			}
		}
	}
	return c
}

// With a MeterProvider in the graph, the module's instruments follow a real
// drain: handlers and hijacked connections up, then back to 0, and one
// drain duration whose outcome says whether the drain finished.
func TestMetrics(t *testing.T) {
	const n = 5
	for _, tc := range []struct {
		outcome string
		ignores bool
	}{{"drained", false}, {"deadline", true}} {
		t.Run(tc.outcome, func(t *testing.T) {
			reader := sdkmetric.NewManualReader()
			provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
			defer func() { _ = provider.Shutdown(context.Background()) }()
			connected := make(chan struct{}, n)
			app := newTestApp(t, func(*shutdown.Shutdowner) http.Handler {
				if tc.ignores {
					return wstest.IgnoresDrain(connected, false)
				}
				return wstest.Server(connected)
			}, fx.Supply(fx.Annotate(provider, fx.As(new(metric.MeterProvider)))))
			clients := make([]<-chan wstest.Goodbye, n)
			for i := range clients {
				clients[i] = dial(t, app.addr)
			}
			wstest.Receive(t, connected, n)

			during := collect(t, reader)
			if during.sums["wsshutdown.handlers.active"] != n || during.sums["wsshutdown.connections.hijacked"] != n {
				t.Errorf("while serving: %v, want %d handlers and %d hijacked", during.sums, n, n)
			}
			if len(during.durations) != 0 {
				t.Errorf("a drain duration before any drain: %v", during.durations)
			}

			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_ = app.Stop(ctx) // what it returns is other tests' business
			// The handler's goodbye, or the deadline's.
			wstest.WantCodes(t, clients, websocket.CloseGoingAway)
			// After a deadline Stop does not wait for the handlers whose
			// connections it closed: they return a moment later, and
			// nothing announces it.
			wstest.WaitUntil(t, func() bool { return app.s.Stats().Active == 0 })

			after := collect(t, reader)
			wantSums := map[string]int64{
				"wsshutdown.handlers.active":      0,
				"wsshutdown.connections.hijacked": 0,
				"wsshutdown.requests.rejected":    0,
				"wsshutdown.connections.forced":   0,
				"wsshutdown.goodbyes":             0,
				"wsshutdown.goodbyes.unwritten":   0,
				"wsshutdown.goodbyes.unanswered":  0,
			}
			if tc.ignores {
				wantSums["wsshutdown.connections.forced"] = n
				wantSums["wsshutdown.goodbyes"] = n // said at the deadline
			}
			for name, v := range wantSums {
				if got, ok := after.sums[name]; !ok || got != v {
					t.Errorf("after the stop, %s = %d (recorded: %v), want %d", name, got, ok, v)
				}
			}
			if len(after.durations) != 1 || after.durations[0].Count != 1 {
				t.Fatalf("drain durations %v, want one point of one drain", after.durations)
			}
			p := after.durations[0]
			if v, _ := p.Attributes.Value(attribute.Key("wsshutdown.drain.outcome")); v.AsString() != tc.outcome {
				t.Errorf("outcome %q, want %q", v.AsString(), tc.outcome)
			}
			if p.Sum <= 0 || p.Sum > 1 {
				t.Errorf("drain duration %v s, want within the 1 s stop", p.Sum)
			}
		})
	}
}
