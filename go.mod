module github.com/wsshutdown/wsshutdown

go 1.26.8

require (
	github.com/coder/websocket v1.8.15
	github.com/felixge/httpsnoop v1.1.0
	github.com/gorilla/websocket v1.5.3
	go.uber.org/goleak v1.3.0
)

require github.com/stretchr/testify v1.8.1 // indirect
