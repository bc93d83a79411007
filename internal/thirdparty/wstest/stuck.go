package wstest

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync"
	"syscall"
	"testing"
	"time"
)

// smallBuffer is the socket buffer size, before the kernel doubles it, of
// the peers that stop reading and of the servers that write to them: the
// servers' writes then block after a few KB, whatever the machine's
// defaults, and a thousand stuck peers cost little memory.
const smallBuffer = 4096

// DialStuck opens a websocket to rawURL (ws or wss; tlsConfig for wss) by
// hand, reads the server's handshake, and reads nothing from then on: a peer
// that stopped reading, like a phone in a tunnel. Its receive buffer is
// small, so that the server's writes block soon. It is closed when the test
// ends.
func DialStuck(t testing.TB, rawURL string, tlsConfig *tls.Config) net.Conn {
	t.Helper()
	c, err := OpenStuck(rawURL, tlsConfig)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// OpenStuck is DialStuck for any goroutine: the caller closes the
// connection.
func OpenStuck(rawURL string, tlsConfig *tls.Config) (net.Conn, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, smallBuffer)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	c, err := d.Dial("tcp", u.Host)
	if err != nil {
		return nil, err
	}
	if err := handshake(&c, u, tlsConfig); err != nil {
		c.Close()
		return nil, fmt.Errorf("websocket handshake with %s: %w", u.Host, err)
	}
	return c, nil
}

// handshake makes *c a TLS connection for wss, and opens the websocket.
func handshake(c *net.Conn, u *url.URL, tlsConfig *tls.Config) error {
	if u.Scheme == "wss" {
		cfg := tlsConfig.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName = "example.com" // in httptest's certificate
		}
		tc := tls.Client(*c, cfg)
		if err := tc.Handshake(); err != nil {
			return err
		}
		*c = tc
	}
	req := "GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13" +
		"\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
	if _, err := (*c).Write([]byte(req)); err != nil {
		return err
	}
	// Byte by byte, so that nothing after the head is read.
	var head bytes.Buffer
	one := make([]byte, 1)
	for !bytes.HasSuffix(head.Bytes(), []byte("\r\n\r\n")) {
		if _, err := (*c).Read(one); err != nil {
			return fmt.Errorf("%w after %q", err, head.String())
		}
		head.Write(one)
	}
	resp, err := http.ReadResponse(bufio.NewReader(&head), nil)
	if err != nil {
		return err
	}
	resp.Body.Close() // the head only: nothing to read
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return fmt.Errorf("%q, want 101", head.String())
	}
	return nil
}

// SmallSendBuffers returns ln, whose accepted connections have small send
// buffers: a server's writes to a peer that stopped reading then block
// after a few KB.
func SmallSendBuffers(ln net.Listener) net.Listener { return smallSendBuffers{ln} }

type smallSendBuffers struct{ net.Listener }

func (l smallSendBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(smallBuffer) // the test still runs with larger buffers, only slower
	}
	return c, err
}

// FillsThenIdles returns a handler that hijacks its connection, opens a
// websocket by hand, writes 1 KB frames until its peer's buffers are full
// (a write that does not complete within 50 ms, which may leave a frame
// unfinished), and then goes idle: it reads until the connection ends, and
// closes it. full receives once each connection is in that state.
func FillsThenIdles(full chan<- struct{}) http.Handler {
	frame := append([]byte{0x82, 126, 4, 0}, make([]byte, 1024)...) // a binary frame of 1 KB
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		_ = brw.Flush()
		for {
			_ = c.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
			if _, err := c.Write(frame); err != nil {
				break // full, perhaps inside a frame
			}
		}
		_ = c.SetWriteDeadline(time.Time{})
		full <- struct{}{}
		var buf [64]byte
		for {
			if _, err := c.Read(buf[:]); err != nil {
				return
			}
		}
	})
}

// DialStuckPeers opens n peers with DialStuck, a few at a time. They are
// closed when the test ends.
func DialStuckPeers(t testing.TB, rawURL string, tlsConfig *tls.Config, n int) {
	t.Helper()
	var wg sync.WaitGroup
	next, errs := make(chan struct{}), make(chan error, n)
	for range min(n, 8) {
		wg.Go(func() {
			for range next {
				c, err := OpenStuck(rawURL, tlsConfig)
				if err != nil {
					errs <- err
					continue
				}
				t.Cleanup(func() { c.Close() })
			}
		})
	}
	for range n {
		next <- struct{}{}
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
