//go:build !linux || 386

package shutdown

import (
	"net"
	"time"
)

// lastSent reports ok false: this system does not tell when c last sent
// data (linux/386 has no getsockopt system call of its own, and the
// standard library's socketcall is not exported), and a lingering close
// sees a peer's progress only in what it has acknowledged.
func lastSent(net.Conn) (ago time.Duration, ok bool) { return 0, false }
