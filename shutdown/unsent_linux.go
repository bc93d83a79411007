package shutdown

import (
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
