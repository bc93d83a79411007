package shutdown_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	connectrpc "connectrpc.com/connect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/wsshutdown/wsshutdown/internal/thirdparty/wstest"
	"github.com/wsshutdown/wsshutdown/shutdown"
)

// rpcClients is how many clients each stack's test runs.
const rpcClients = 50

// sendEvery is a server stream that knows nothing of the drain, as its
// users write one: a message every 20 ms, each 256 bytes that say its
// number, until the client goes or a send fails.
func sendEvery(ctx context.Context, send func(*testgrpc.StreamingOutputCallResponse) error, started chan<- struct{}) error {
	for i := 0; ; i++ {
		if err := send(numbered(i)); err != nil {
			return err
		}
		if i == 0 {
			started <- struct{}{}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func numbered(i int) *testgrpc.StreamingOutputCallResponse {
	return &testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: bytes.Repeat(fmt.Appendf(nil, "%08d", i), 32)}}
}

// rpcEnd is what a client saw: how many messages, each checked, and the
// code and message of the status that ended the stream.
type rpcEnd struct {
	messages int
	code     string
	message  string
	err      error     // a message out of order or cut
	at       time.Time // when the stream ended
}

// receive reads a stream's messages through next, which returns io.EOF
// or the stream's error when it ends, and sends what it saw.
func receive(next func() (*testgrpc.StreamingOutputCallResponse, error), end func(error) (code, message string)) <-chan rpcEnd {
	ended := make(chan rpcEnd, 1)
	go func() {
		var e rpcEnd
		for {
			msg, err := next()
			if err != nil {
				e.at = time.Now()
				e.code, e.message = end(err)
				ended <- e
				return
			}
			if want := numbered(e.messages).GetPayload().GetBody(); !bytes.Equal(msg.GetPayload().GetBody(), want) {
				e.err = fmt.Errorf("message %d is %q", e.messages, msg.GetPayload().GetBody())
			}
			e.messages++
		}
	}()
	return ended
}

// grpcStreamer is grpc-go's generated TestService, with one stream.
type grpcStreamer struct {
	testgrpc.UnimplementedTestServiceServer
	started chan struct{}
}

func (g *grpcStreamer) StreamingOutputCall(_ *testgrpc.StreamingOutputCallRequest, stream testgrpc.TestService_StreamingOutputCallServer) error {
	return sendEvery(stream.Context(), stream.Send, g.started)
}

// h2c returns protocols for a server that speaks HTTP/1.1 and unencrypted
// HTTP/2, or for a client that speaks only the latter.
func h2c(http1 bool) *http.Protocols {
	var p http.Protocols
	p.SetHTTP1(http1)
	p.SetUnencryptedHTTP2(true)
	return &p
}

// An rpcStack serves handler (built by the stack, knowing nothing of the
// drain) through the Shutdowner and dials its clients.
type rpcStack struct {
	name   string
	tls    bool
	server func(started chan struct{}) http.Handler
	dial   func(t *testing.T, ts *httptest.Server) <-chan rpcEnd
}

func grpcGoStack(useTLS bool) rpcStack {
	name := "grpc-go ServeHTTP over h2c"
	if useTLS {
		name = "grpc-go ServeHTTP over TLS"
	}
	return rpcStack{
		name: name,
		tls:  useTLS,
		server: func(started chan struct{}) http.Handler {
			srv := grpc.NewServer()
			testgrpc.RegisterTestServiceServer(srv, &grpcStreamer{started: started})
			return srv
		},
		dial: func(t *testing.T, ts *httptest.Server) <-chan rpcEnd {
			creds := insecure.NewCredentials()
			if useTLS {
				pool := x509.NewCertPool()
				pool.AddCert(ts.Certificate())
				creds = credentials.NewTLS(&tls.Config{RootCAs: pool})
			}
			cc, err := grpc.NewClient(ts.Listener.Addr().String(), grpc.WithTransportCredentials(creds))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cc.Close() })
			stream, err := testgrpc.NewTestServiceClient(cc).StreamingOutputCall(context.Background(), &testgrpc.StreamingOutputCallRequest{})
			if err != nil {
				t.Fatal(err)
			}
			return receive(stream.Recv, func(err error) (string, string) {
				st := status.Convert(err)
				return st.Code().String(), st.Message()
			})
		},
	}
}

