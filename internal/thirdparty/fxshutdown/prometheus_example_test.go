package fxshutdown_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprometheus "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.uber.org/fx"

	"github.com/wsshutdown/wsshutdown/fxshutdown"
	"github.com/wsshutdown/wsshutdown/shutdown"
)

// The module's metrics on a Prometheus endpoint: the OpenTelemetry SDK with
// its Prometheus exporter as the MeterProvider in the graph. The scrape
// after a stop shows the drain.
func Example_prometheus() {
	registry := prometheus.NewRegistry()
	exporter, err := otelprometheus.New(otelprometheus.WithRegisterer(registry), otelprometheus.WithoutScopeInfo())
	if err != nil {
		fmt.Println(err)
		return
	}
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
	defer func() { _ = provider.Shutdown(context.Background()) }()

	app := fx.New(
		fx.NopLogger,
		fx.Supply(fx.Annotate(provider, fx.As(new(metric.MeterProvider)))),
		fxshutdown.Module,
		fx.Provide(fxshutdown.AsServer(func(s *shutdown.Shutdowner) *http.Server {
			return &http.Server{Addr: "127.0.0.1:0", Handler: s.Middleware(http.NotFoundHandler())}
		})),
	)
	if err := app.Start(context.Background()); err != nil {
		fmt.Println(err)
		return
	}
	if err := app.Stop(context.Background()); err != nil {
		fmt.Println(err)
		return
	}

	// Scrape, as Prometheus would, and show the module's series.
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(registry, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	lines := bufio.NewScanner(rec.Body)
	for lines.Scan() {
		l := lines.Text()
		if strings.HasPrefix(l, "wsshutdown_") && !strings.Contains(l, "_bucket") && !strings.Contains(l, "_sum") {
			fmt.Println(l)
		}
	}
	// Output:
	// wsshutdown_connections_forced_total 0
	// wsshutdown_connections_hijacked 0
	// wsshutdown_drain_duration_seconds_count{wsshutdown_drain_outcome="drained"} 1
	// wsshutdown_goodbyes_total 0
	// wsshutdown_goodbyes_unanswered_total 0
	// wsshutdown_goodbyes_unwritten_total 0
	// wsshutdown_handlers_active 0
	// wsshutdown_requests_rejected_total 0
}
