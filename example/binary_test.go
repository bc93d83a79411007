package main

import (
	"bufio"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// The built program, run as a newcomer runs it: it serves, its clients get
// ticks, and on Ctrl-C (SIGINT) or SIGTERM they get their goodbyes, the drain
// is logged, and the process exits 0.
func TestBinaryDrainsOnSignal(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the example: skipped in -short mode")
	}
	bin := filepath.Join(t.TempDir(), "example")
	build := exec.Command(goTool(t), "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, sig := range []os.Signal{os.Interrupt, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) { runUntilSignal(t, bin, sig) })
	}
}

func runUntilSignal(t *testing.T, bin string, sig os.Signal) {
	cmd := exec.Command(bin, "-addr", "127.0.0.1:0", "-bare-addr", "127.0.0.1:0", "-tick", "20ms")
	// Not StderrPipe: Wait closes that pipe as soon as the process exits,
	// which can drop the last lines (the drain's) before readLog reads
	// them. With a writer, Wait returns once all output is copied.
	stderr, logged := io.Pipe()
	cmd.Stderr = logged
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var waitErr error // cmd.Wait's, once exited is closed
	exited := make(chan struct{})
	go func() {
		waitErr = cmd.Wait()
		logged.Close()
		close(exited)
	}()
	t.Cleanup(func() { // after a failure; a no-op once it exited
		_ = cmd.Process.Kill()
		<-exited
	})
	entries := make(chan map[string]any, 1000)
	go readLog(stderr, entries)

	addr := ""
	for addr == "" {
		e, ok := <-entries
		if !ok {
			t.Fatal("the program ended before it served")
		}
		if e["msg"] == "serving" {
			addr = e["addr"].(string)
		}
	}
	ws := dialWebSocket(t, addr)
	sse := dialEvents(t, addr)
	within(t, ws.ticks)
	within(t, sse.first)

	if err := cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	ws.wantGoodbye(t)
	sse.wantGoodbye(t)
	within(t, exited)
	if waitErr != nil {
		t.Fatalf("the program exited with %v, want status 0", waitErr)
	}
	var drained map[string]any
	for e := range entries {
		if e["msg"] == "drained" {
			drained = e
		}
	}
	if drained == nil || drained["active"] != 0.0 || drained["hijacked"] != 0.0 || drained["logger"] != "shutdown" {
		t.Fatalf("\"drained\" entry %v, want one from the shutdown logger with active and hijacked 0", drained)
	}
}

// readLog decodes the program's JSON log lines into entries until it ends.
// It reads r to its end in any case, so that the program never blocks on
// its stderr.
func readLog(r io.Reader, entries chan<- map[string]any) {
	defer close(entries)
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e map[string]any
		if json.Unmarshal(sc.Bytes(), &e) == nil {
			entries <- e
		}
	}
	_, _ = io.Copy(io.Discard, r)
}

// goTool returns the go command that runs this test.
func goTool(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	p := filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	if _, err := os.Stat(p); err != nil {
		t.Skip("no go command to build the example with")
	}
	return p
}