func connectStack(name string, opt connectrpc.ClientOption, client func(ts *httptest.Server) *http.Client) rpcStack {
	const procedure = testgrpc.TestService_StreamingOutputCall_FullMethodName
	return rpcStack{
		name: name,
		server: func(started chan struct{}) http.Handler {
			mux := http.NewServeMux()
			// Messages under 1 KB go uncompressed, as connect's docs
			// advise. With gzip for every 256-byte message, the race
			// detector's bookkeeping of the compressors that sync.Pool
			// drops under -race (a megabyte each) stalled the whole
			// process for up to half a second, which bunched the
			// staggered ends that TestRPCStreamGoodbyesStaggered spreads.
			mux.Handle(procedure, connectrpc.NewServerStreamHandler(procedure,
				func(ctx context.Context, _ *connectrpc.Request[testgrpc.StreamingOutputCallRequest], stream *connectrpc.ServerStream[testgrpc.StreamingOutputCallResponse]) error {
					return sendEvery(ctx, stream.Send, started)
				}, connectrpc.WithCompressMinBytes(1024)))
			return mux
		},
		dial: func(t *testing.T, ts *httptest.Server) <-chan rpcEnd {
			var opts []connectrpc.ClientOption
			if opt != nil {
				opts = append(opts, opt)
			}
			c := connectrpc.NewClient[testgrpc.StreamingOutputCallRequest, testgrpc.StreamingOutputCallResponse](client(ts), ts.URL+procedure, opts...)
			// A deadline, as callers set: the Connect protocol sends it, and
			// the handler's context is derived from the request's at once.
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			t.Cleanup(cancel)
			stream, err := c.CallServerStream(ctx, connectrpc.NewRequest(&testgrpc.StreamingOutputCallRequest{}))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { stream.Close() })
			return receive(func() (*testgrpc.StreamingOutputCallResponse, error) {
				if stream.Receive() {
					return stream.Msg(), nil
				}
				if err := stream.Err(); err != nil {
					return nil, err
				}
				return nil, io.EOF
			}, func(err error) (string, string) {
				var ce *connectrpc.Error
				if errors.As(err, &ce) {
					return ce.Code().String(), ce.Message()
				}
				return err.Error(), ""
			})
		},
	}
}

func http1Client(ts *httptest.Server) *http.Client { return ts.Client() }

func h2cClient(*httptest.Server) *http.Client {
	return &http.Client{Transport: &http.Transport{Protocols: h2c(false)}}
}

// serveRPC serves stack's handler through s, and dials n clients.
func serveRPC(t *testing.T, s *shutdown.Shutdowner, stack rpcStack, n int) (*httptest.Server, []<-chan rpcEnd) {
	t.Helper()
	started := make(chan struct{}, n)
	ts := httptest.NewUnstartedServer(s.Middleware(stack.server(started)))
	if stack.tls {
		ts.EnableHTTP2 = true
		ts.StartTLS()
	} else {
		ts.Config.Protocols = h2c(true)
		ts.Start()
	}
	t.Cleanup(ts.Close)
	clients := make([]<-chan rpcEnd, n)
	for i := range clients {
		clients[i] = stack.dial(t, ts)
	}
	wstest.Receive(t, started, n)
	return ts, clients
}

// wantUnavailable receives every client's end and fails unless each read
// its messages whole and in order, then UNAVAILABLE "server shutting
// down"; it returns when each ended, after start, sorted.
func wantUnavailable(t *testing.T, clients []<-chan rpcEnd, start time.Time) []time.Duration {
	t.Helper()
	var times []time.Duration
	for i, c := range clients {
		e := wstest.Receive(t, c, 1)[0]
		if e.err != nil || e.messages == 0 {
			t.Errorf("client %d: %d messages, %v", i, e.messages, e.err)
		}
		if e.code != "unavailable" && e.code != codes.Unavailable.String() || e.message != "server shutting down" {
			t.Errorf("client %d: ended with %s %q, want unavailable \"server shutting down\"", i, e.code, e.message)
		}
		times = append(times, e.at.Sub(start))
	}
	slices.Sort(times)
	return times
}

// gRPC and Connect server streams whose handlers know nothing of the
// drain, served through the Shutdowner by grpc-go and connect-go, each
// with its own clients: every client receives every message it was sent
// whole and in order, then the protocol's retryable status, UNAVAILABLE
// "server shutting down" (never INTERNAL, never a missing trailer), and
// the drain ends well before its deadline.
func TestRPCStreamGoodbyes(t *testing.T) {
	for _, stack := range []rpcStack{
		grpcGoStack(false),
		grpcGoStack(true),
		connectStack("connect-go, Connect protocol over HTTP/1.1", nil, http1Client),
		connectStack("connect-go, gRPC protocol over h2c", connectrpc.WithGRPC(), h2cClient),
		connectStack("connect-go, gRPC-Web over HTTP/1.1", connectrpc.WithGRPCWeb(), http1Client),
	} {
		t.Run(stack.name, func(t *testing.T) {
			var s shutdown.Shutdowner
			ts, clients := serveRPC(t, &s, stack, rpcClients)
			start := time.Now()
			if err := s.ShutdownWithServer(contextWithTimeout(t, 10*time.Second), ts.Config); err != nil {
				t.Fatalf("ShutdownWithServer: %v, want nil", err)
			}
			took := time.Since(start)
			wantUnavailable(t, clients, start)
			if got := s.Stats().Goodbyes; got != rpcClients {
				t.Errorf("Stats().Goodbyes = %d, want %d", got, rpcClients)
			}
			t.Logf("%d streams drained in %v", rpcClients, took)
		})
	}
}

