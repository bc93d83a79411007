package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsshutdown/wsshutdown/internal/thirdparty/wstest"
)

// A fleet is three instances of the example binary behind a real HAProxy,
// which checks each instance's /ready every 500 ms and never retries a
// request elsewhere (retries 0): what a client sees during a rolling restart
// is then what the library does, not what the proxy hides.

// fleetConfig is one way of restarting the fleet.
type fleetConfig struct {
	name       string
	drainDelay time.Duration // the example's -drain-delay
	stagger    time.Duration // the example's -stagger
	kill       bool          // SIGKILL instead of SIGTERM: the baseline

	websockets, sse int // clients, reconnecting through the proxy
	getsPerSecond   int
	rounds          int // rolling restarts of every instance
}

// fleetResult is what the clients saw.
type fleetResult struct {
	gets, failedGets    int
	wsCloses            map[int]int // close code (1006 without a close frame) to count
	failedReconnects    int         // websocket and SSE connects that failed
	sseEnded, sseBroken int         // streams ended by their goodbye event, and otherwise
	peak                int         // most websocket reconnects within any 100 ms
	restartTime         time.Duration
	unexpectedExit      []string
	reconnectTimes      []time.Time
	firstFailure        string
}

// haproxyCommand returns the haproxy binary, or skips the test when there
// is none, unless WSSHUTDOWN_REQUIRE_HAPROXY=1 (as in CI), which fails it.
func haproxyCommand(tb testing.TB) string {
	tb.Helper()
	p, err := exec.LookPath("haproxy")
	if err == nil {
		return p
	}
	if os.Getenv("WSSHUTDOWN_REQUIRE_HAPROXY") == "1" {
		tb.Fatalf("WSSHUTDOWN_REQUIRE_HAPROXY=1 and no haproxy: %v", err)
	}
	tb.Skip("no haproxy (apt-get install haproxy): the fleet test is skipped")
	return ""
}

// freePorts returns n loopback ports that were free a moment ago.
func freePorts(tb testing.TB, n int) []int {
	tb.Helper()
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		defer ln.Close()
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

const haproxyConfig = `global
	maxconn 8000
	stats socket %[1]s level admin
defaults
	mode http
	timeout connect 1s
	timeout client 60s
	timeout server 60s
	timeout tunnel 60s
	retries 0
	no option redispatch
frontend fleet
	bind 127.0.0.1:%[2]d
	default_backend instances
backend instances
	balance roundrobin
	option httpchk
	http-check send meth GET uri /ready
	http-check expect status 200
	default-server inter 500ms fall 1 rise 1
	server i0 127.0.0.1:%[3]d check
	server i1 127.0.0.1:%[4]d check
	server i2 127.0.0.1:%[5]d check
`

// proxy is a running HAProxy.
type proxy struct {
	addr  string
	stats string // its admin socket
}

func startProxy(tb testing.TB, ports []int) *proxy {
	tb.Helper()
	bin := haproxyCommand(tb)
	dir := tb.TempDir()
	front := freePorts(tb, 1)[0]
	p := &proxy{addr: fmt.Sprintf("127.0.0.1:%d", front), stats: filepath.Join(dir, "stats.sock")}
	cfg := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, haproxyConfig, p.stats, front, ports[0], ports[1], ports[2]), 0o600); err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(bin, "-db", "-f", cfg)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := p.serverStates(); err == nil {
			return p
		}
		select {
		case <-exited:
			tb.Fatalf("haproxy exited:\n%s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("haproxy did not start:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond) // nothing announces the stats socket
	}
}

// serverStates returns each instance's state as HAProxy sees it: "UP",
// "DOWN", and so on.
func (p *proxy) serverStates() (map[string]string, error) {
	c, err := net.Dial("unix", p.stats)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if _, err := io.WriteString(c, "show stat\n"); err != nil {
		return nil, err
	}
	states := make(map[string]string)
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		f := strings.Split(sc.Text(), ",")
		if len(f) > 17 && f[0] == "instances" && strings.HasPrefix(f[1], "i") {
			states[f[1]] = f[17] // pxname, svname, ..., status is the 18th field
		}
	}
	return states, sc.Err()
}

// waitState waits until HAProxy sees instance i in state.
func (p *proxy) waitState(tb testing.TB, i int, state string) {
	tb.Helper()
	name := fmt.Sprintf("i%d", i)
	deadline := time.Now().Add(20 * time.Second)
	for {
		states, err := p.serverStates()
		if err == nil && strings.HasPrefix(states[name], state) {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("HAProxy sees %s as %q (%v), want %s", name, states[name], err, state)
		}
		time.Sleep(20 * time.Millisecond) // health checks are HAProxy's own clock
	}
}

