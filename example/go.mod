module github.com/wsshutdown/wsshutdown/example

go 1.26

require (
	github.com/chromedp/chromedp v0.23.0
	github.com/gorilla/websocket v1.5.3
	go.opentelemetry.io/otel v1.46.0 // indirect
	go.opentelemetry.io/otel/metric v1.46.0 // indirect
	go.uber.org/fx v1.24.0
	go.uber.org/goleak v1.3.0
	go.uber.org/zap v1.28.0
)

require github.com/wsshutdown/wsshutdown v0.0.0

require github.com/wsshutdown/wsshutdown/internal/thirdparty v0.0.0

require (
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/chromedp/cdproto v0.159.0 // indirect
	github.com/go-json-experiment/json v0.0.0-20260213210345-44df1a37e875 // indirect
	go.uber.org/dig v1.19.0 // indirect
	go.uber.org/multierr v1.10.0 // indirect
	golang.org/x/sys v0.47.0 // indirect
)

replace github.com/wsshutdown/wsshutdown => ..

replace github.com/wsshutdown/wsshutdown/internal/thirdparty => ../internal/thirdparty