// With a stagger window the streams' ends spread over it, as the
// websockets' goodbyes do.
func TestRPCStreamGoodbyesStaggered(t *testing.T) {
	const n, window = 40, 400 * time.Millisecond
	for _, stack := range []rpcStack{
		grpcGoStack(false),
		connectStack("connect-go, Connect protocol over HTTP/1.1", nil, http1Client),
	} {
		t.Run(stack.name, func(t *testing.T) {
			s := shutdown.New(shutdown.WithStagger(window))
			ts, clients := serveRPC(t, s, stack, n)
			start := time.Now()
			if err := s.ShutdownWithServer(contextWithTimeout(t, 30*time.Second), ts.Config); err != nil {
				t.Fatalf("ShutdownWithServer: %v, want nil", err)
			}
			times := wantUnavailable(t, clients, start)
			t.Logf("ends from %v to %v after the drain began", times[0], times[n-1])
			wantSpread(t, times, window)
		})
	}
}

// unaryStreamer answers UnaryCall once release is closed, and streams one
// message and then waits, knowing nothing of the drain.
type unaryStreamer struct {
	testgrpc.UnimplementedTestServiceServer
	entered chan struct{}
	release chan struct{}
}

func (u *unaryStreamer) UnaryCall(context.Context, *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	u.entered <- struct{}{}
	<-u.release
	return &testgrpc.SimpleResponse{Payload: &testgrpc.Payload{Body: []byte("answer")}}, nil
}

func (u *unaryStreamer) StreamingOutputCall(_ *testgrpc.StreamingOutputCallRequest, stream testgrpc.TestService_StreamingOutputCallServer) error {
	if err := stream.Send(numbered(0)); err != nil {
		return err
	}
	u.entered <- struct{}{}
	<-stream.Context().Done() // for an event that never comes
	return stream.Context().Err()
}

// A unary call whose handler answers once the drain has begun gets its
// answer with OK: its response is one message, and the goodbye waits for
// a next one that never comes, so no status replaces the handler's.
func TestUnaryCallsDuringTheDrainSucceed(t *testing.T) {
	const n = 20
	s := shutdown.New(shutdown.WithPendingGrace(time.Minute)) // the grace never ends here
	u := &unaryStreamer{entered: make(chan struct{}, n), release: make(chan struct{})}
	g := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(g, u)
	ts := httptest.NewUnstartedServer(s.Middleware(g))
	ts.Config.Protocols = h2c(true)
	ts.Start()
	t.Cleanup(ts.Close)
	cc, err := grpc.NewClient(ts.Listener.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	client := testgrpc.NewTestServiceClient(cc)
	errs := make(chan error, n)
	for range n {
		go func() {
			resp, err := client.UnaryCall(context.Background(), &testgrpc.SimpleRequest{})
			if err == nil && string(resp.GetPayload().GetBody()) != "answer" {
				err = fmt.Errorf("answer %q", resp.GetPayload().GetBody())
			}
			errs <- err
		}()
	}
	wstest.Receive(t, u.entered, n)
	drained := make(chan error, 1)
	go func() { drained <- s.ShutdownWithServer(contextWithTimeout(t, 10*time.Second), ts.Config) }()
	wstest.WaitUntil(t, func() bool { return s.Stats().Draining })
	close(u.release)
	for i, err := range wstest.Receive(t, errs, n) {
		if err != nil {
			t.Errorf("call %d: %v, want its answer", i, err)
		}
	}
	if err := wstest.Receive(t, drained, 1)[0]; err != nil {
		t.Errorf("ShutdownWithServer: %v", err)
	}
	if got := s.Stats().Goodbyes; got != 0 {
		t.Errorf("Stats().Goodbyes = %d, want 0", got)
	}
}

// A server stream that has sent a message and then waits gets its goodbye
// once the grace after the stagger window is over, at its boundary.
func TestWaitingStreamIsEndedAfterTheGrace(t *testing.T) {
	const n, grace = 10, 100 * time.Millisecond
	s := shutdown.New(shutdown.WithPendingGrace(grace))
	u := &unaryStreamer{entered: make(chan struct{}, n)}
	g := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(g, u)
	ts := httptest.NewUnstartedServer(s.Middleware(g))
	ts.Config.Protocols = h2c(true)
	ts.Start()
	t.Cleanup(ts.Close)
	cc, err := grpc.NewClient(ts.Listener.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	clients := make([]<-chan rpcEnd, n)
	for i := range clients {
		stream, err := testgrpc.NewTestServiceClient(cc).StreamingOutputCall(context.Background(), &testgrpc.StreamingOutputCallRequest{})
		if err != nil {
			t.Fatal(err)
		}
		clients[i] = receive(stream.Recv, func(err error) (string, string) {
			st := status.Convert(err)
			return st.Code().String(), st.Message()
		})
	}
	wstest.Receive(t, u.entered, n)
	start := time.Now()
	if err := s.ShutdownWithServer(contextWithTimeout(t, 10*time.Second), ts.Config); err != nil {
		t.Fatalf("ShutdownWithServer: %v", err)
	}
	times := wantUnavailable(t, clients, start)
	if times[0] < grace {
		t.Errorf("a stream ended %v after the drain began, before the %v grace", times[0], grace)
	}
}
