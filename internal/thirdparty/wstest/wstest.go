// Package wstest holds the websocket peers that the tests of this module
// share: a gorilla/websocket handler that says goodbye when its request
// drains, and a gorilla client that reports how its connection ended.
package wstest

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsshutdown/wsshutdown/shutdown"
)

// Reason is the reason of the handlers' 1001.
const Reason = "server shutting down"

// Abnormal is the code of a connection that ended without a close frame
// (1006, which is never sent on the wire).
const Abnormal = websocket.CloseAbnormalClosure

// A Goodbye is how a client's connection ended: the close code and reason
// it read (Abnormal and "" without a close frame), and when.
type Goodbye struct {
	Code int
	Text string
	At   time.Time
}

// Server returns a gorilla handler that echoes messages and, when its
// request's drain signal fires, closes with 1001 and waits for the client's
// close frame. connected receives once each connection is up.
func Server(connected chan<- struct{}) http.Handler {
	return ServerSaying(connected, websocket.CloseGoingAway, Reason)
}

// ServerSaying is Server with its own close code and reason.
func ServerSaying(connected chan<- struct{}, code int, reason string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		drain := shutdown.Draining(r.Context()) // asked first: the goodbye is this handler's
		c, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		readDone := make(chan struct{})
		go func() {
			defer close(readDone)
			for {
				mt, p, err := c.ReadMessage()
				if err != nil {
					return
				}
				_ = c.WriteMessage(mt, p)
			}
		}()
		connected <- struct{}{}
		select {
		case <-readDone:
		case <-drain:
			msg := websocket.FormatCloseMessage(code, reason)
			_ = c.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
			select { // the client's close frame ends the read loop
			case <-readDone:
			case <-time.After(5 * time.Second):
			}
		}
	})
}

// IgnoresDrain returns a gorilla handler that asks for its drain signal and
// ignores it: it reads until its connection ends, and closes it. Having
// asked, it gets no goodbye on its behalf before the deadline. connected
// receives once each connection is up. With handOff the handler hands the
// connection to a goroutine and returns at once (the chat shape); otherwise
// it reads itself.
func IgnoresDrain(connected chan<- struct{}, handOff bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = shutdown.Draining(r.Context()) // asked, and ignored
		c, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return // the client's dial fails
		}
		connected <- struct{}{}
		read := func() {
			defer c.Close()
			for {
				if _, _, err := c.NextReader(); err != nil {
					return
				}
			}
		}
		if handOff {
			go read()
			return
		}
		read()
	})
}

// Dial connects a gorilla client to url, reads until the connection ends,
// and sends how it ended.
func Dial(t testing.TB, url string) <-chan Goodbye {
	t.Helper()
	return DialWith(t, websocket.DefaultDialer, url)
}

// DialWith is Dial with d, for a TLS configuration, say.
func DialWith(t testing.TB, d *websocket.Dialer, url string) <-chan Goodbye {
	t.Helper()
	c, resp, err := d.Dial(url, nil)
	if err != nil {
		t.Fatalf("gorilla dial %s: %v", url, err)
	}
	resp.Body.Close()
	return Read(c)
}

// Read reads c until its connection ends, and sends how it ended.
func Read(c *websocket.Conn) <-chan Goodbye {
	ended := make(chan Goodbye, 1)
	go func() {
		defer c.Close()
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				g := Goodbye{Code: Abnormal, At: time.Now()}
				var ce *websocket.CloseError
				if errors.As(err, &ce) {
					g.Code, g.Text = ce.Code, ce.Text
				}
				ended <- g
				return
			}
		}
	}()
	return ended
}

// Receive waits for n values from c, failing the test after a generous bound
// so that a broken drain fails rather than hangs.
func Receive[T any](t testing.TB, c <-chan T, n int) []T {
	t.Helper()
	timeout := time.After(30 * time.Second)
	got := make([]T, 0, n)
	for len(got) < n {
		select {
		case v := <-c:
			got = append(got, v)
		case <-timeout:
			t.Fatalf("received %d of %d", len(got), n)
		}
	}
	return got
}

// WantCodes waits for every client's goodbye and fails the test unless each
// has the code want. It returns the goodbyes.
func WantCodes(t testing.TB, clients []<-chan Goodbye, want int) []Goodbye {
	t.Helper()
	goodbyes := make([]Goodbye, len(clients))
	for i, c := range clients {
		goodbyes[i] = Receive(t, c, 1)[0]
		if goodbyes[i].Code != want {
			t.Errorf("client %d saw close code %d, want %d", i, goodbyes[i].Code, want)
		}
	}
	return goodbyes
}

// PeakWithin returns the most times of sorted that lie within any interval
// of length d. A sliding interval, not fixed buckets: a burst that straddles
// a bucket's edge still counts whole.
func PeakWithin(sorted []time.Time, d time.Duration) int {
	peak, lo := 0, 0
	for hi, at := range sorted {
		for at.Sub(sorted[lo]) >= d {
			lo++
		}
		peak = max(peak, hi-lo+1)
	}
	return peak
}

// WaitUntil polls cond until it holds, failing the test after 30 s: for
// counts that nothing announces, such as a Shutdowner's Stats.
func WaitUntil(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 30 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Floods returns a gorilla handler that knows nothing of the drain and
// writes 1 KB messages as fast as its peer takes them, reading in a
// goroutine of its own as gorilla requires, until a write fails; then it
// closes the connection. connected receives once each connection is up.
func Floods(connected chan<- struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		go func() {
			for {
				if _, _, err := c.NextReader(); err != nil {
					return
				}
			}
		}()
		connected <- struct{}{}
		msg := make([]byte, 1024)
		for {
			if err := c.WriteMessage(websocket.BinaryMessage, msg); err != nil {
				return
			}
		}
	})
}