// instance is one running example binary.
type instance struct {
	cmd    *exec.Cmd
	exited chan struct{}
	err    error   // cmd.Wait's, once exited is closed
	log    logTail // the end of what it printed
}

// logTail keeps the last 4 KB written to it.
type logTail struct {
	mu sync.Mutex
	b  []byte
}

func (l *logTail) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b = append(l.b, p...)
	if len(l.b) > 4096 {
		l.b = l.b[len(l.b)-4096:]
	}
	return len(p), nil
}

func (l *logTail) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.b)
}

// describe says how an instance that should still run ended, and what it
// printed last.
func (in *instance) describe() string {
	select {
	case <-in.exited:
		return fmt.Sprintf("it exited: %v; its output ends:\n%s", in.err, in.log.String())
	default:
		return "it is running"
	}
}

func startInstance(tb testing.TB, bin string, port int, cfg fleetConfig) *instance {
	tb.Helper()
	cmd := exec.Command(bin, "-addr", fmt.Sprintf("127.0.0.1:%d", port), "-bare-addr", "127.0.0.1:0", "-tick", "100ms",
		"-drain-delay", cfg.drainDelay.String(), "-stagger", cfg.stagger.String())
	in := &instance{cmd: cmd, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = &in.log, &in.log
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() { in.err = cmd.Wait(); close(in.exited) }()
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-in.exited
	})
	return in
}

// buildExample builds the example binary once per test binary.
var buildExample = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "wsshutdown-fleet")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "example")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %w\n%s", err, out)
	}
	return bin, nil
})

// runFleet starts the fleet and the clients, restarts every instance in
// turn cfg.rounds times, and returns what the clients saw.
func runFleet(tb testing.TB, cfg fleetConfig) fleetResult {
	tb.Helper()
	bin, err := buildExample()
	if err != nil {
		tb.Fatal(err)
	}
	ports := freePorts(tb, 3)
	instances := make([]*instance, 3)
	for i := range instances {
		instances[i] = startInstance(tb, bin, ports[i], cfg)
	}
	p := startProxy(tb, ports)
	for i := range instances {
		p.waitState(tb, i, "UP")
	}

	c := newFleetClients(p.addr)
	ctx, stop := context.WithCancel(context.Background())
	var clients sync.WaitGroup
	c.start(ctx, &clients, cfg)
	defer func() {
		stop()
		clients.Wait()
	}()
	c.waitConnected(tb, cfg.websockets, cfg.sse)

	start := time.Now()
	var res fleetResult
	for range cfg.rounds {
		for i, in := range instances {
			sig := syscall.SIGTERM
			if cfg.kill {
				sig = syscall.SIGKILL
			}
			if err := in.cmd.Process.Signal(sig); err != nil {
				tb.Fatalf("instance %d: %v: %s", i, err, in.describe())
			}
			select {
			case <-in.exited:
			case <-time.After(30 * time.Second):
				tb.Fatalf("instance %d did not exit", i)
			}
			if !cfg.kill && in.err != nil {
				res.unexpectedExit = append(res.unexpectedExit, fmt.Sprintf("instance %d: %v", i, in.err))
			}
			p.waitState(tb, i, "DOWN")
			instances[i] = startInstance(tb, bin, ports[i], cfg)
			p.waitState(tb, i, "UP")
		}
	}
	res.restartTime = time.Since(start)
	c.waitConnected(tb, cfg.websockets, cfg.sse) // everybody back
	stop()
	clients.Wait()
	c.result(&res)
	return res
}

// fleetClients are the clients of one run, and what they saw.
type fleetClients struct {
	addr string

	mu     sync.Mutex
	r      fleetResult
	wsUp   atomic.Int64 // websockets connected now
	sseUp  atomic.Int64 // event streams connected now
	dialer websocket.Dialer
	http   *http.Client
}

func newFleetClients(addr string) *fleetClients {
	return &fleetClients{
		addr:   addr,
		r:      fleetResult{wsCloses: make(map[int]int)},
		dialer: websocket.Dialer{HandshakeTimeout: 10 * time.Second},
		http: &http.Client{Transport: &http.Transport{
			MaxIdleConnsPerHost: 100,
			DisableCompression:  true,
		}},
	}
}

func (c *fleetClients) failed(kind, what string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch kind {
	case "get":
		c.r.failedGets++
	case "connect":
		c.r.failedReconnects++
	case "sse":
		c.r.sseBroken++
	}
	if c.r.firstFailure == "" {
		c.r.firstFailure = kind + ": " + what
	}
}

