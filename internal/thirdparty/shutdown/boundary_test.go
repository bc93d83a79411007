package shutdown_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/http"
	"testing"
	"time"

	coder "github.com/coder/websocket"
	"github.com/gorilla/websocket"

	"github.com/wsshutdown/wsshutdown/shutdown"
)

// message returns the i-th message of a stream: its number, its length,
// then bytes that both follow from i, so that a client can check each
// message whole. Sizes run from a few bytes to 200 KB.
func message(i uint64) []byte {
	r := rand.New(rand.NewPCG(i, 42))
	size := 16 + r.IntN(1<<r.IntN(18))
	b := make([]byte, size)
	binary.BigEndian.PutUint64(b, i)
	binary.BigEndian.PutUint64(b[8:], uint64(size))
	for j := 16; j < size; j += 8 {
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], r.Uint64())
		copy(b[j:], w[:])
	}
	return b
}

// checkMessage reports what is wrong with msg, the want-th message.
func checkMessage(msg []byte, want uint64) error {
	if len(msg) < 16 {
		return fmt.Errorf("message of %d bytes", len(msg))
	}
	if i := binary.BigEndian.Uint64(msg); i != want {
		return fmt.Errorf("message %d, want %d", i, want)
	}
	if !bytes.Equal(msg, message(want)) {
		return fmt.Errorf("message %d (%d bytes) is not what was sent", want, len(msg))
	}
	return nil
}

// streamers are handlers that send message(0), message(1), ... as
// fragmented messages until a write fails, and read in a goroutine of their
// own (for the peer's control frames), knowing nothing of the drain.
var streamers = map[string]func(compress bool) http.Handler{
	"gorilla": func(compress bool) http.Handler {
		// A small write buffer: every message larger than it is sent
		// as fragments, one frame per buffer.
		up := websocket.Upgrader{WriteBufferSize: 1024, EnableCompression: compress}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, err := up.Upgrade(w, r, nil)
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
			for i := uint64(0); ; i++ {
				if err := c.WriteMessage(websocket.BinaryMessage, message(i)); err != nil {
					return
				}
			}
		})
	},
	"coder": func(compress bool) http.Handler {
		opts := &coder.AcceptOptions{CompressionMode: coder.CompressionDisabled}
		if compress {
			opts.CompressionMode = coder.CompressionContextTakeover
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, err := coder.Accept(w, r, opts)
			if err != nil {
				return
			}
			defer c.CloseNow()
			ctx := c.CloseRead(r.Context())
			for i := uint64(0); ; i++ {
				wr, err := c.Writer(ctx, coder.MessageBinary)
				if err != nil {
					return
				}
				// Pieces of random sizes: each becomes a frame of
				// its own, and coder's buffer splits them again.
				msg := message(i)
				for len(msg) > 0 && err == nil {
					n := min(len(msg), 1+rand.IntN(5000))
					_, err = wr.Write(msg[:n])
					msg = msg[n:]
				}
				if err != nil || wr.Close() != nil {
					return
				}
			}
		})
	},
}

// Drained in the middle of streams of large fragmented messages, with and
// without permessage-deflate, every client reads whole, intact messages in
// order, then the goodbye: never a cut frame, never a protocol error.
func TestGoodbyeAtFrameBoundary(t *testing.T) {
	const n = 20
	for name, streamer := range streamers {
		for _, compress := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/compress=%v", name, compress), func(t *testing.T) {
				var s shutdown.Shutdowner
				ts, _ := serve(t, &s, streamer(compress))
				dialer := websocket.Dialer{EnableCompression: compress}
				type result struct {
					read uint64
					err  error
				}
				results := make(chan result, n)
				reading := make(chan struct{}, n)
				for range n {
					c, resp, err := dialer.Dial(wsURL(ts), nil)
					if err != nil {
						t.Fatal(err)
					}
					resp.Body.Close()
					go func() {
						defer c.Close()
						var i uint64
						for ; ; i++ {
							_, msg, err := c.ReadMessage()
							if err != nil {
								if !websocket.IsCloseError(err, shutdown.DefaultGoodbyeCode) {
									err = fmt.Errorf("after %d messages: %w", i, err)
								} else {
									err = nil
								}
								results <- result{i, err}
								return
							}
							if err := checkMessage(msg, i); err != nil {
								results <- result{i, err}
								return
							}
							if i == 3 {
								reading <- struct{}{}
							}
						}
					}()
				}
				for range n {
					<-reading // every stream is well under way
				}
				// No time bound: under load the clients take seconds to
				// read and check the 200 KB messages before the goodbye.
				if err := s.ShutdownWithServer(contextWithTimeout(t, 30*time.Second), ts.Config); err != nil {
					t.Errorf("ShutdownWithServer: %v", err)
				}
				for range n {
					if r := <-results; r.err != nil {
						t.Errorf("client: %v", r.err)
					}
				}
				if got := s.Stats().Goodbyes; got != n {
					t.Errorf("Goodbyes = %d, want %d", got, n)
				}
			})
		}
	}
}
