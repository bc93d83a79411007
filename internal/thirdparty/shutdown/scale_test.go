package shutdown_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsshutdown/wsshutdown/internal/thirdparty/wstest"
	"github.com/wsshutdown/wsshutdown/shutdown"
)

// clientsEnv, set to "URL N", makes this test binary a process of N
// gorilla websocket clients of URL rather than a test run (TestMain), so
// that a benchmark's clients do not share its process, its scheduler and
// its garbage collector with the server it measures.
const clientsEnv = "WSSHUTDOWN_BENCH_CLIENTS"

// runClients dials the clients that clientsEnv asks for, 64 at a time,
// prints "connected" once all are up, then reads each until its
// connection ends, and prints "ended" with how many read 1001, how many
// anything else, and the Unix time in nanoseconds of the last end. It
// returns the process's exit code.
func runClients(spec string) int {
	url, count, _ := strings.Cut(spec, " ")
	n, err := strconv.Atoi(count)
	if err != nil {
		fmt.Println("error:", err)
		return 2
	}
	var goingAway, other, last atomic.Int64
	var read sync.WaitGroup
	dials := make(chan struct{}, 64)
	errs := make(chan error, n)
	for range n {
		dials <- struct{}{}
		go func() {
			c, resp, err := websocket.DefaultDialer.Dial(url, nil)
			<-dials
			if err != nil {
				errs <- err
				return
			}
			resp.Body.Close()
			read.Add(1)
			errs <- nil
			go func() {
				defer read.Done()
				defer c.Close()
				for {
					if _, _, err := c.NextReader(); err != nil {
						var ce *websocket.CloseError
						if errors.As(err, &ce) && ce.Code == websocket.CloseGoingAway {
							goingAway.Add(1)
						} else {
							other.Add(1)
						}
						for now := time.Now().UnixNano(); ; {
							if l := last.Load(); l >= now || last.CompareAndSwap(l, now) {
								break
							}
						}
						return
					}
				}
			}()
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			fmt.Println("error:", err)
			return 1
		}
	}
	fmt.Println("connected")
	read.Wait()
	fmt.Println("ended", goingAway.Load(), other.Load(), last.Load())
	return 0
}

// clientProcess is a process of clients of a server, started by
// startClients.
type clientProcess struct {
	cmd *exec.Cmd
	out *bufio.Scanner
}

// startClients starts a process of n clients of url and returns once all
// are connected.
func startClients(tb testing.TB, url string, n int) *clientProcess {
	tb.Helper()
	exe, err := os.Executable()
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), clientsEnv+"="+url+" "+strconv.Itoa(n))
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	p := &clientProcess{cmd: cmd, out: bufio.NewScanner(stdout)}
	tb.Cleanup(func() {
		_ = cmd.Process.Kill() // if it is still running: the error says it is not
		_ = cmd.Wait()
	})
	if line := p.line(tb); line != "connected" {
		tb.Fatalf("clients: %q", line)
	}
	return p
}

// line returns the process's next line of output.
func (p *clientProcess) line(tb testing.TB) string {
	tb.Helper()
	if !p.out.Scan() {
		tb.Fatalf("the clients' process ended: %v", p.out.Err())
	}
	return p.out.Text()
}

// ended waits for every client's end, fails unless each read 1001, and
// returns when the last one ended.
func (p *clientProcess) ended(tb testing.TB, n int) time.Time {
	tb.Helper()
	var goingAway, other, last int64
	if _, err := fmt.Sscanf(p.line(tb), "ended %d %d %d", &goingAway, &other, &last); err != nil {
		tb.Fatal(err)
	}
	if goingAway != int64(n) || other != 0 {
		tb.Fatalf("%d of %d clients read 1001, %d something else", goingAway, n, other)
	}
	return time.Unix(0, last)
}

// floorServer is the floor of a drain: gorilla handlers that say their own
// 1001 when stop closes, wait for their client's answer and close, with no
// library in between; handlers counts them while they run.
func floorServer(stop <-chan struct{}, handlers *sync.WaitGroup) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handlers.Add(1)
		defer handlers.Done()
		c, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		readDone := make(chan struct{})
		go func() {
			defer close(readDone)
			for {
				if _, _, err := c.NextReader(); err != nil {
					return
				}
			}
		}()
		select {
		case <-readDone:
		case <-stop:
			msg := websocket.FormatCloseMessage(websocket.CloseGoingAway, wstest.Reason)
			_ = c.WriteControl(websocket.CloseMessage, msg, time.Now().Add(5*time.Second))
			select { // the client's close frame ends the read loop
			case <-readDone:
			case <-time.After(5 * time.Second):
			}
		}
	})
}

// drainCost is what a drain took: its wall time until it returned, until
// the last client read its close, and the server process's CPU time.
type drainCost struct{ wall, lastClose, cpu time.Duration }

func (c *drainCost) add(o drainCost) {
	c.wall += o.wall
	c.lastClose += o.lastClose
	c.cpu += o.cpu
}

