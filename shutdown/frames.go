package shutdown

import (
	"encoding/binary"
	"strconv"
	"unicode/utf8"
)

// frameFollower follows a websocket connection's frames (RFC 6455, section
// 5.2) in one direction, so that a close frame can be put between two
// frames, never inside one, and a close frame is known when it has passed.
// The server's frames are followed as they are written, the HTTP response
// head first when it is written onto the hijacked connection; the client's
// as they are read. It reads only the frame headers: the payload is skipped
// by count, and nothing is copied, a header split across writes included,
// whose bytes are taken in one by one. The zero value expects either the
// response head or a server's frame; a client's stream begins with
// phaseFrames and client set.
//
// It is written by hand, not taken from a websocket library: this package
// imports the standard library only, and a library's frame reader parses
// what it reads, where this needs to follow, without allocating, what
// somebody else writes or reads. It is small (16 bytes) because an open
// websocket keeps two (TestConnMemory).
type frameFollower struct {
	// remain is the payload bytes of the current frame still to come;
	// while a header is split, its extended length as far as seen.
	remain uint64
	b0, b1 byte  // the first two bytes of a header split across writes
	hdrLen uint8 // bytes of that header seen so far
	phase  uint8 // phaseUndecided, phaseHead, phaseFrames or phaseLost
	crlf   uint8 // how much of "\r\n\r\n" ends the head seen so far
	closed bool  // a close frame has begun: no other may follow it
	client bool  // the frames are a client's, which RFC 6455 has masked
}

const (
	phaseUndecided = iota // nothing written yet: a response head or a frame
	phaseHead             // inside the HTTP response head
	phaseFrames           // in the frame stream
	phaseLost             // a client's frame was not masked: the stream is not followed
)

// atBoundary reports whether the next byte begins a frame.
func (f *frameFollower) atBoundary() bool {
	return f.phase == phaseFrames && f.hdrLen == 0 && f.remain == 0
}

// follow advances f over p, bytes that have gone to the peer or come from
// it.
func (f *frameFollower) follow(p []byte) {
	for len(p) > 0 {
		if f.phase == phaseFrames && f.hdrLen == 0 && f.remain == 0 && len(p) >= 2 {
			// The common case, whole frames in one write: a header and
			// its payload in one pass (BenchmarkFrameFollower).
			if n := headerLen(p[1]); n <= len(p) {
				f.frame(p[:n])
				p = p[n:]
				if uint64(len(p)) <= f.remain {
					f.remain -= uint64(len(p))
					return
				}
				p = p[f.remain:]
				f.remain = 0
				continue
			}
		}
		p = f.step(p)
	}
}

// toBoundary returns how many bytes of p come before the first frame
// boundary in it after f's position, or len(p) if there is none; zero when
// f is at a boundary now. It does not move f.
func (f *frameFollower) toBoundary(p []byte) int {
	g := *f
	n := 0
	for n < len(p) && !g.atBoundary() {
		n = len(p) - len(g.step(p[n:]))
	}
	if !g.atBoundary() {
		return len(p)
	}
	return n
}

