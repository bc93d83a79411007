package main

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// browserPath returns the Chromium or Chrome to run, or skips the test.
func browserPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	const missing = "no Chromium or Chrome installed (Debian: apt-get install chromium)"
	if os.Getenv("WSSHUTDOWN_REQUIRE_BROWSER") != "" {
		t.Fatal(missing + ", and WSSHUTDOWN_REQUIRE_BROWSER is set")
	}
	t.Skip(missing + ": the page is not tested in a browser")
	return ""
}

// The page in a real headless Chromium: it loads, shows the ticks of both
// streams, and when the server drains shows the websocket's 1001 and the
// event stream's clean end.
func TestPageInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser: skipped in -short mode")
	}
	page := openBrowser(t)
	app, addr, _ := startApp(t)

	err := chromedp.Do(page,
		chromedp.Navigate("http://"+addr+"/"),
		waitFor(`text("ws-status") === "open"`),
		waitFor(`Number(text("ws-ticks")) >= 2`),
		waitFor(`Number(text("sse-ticks")) >= 2`),
		waitFor(`Number(text("uws-ticks")) >= 2 && Number(text("bws-ticks")) >= 2`),
		waitFor(`Number(text("usse-ticks")) >= 2 && Number(text("bsse-ticks")) >= 2`),
	)
	if err != nil {
		t.Fatalf("the page did not show ticks: %v", err)
	}

	app.RequireStop()
	err = chromedp.Do(page,
		waitFor(`text("ws-status").startsWith("closed")`),
		waitFor(`text("sse-status").startsWith("ended")`),
		waitFor(`text("uws-status").startsWith("closed") && text("bws-status").startsWith("closed")`),
		waitFor(`text("usse-status") !== "open" && text("bsse-status") !== "open"`),
	)
	if err != nil {
		t.Fatalf("the page did not show the drain: %v", err)
	}
	if got, want := pageText(page, t, "ws-status"), `closed: 1001 "server shutting down" (clean goodbye)`; got != want {
		t.Errorf("websocket status %q, want %q", got, want)
	}
	if got, want := pageText(page, t, "sse-status"), `ended cleanly: "server shutting down"`; got != want {
		t.Errorf("event stream status %q, want %q", got, want)
	}
	// The handlers that know nothing of the drain: their goodbyes said on
	// their behalf, and on the bare server none.
	if got, want := pageText(page, t, "uws-status"), `closed: 1001 "server shutting down" (clean goodbye)`; got != want {
		t.Errorf("drain-unaware websocket status %q, want %q", got, want)
	}
	if got, want := pageText(page, t, "bws-status"), `closed: 1006 (dropped without a close frame)`; got != want {
		t.Errorf("bare websocket status %q, want %q", got, want)
	}
	if got := pageText(page, t, "usse-status"); !strings.HasPrefix(got, "ended cleanly, retry: ") {
		t.Errorf("drain-unaware event stream status %q, want a clean end after a retry field", got)
	}
	if got := pageText(page, t, "bsse-status"); !strings.HasPrefix(got, "stream broken") {
		t.Errorf("bare event stream status %q, want a broken stream", got)
	}
	for _, card := range []string{"ws", "sse", "uws", "bws", "usse", "bsse"} {
		if at := pageText(page, t, card+"-at"); len(at) != len("15:04:05.000") {
			t.Errorf("%s card's time %q, want the time its client saw the end", card, at)
		}
	}
	if path := os.Getenv("WSSHUTDOWN_SCREENSHOT"); path != "" {
		png, err := chromedp.Run(page, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// openBrowser starts a headless Chromium for the test, or skips it, and
// returns a page's context; the browser stops when the test ends.
func openBrowser(t *testing.T) context.Context {
	t.Helper()
	browser := browserPath(t)
	// Chromium's helpers may still write in their profile for a moment
	// after it stops, so the profile is not in t.TempDir, whose removal
	// would fail the test.
	profile, err := os.MkdirTemp("", "wsshutdown-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeLater(profile) })
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser),
		chromedp.NoSandbox, // CI runs as root
		chromedp.DisableGPU,
		chromedp.UserDataDir(profile),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-quic", true),
	)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	page, cancelPage := chromedp.NewContext(allocCtx)
	t.Cleanup(func() { cancelPage(); cancelAlloc(); cancel() })
	return page
}

// text is the page's function for the expressions below: the text of the
// element with the id.
const text = `const text = (id) => document.getElementById(id).textContent;`

// waitFor polls the page until expression is true.
func waitFor(expression string) chromedp.Action[chromedp.Void] {
	poll := chromedp.PollFunction[bool]("() => { "+text+" return "+expression+"; }", chromedp.WithPollingInterval(20*time.Millisecond))
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := poll(ctx, t)
		return chromedp.Void{}, err
	}
}

func pageText(page context.Context, t *testing.T, id string) string {
	t.Helper()
	s, err := chromedp.Run(page, chromedp.Evaluate[string](`document.getElementById("`+id+`").textContent`))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// removeLater removes dir, trying again for a few seconds while Chromium's
// last helpers write in it.
func removeLater(dir string) {
	for range 50 {
		if os.RemoveAll(dir) == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}