func (c *fleetClients) start(ctx context.Context, wg *sync.WaitGroup, cfg fleetConfig) {
	for range cfg.websockets {
		wg.Go(func() { c.websocket(ctx) })
	}
	for range cfg.sse {
		wg.Go(func() { c.events(ctx) })
	}
	if cfg.getsPerSecond > 0 {
		wg.Go(func() { c.gets(ctx, cfg.getsPerSecond) })
	}
}

// websocket connects, reads until the connection ends, records how, and
// reconnects at once, until ctx ends.
func (c *fleetClients) websocket(ctx context.Context) {
	for first := true; ctx.Err() == nil; first = false {
		conn, resp, err := c.dialer.DialContext(ctx, "ws://"+c.addr+"/ws", nil)
		if err != nil {
			if ctx.Err() == nil {
				status := ""
				if resp != nil {
					status = resp.Status
				}
				c.failed("connect", fmt.Sprintf("websocket: %v %s", err, status))
				time.Sleep(50 * time.Millisecond) // and try again, as a browser would
			}
			continue
		}
		resp.Body.Close()
		if !first {
			c.mu.Lock()
			c.r.reconnectTimes = append(c.r.reconnectTimes, time.Now())
			c.mu.Unlock()
		}
		c.wsUp.Add(1)
		stopped := context.AfterFunc(ctx, func() { conn.Close() })
		code := websocket.CloseAbnormalClosure
		for {
			if _, _, err := conn.ReadMessage(); err != nil {
				var ce *websocket.CloseError
				if errors.As(err, &ce) {
					code = ce.Code
				}
				break
			}
		}
		c.wsUp.Add(-1)
		conn.Close()
		if stopped() { // not ended by the test itself
			c.mu.Lock()
			c.r.wsCloses[code]++
			c.mu.Unlock()
		}
	}
}

// events reads an event stream until it ends, records whether it ended
// with the goodbye event, and reconnects at once, until ctx ends.
func (c *fleetClients) events(ctx context.Context) {
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.addr+"/events", nil)
		resp, err := c.http.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			if ctx.Err() == nil {
				what := fmt.Sprint(err)
				if resp != nil {
					what = resp.Status
					resp.Body.Close()
				}
				c.failed("connect", "events: "+what)
				time.Sleep(50 * time.Millisecond)
			}
			continue
		}
		c.sseUp.Add(1)
		sc := bufio.NewScanner(resp.Body)
		goodbye := false
		for sc.Scan() {
			if sc.Text() == "event: shutdown" {
				goodbye = true
			}
		}
		c.sseUp.Add(-1)
		resp.Body.Close()
		switch {
		case ctx.Err() != nil:
		case goodbye && sc.Err() == nil:
			c.mu.Lock()
			c.r.sseEnded++
			c.mu.Unlock()
		default:
			c.failed("sse", fmt.Sprintf("stream ended without its goodbye: %v", sc.Err()))
		}
	}
}

// gets sends perSecond plain requests a second, paced, until ctx ends.
func (c *fleetClients) gets(ctx context.Context, perSecond int) {
	t := time.NewTicker(time.Second / time.Duration(perSecond))
	defer t.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		wg.Go(func() {
			// Not under ctx: a request under way when the test ends completes.
			resp, err := c.http.Get("http://" + c.addr + "/")
			if err == nil {
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err == nil && resp.StatusCode != http.StatusOK {
					err = errors.New(resp.Status)
				}
			}
			c.mu.Lock()
			c.r.gets++
			c.mu.Unlock()
			if err != nil {
				c.failed("get", err.Error())
			}
		})
	}
}

// waitConnected waits until ws websockets and sse streams are connected.
func (c *fleetClients) waitConnected(tb testing.TB, ws, sse int) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for c.wsUp.Load() < int64(ws) || c.sseUp.Load() < int64(sse) {
		if time.Now().After(deadline) {
			tb.Fatalf("%d of %d websockets and %d of %d streams connected", c.wsUp.Load(), ws, c.sseUp.Load(), sse)
		}
		time.Sleep(10 * time.Millisecond) // the clients announce nothing
	}
}

func (c *fleetClients) result(res *fleetResult) {
	c.mu.Lock()
	defer c.mu.Unlock()
	restart, unexpected := res.restartTime, res.unexpectedExit
	*res = c.r
	res.restartTime, res.unexpectedExit = restart, unexpected
	slices.SortFunc(res.reconnectTimes, func(a, b time.Time) int { return a.Compare(b) })
	res.peak = wstest.PeakWithin(res.reconnectTimes, 100*time.Millisecond)
}