// step consumes the bytes at the start of p that belong to the head, to a
// frame header, or to a payload, up to the end of that part, and returns
// the rest. p is not empty.
func (f *frameFollower) step(p []byte) []byte {
	switch {
	case f.remain > 0 && f.hdrLen == 0:
		if uint64(len(p)) <= f.remain {
			f.remain -= uint64(len(p))
			return nil
		}
		p = p[f.remain:]
		f.remain = 0
		return p
	case f.phase == phaseUndecided:
		// A server's frame never begins with 'H' (0x48 would be a
		// close frame without FIN, which RFC 6455 forbids).
		f.phase = phaseFrames
		if p[0] == 'H' {
			f.phase = phaseHead
		}
		return p
	case f.phase == phaseHead:
		for i, b := range p {
			switch b {
			case "\r\n\r\n"[f.crlf]:
				f.crlf++
			case '\r':
				f.crlf = 1
			default:
				f.crlf = 0
			}
			if f.crlf == 4 {
				f.phase = phaseFrames
				return p[i+1:]
			}
		}
		return nil
	case f.phase == phaseLost:
		return nil
	case f.hdrLen == 0 && len(p) >= 2 && headerLen(p[1]) <= len(p):
		n := headerLen(p[1]) // a whole header at once
		f.frame(p[:n])
		return p[n:]
	default:
		// A header split across writes, taken in byte by byte: its
		// extended length, if any, is gathered in f.remain.
		for i, b := range p {
			switch {
			case f.hdrLen == 0:
				f.b0 = b
			case f.hdrLen == 1:
				f.b1 = b
				f.remain = 0
				if extLen(b) == 0 {
					f.remain = uint64(b & 0x7f)
				}
			case int(f.hdrLen) < 2+extLen(f.b1):
				f.remain = f.remain<<8 | uint64(b)
			}
			f.hdrLen++
			if f.hdrLen > 1 && int(f.hdrLen) == headerLen(f.b1) {
				f.hdrLen = 0
				f.begin(f.b0, f.b1)
				return p[i+1:]
			}
		}
		return nil
	}
}

// extLen returns how many bytes of extended payload length follow the
// second byte of a frame header, b1.
func extLen(b1 byte) int {
	switch b1 & 0x7f {
	case 126:
		return 2
	case 127:
		return 8
	}
	return 0
}

// headerLen returns the length of a frame header whose second byte is b1.
func headerLen(b1 byte) int {
	n := 2 + extLen(b1)
	if b1&0x80 != 0 { // masked: a client's frame
		n += 4
	}
	return n
}

// frame takes in a whole frame header h.
func (f *frameFollower) frame(h []byte) {
	switch n := h[1] & 0x7f; n {
	case 126:
		f.remain = uint64(binary.BigEndian.Uint16(h[2:]))
	case 127:
		f.remain = binary.BigEndian.Uint64(h[2:])
	default:
		f.remain = uint64(n)
	}
	f.begin(h[0], h[1])
}

// begin takes in the first two bytes of a header that has been seen whole,
// whose payload length is in f.remain.
func (f *frameFollower) begin(b0, b1 byte) {
	if b0&0x0f == opClose {
		f.closed = true
	}
	if f.client && b1&0x80 == 0 {
		// Not a client's frame: bytes were read past the follower, or
		// the peer does not speak websocket. Nothing it would say from
		// here on could be trusted.
		f.phase, f.remain = phaseLost, 0
	}
}

const opClose = 0x8

// closeFrame returns the close frame with code and reason, unmasked as a
// server sends it. It panics unless code may be sent in a close frame and
// reason fits in one and is UTF-8, as RFC 6455 requires.
func closeFrame(code int, reason string) []byte {
	if !sendableCloseCode(code) {
		panic("shutdown: WithGoodbye: close code " + strconv.Itoa(code) + " cannot be sent in a close frame (RFC 6455, section 7.4)")
	}
	if len(reason) > 123 {
		panic("shutdown: WithGoodbye: a close reason has at most 123 bytes, this one " + strconv.Itoa(len(reason)))
	}
	if !utf8.ValidString(reason) {
		panic("shutdown: WithGoodbye: the close reason is not UTF-8")
	}
	b := make([]byte, 4, 4+len(reason))
	b[0] = 0x80 | opClose // FIN
	b[1] = byte(2 + len(reason))
	binary.BigEndian.PutUint16(b[2:], uint16(code))
	return append(b, reason...)
}

// sendableCloseCode reports whether an endpoint may send code: the codes
// RFC 6455 defines for sending, those IANA registered since (1012 to 1014),
// and the ranges for libraries and applications.
func sendableCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	default:
		return code >= 3000 && code <= 4999
	}
}
