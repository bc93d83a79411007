//go:build !linux

package shutdown

import "net"

// peerClosed returns false: the lingering close finds out by reading.
func peerClosed(net.Conn) bool { return false }

// unsent returns -1: this system does not tell how much of what was
// written to c its peer has acknowledged.
func unsent(net.Conn) int { return -1 }

// tryWrite reports tried false: a goodbye is written from a goroutine of
// its own, under its deadline.
func tryWrite(net.Conn, []byte) (n int, tried bool, err error) { return 0, false, nil }