func (r fleetResult) String() string {
	return fmt.Sprintf("%d GETs (%d failed), websocket closes %v, %d failed connects, %d streams ended by their goodbye (%d broken), peak %d reconnects per 100 ms, restarts took %v; first failure: %q",
		r.gets, r.failedGets, r.wsCloses, r.failedReconnects, r.sseEnded, r.sseBroken, r.peak, r.restartTime.Round(time.Millisecond), r.firstFailure)
}

// A rolling restart of the fleet behind HAProxy, with the drain delay that
// HAProxy's checks need (500 ms interval, fall 1) and without and with a
// stagger: no request, connect or stream fails, every websocket gets 1001,
// every stream its goodbye, and the stagger cuts the reconnect peak to a
// quarter at most.
func TestFleetRollingRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a fleet of the built example behind HAProxy: skipped in -short mode")
	}
	haproxyCommand(t)
	base := fleetConfig{drainDelay: 1500 * time.Millisecond, websockets: 150, sse: 15, getsPerSecond: 100, rounds: 1}
	plain := base
	plain.name = "drain delay"
	staggered := base
	staggered.name, staggered.stagger = "drain delay and stagger", 2*time.Second
	var results []fleetResult
	for _, cfg := range []fleetConfig{plain, staggered} {
		res := runFleet(t, cfg)
		t.Logf("%s: %v", cfg.name, res)
		if res.failedGets != 0 || res.failedReconnects != 0 || res.sseBroken != 0 || len(res.unexpectedExit) != 0 {
			t.Errorf("%s: failures: %v; exits: %v", cfg.name, res, res.unexpectedExit)
		}
		for code, n := range res.wsCloses {
			if code != websocket.CloseGoingAway {
				t.Errorf("%s: %d websockets closed with %d, want 1001 for all", cfg.name, n, code)
			}
		}
		// Every client of every instance moved once per round.
		if got, want := res.wsCloses[websocket.CloseGoingAway], cfg.websockets*cfg.rounds; got < want {
			t.Errorf("%s: %d websockets closed with 1001, want at least %d", cfg.name, got, want)
		}
		if got, want := res.sseEnded, cfg.sse*cfg.rounds; got < want {
			t.Errorf("%s: %d streams ended by their goodbye, want at least %d", cfg.name, got, want)
		}
		results = append(results, res)
	}
	if 4*results[1].peak > results[0].peak {
		t.Errorf("peak reconnects per 100 ms: %d with a stagger, %d without: want at most a quarter", results[1].peak, results[0].peak)
	}
}

// BenchmarkFleet runs the rolling restart at a larger scale (600 websockets,
// 50 event streams, 200 GETs a second, three rounds) in four ways: without
// a drain delay, with one, with one and a stagger, and with SIGKILL for
// comparison. Run it with -benchtime 1x; each metric is what the clients
// saw.
func BenchmarkFleet(b *testing.B) {
	haproxyCommand(b)
	base := fleetConfig{websockets: 600, sse: 50, getsPerSecond: 200, rounds: 3}
	for _, cfg := range []fleetConfig{
		{name: "no-drain-delay"},
		{name: "drain-delay", drainDelay: 1500 * time.Millisecond},
		{name: "drain-delay-and-stagger", drainDelay: 1500 * time.Millisecond, stagger: 2 * time.Second},
		{name: "sigkill", kill: true},
	} {
		cfg.websockets, cfg.sse, cfg.getsPerSecond, cfg.rounds = base.websockets, base.sse, base.getsPerSecond, base.rounds
		b.Run(cfg.name, func(b *testing.B) {
			for range b.N {
				res := runFleet(b, cfg)
				b.Logf("%v", res)
				b.ReportMetric(float64(res.gets), "gets")
				b.ReportMetric(float64(res.failedGets), "failed-gets")
				b.ReportMetric(float64(res.failedReconnects), "failed-connects")
				b.ReportMetric(float64(res.wsCloses[websocket.CloseGoingAway]), "ws-1001")
				b.ReportMetric(float64(res.wsCloses[websocket.CloseAbnormalClosure]), "ws-1006")
				b.ReportMetric(float64(res.sseEnded), "sse-goodbyes")
				b.ReportMetric(float64(res.sseBroken), "sse-broken")
				b.ReportMetric(float64(res.peak), "peak/100ms")
				b.ReportMetric(res.restartTime.Seconds(), "restart-s")
			}
		})
	}
}