// cpuTime returns the CPU time this process has used, user and system.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// drainFloor serves n clients in another process from floorServer and
// measures the drain: stop closed, until every handler has returned.
func drainFloor(b *testing.B, n int) drainCost {
	stop := make(chan struct{})
	var handlers sync.WaitGroup
	ts := httptest.NewServer(floorServer(stop, &handlers))
	defer ts.Close()
	clients := startClients(b, wsURL(ts), n)
	start, cpu := time.Now(), cpuTime(b)
	close(stop)
	handlers.Wait()
	cost := drainCost{wall: time.Since(start), cpu: cpuTime(b) - cpu}
	cost.lastClose = clients.ended(b, n).Sub(start)
	return cost
}

// unawareReader is floorServer's shape without its stop: a handler that
// reads until its connection ends, and knows nothing of the drain.
func unawareReader() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			if _, _, err := c.NextReader(); err != nil {
				return
			}
		}
	})
}

// drainUnaware serves n clients in another process from h, which knows
// nothing of the drain, through the Shutdowner on a server wired as the
// README wires one, and measures ShutdownWithServer.
func drainUnaware(b *testing.B, n int, h http.Handler) drainCost {
	var s shutdown.Shutdowner
	ts := httptest.NewUnstartedServer(s.Middleware(h))
	s.ConfigureServer(ts.Config)
	ts.Start()
	defer ts.Close()
	clients := startClients(b, wsURL(ts), n)
	wstest.WaitUntil(b, func() bool { return s.Stats().Hijacked == n })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start, cpu := time.Now(), cpuTime(b)
	if err := s.ShutdownWithServer(ctx, ts.Config); err != nil {
		b.Fatal(err)
	}
	cost := drainCost{wall: time.Since(start), cpu: cpuTime(b) - cpu}
	cost.lastClose = clients.ended(b, n).Sub(start)
	return cost
}

// BenchmarkDrainAtScale drains N websockets whose clients run in another
// process: handlers that know nothing of the drain, to which the
// Shutdowner says goodbye, against the floor, handlers that say their own
// 1001 when a channel closes with no library at all, alternated within
// each iteration. The unaware handlers are the floor's shape without its
// stop ("reader"), or gorilla's chat example ("chat"), whose hub and
// pumps cost more than the floor's shape with or without the library. It
// reports both drains' wall time, the time until the last client read its
// close, the server's CPU time, and the ratios; every client must read
// 1001. Run it with -benchtime 2x or more; 15,000 connections take 15,000
// descriptors in each process.
func BenchmarkDrainAtScale(b *testing.B) {
	shapes := []struct {
		name string
		h    func() http.Handler
	}{
		{"reader", unawareReader},
		{"chat", func() http.Handler { return gorillaChat().handler }},
	}
	for _, n := range []int{1000, 5000, 15000} {
		for _, shape := range shapes {
			b.Run(fmt.Sprintf("%d/%s", n, shape.name), func(b *testing.B) { benchmarkDrainAtScale(b, n, shape.h) })
		}
	}
}

func benchmarkDrainAtScale(b *testing.B, n int, h func() http.Handler) {
	var floor, unaware drainCost
	var wallRatios, cpuRatios []float64 // an iteration's each
	for i := range b.N {
		var f, u drainCost
		if i%2 == 0 {
			f = drainFloor(b, n)
			u = drainUnaware(b, n, h())
		} else {
			u = drainUnaware(b, n, h())
			f = drainFloor(b, n)
		}
		floor.add(f)
		unaware.add(u)
		wallRatios = append(wallRatios, float64(u.wall)/float64(f.wall))
		cpuRatios = append(cpuRatios, float64(u.cpu)/float64(f.cpu))
	}
	// The medians of the iterations' ratios, which one iteration that a
	// busy machine slowed moves less than it moves the ratios of the sums.
	b.ReportMetric(median(wallRatios), "wall-ratio-median")
	b.ReportMetric(median(cpuRatios), "cpu-ratio-median")
	per := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(b.N) }
	b.ReportMetric(per(floor.wall), "floor-ms")
	b.ReportMetric(per(unaware.wall), "unaware-ms")
	b.ReportMetric(float64(unaware.wall)/float64(floor.wall), "wall-ratio")
	b.ReportMetric(per(floor.lastClose), "floor-last-close-ms")
	b.ReportMetric(per(unaware.lastClose), "unaware-last-close-ms")
	b.ReportMetric(per(floor.cpu), "floor-cpu-ms")
	b.ReportMetric(per(unaware.cpu), "unaware-cpu-ms")
	b.ReportMetric(float64(unaware.cpu)/float64(floor.cpu), "cpu-ratio")
}

// median returns the median of xs, which it sorts.
func median(xs []float64) float64 {
	slices.Sort(xs)
	if len(xs)%2 == 1 {
		return xs[len(xs)/2]
	}
	return (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
}
