package shutdown

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestMain fails the run if goroutines outlive the tests. It does by hand
// what go.uber.org/goleak does for the other packages, because go mod tidy
// keeps the checksums of an imported package's test dependencies: goleak
// here would put a module into the go.sum of every program that imports
// shutdown, which promises none. The thirdparty module runs this package's
// code under goleak itself.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaked := leakedGoroutines(5 * time.Second); leaked != "" {
			fmt.Fprintf(os.Stderr, "goroutines outlived the tests:\n\n%s", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// leakedGoroutines waits up to d for every goroutine but this one and
// those of the testing and os/signal packages to end, and returns the
// stacks of those that did not.
func leakedGoroutines(d time.Duration) string {
	deadline := time.Now().Add(d)
	for wait := time.Millisecond; ; wait = min(2*wait, 100*time.Millisecond) {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var leaked []string
		for i, g := range strings.Split(string(buf), "\n\n") {
			if i > 0 && !background(g) { // the first is this goroutine
				leaked = append(leaked, g)
			}
		}
		if len(leaked) == 0 || time.Now().After(deadline) {
			return strings.Join(leaked, "\n\n")
		}
		time.Sleep(wait) // nothing to wait on: the goroutines are not ours
	}
}

// background reports whether a goroutine's stack is one the testing or
// os/signal package runs for good, as goleak's defaults have it.
func background(stack string) bool {
	lines := strings.SplitN(stack, "\n", 3)
	if len(lines) < 2 {
		return true
	}
	top := lines[1]
	if i := strings.LastIndexByte(top, '('); i > 0 {
		top = top[:i]
	}
	switch top {
	case "testing.RunTests", "testing.(*T).Run", "testing.(*T).Parallel", "testing.runFuzzing", "testing.runFuzzTests":
		return strings.Contains(lines[0], "[chan receive")
	case "os/signal.signal_recv", "os/signal.loop":
		return true
	}
	return strings.Contains(stack, "runtime.ensureSigM")
}
