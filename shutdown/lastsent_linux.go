//go:build linux && !386

package shutdown

import (
	"net"
	"syscall"
	"time"
	"unsafe"
)

// lastSent returns how long ago c's socket last sent data (TCP_INFO's
// last_data_sent, in the kernel's clock ticks), and reports ok where it
// can tell and no retransmission timeout has fired since its peer last
// acknowledged new data: data that a timeout resent, to a peer that may
// have vanished, says nothing of the peer. A peer whose window is shut is
// sent window probes, which carry no data and do not count; data goes out
// when it opens its window, or acknowledges what was in flight. A tail loss
// probe resends data without counting as a timeout: a peer that vanished
// on a path whose retransmission timeout is longer than the second before
// linger looks may so seem alive, and be given up a second later.
func lastSent(c net.Conn) (ago time.Duration, ok bool) {
	sc, isSocket := c.(syscall.Conn)
	if !isSocket {
		return 0, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, false
	}
	_ = rc.Control(func(fd uintptr) {
		var info syscall.TCPInfo
		size := uint32(unsafe.Sizeof(info))
		if _, _, errno := syscall.Syscall6(syscall.SYS_GETSOCKOPT, fd, syscall.IPPROTO_TCP, syscall.TCP_INFO,
			uintptr(unsafe.Pointer(&info)), uintptr(unsafe.Pointer(&size)), 0); errno != 0 {
			return
		}
		ago = time.Duration(info.Last_data_sent) * time.Millisecond
		ok = info.Retransmits == 0
	})
	return ago, ok
}
