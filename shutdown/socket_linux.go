package shutdown

import (
	"errors"
	"net"
	"syscall"
	"unsafe"
)

// peerClosed reports whether c's peer has closed its side of the
// connection and nothing it sent is left unread: a peek at the socket,
// which neither waits nor consumes, nor takes the connection's read lock,
// which a reader blocked in Read holds.
func peerClosed(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	closed := false
	_ = rc.Control(func(fd uintptr) {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		closed = err == nil && n == 0
	})
	return closed
}

// unsent returns how many bytes written to c its peer has not acknowledged
// yet (TIOCOUTQ, as ss reports Send-Q), or -1 where it cannot tell.
func unsent(c net.Conn) int {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return -1
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1
	}
	n := -1
	_ = rc.Control(func(fd uintptr) {
		var v int32
		if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCOUTQ, uintptr(unsafe.Pointer(&v))); errno == 0 {
			n = int(v)
		}
	})
	return n
}

// tryWrite writes p to c, if c is a socket, in one attempt that does not
// wait for room in its buffer, and so needs neither a write deadline, whose
// timer would fire after each of thousands of goodbyes, nor a goroutine: it
// returns how much of p went out (less, with no error, where the buffer had
// too little room), or the write's error. It reports tried false where it
// did not write: c is not a socket (a TLS connection), is closed, or its
// write deadline has passed.
func tryWrite(c net.Conn, p []byte) (n int, tried bool, err error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0, false, nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, false, nil
	}
	// RawConn.Write holds the socket's write lock, as net.Conn's Write
	// does, and calls f once: it waits only if f reports false.
	if rc.Write(func(fd uintptr) bool {
		n, err = syscall.Write(int(fd), p)
		return true
	}) != nil {
		return 0, false, nil
	}
	if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR) {
		return 0, true, nil
	}
	return max(n, 0), true, err
}
