package shutdown

import (
	"encoding/binary"
	"strconv"
	"unicode/utf8"
)

// frameFollower follows the bytes a server sends on a websocket connection
// (RFC 6455, section 5.2), the HTTP response head first when it is written
// onto the hijacked connection, so that a close frame can be put between two
// frames, never inside one. It reads only the frame headers: the payload is
// skipped by count, and nothing is copied but the bytes of a header that is
// split across writes. The zero value expects either the response head or a
// frame.
//
// It is written by hand, not taken from a websocket library: this package
// imports the standard library only, and a library's frame reader parses
// what it reads, where this needs to follow, without allocating, what
// somebody else writes.
type frameFollower struct {
	remain uint64   // payload bytes of the current frame still to come
	hdr    [14]byte // the current frame's header, while split across writes
	phase  uint8    // phaseUndecided, phaseHead or phaseFrames
	crlf   uint8    // how much of "\r\n\r\n" ends the head seen so far
	hdrLen uint8    // bytes of the current frame's header seen so far
	closed bool     // a close frame has begun: no other may follow it
}

const (
	phaseUndecided = iota // nothing written yet: a response head or a frame
	phaseHead             // inside the HTTP response head
	phaseFrames           // in the frame stream
)

// atBoundary reports whether the next byte written begins a frame.
func (f *frameFollower) atBoundary() bool {
	return f.phase == phaseFrames && f.hdrLen == 0 && f.remain == 0
}

// follow advances f over p, bytes that have gone to the peer.
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
	case f.remain > 0:
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
	case f.hdrLen == 0 && len(p) >= 2 && headerLen(p[1]) <= len(p):
		n := headerLen(p[1]) // a whole header: no copy
		f.frame(p[:n])
		return p[n:]
	default:
		// A header split across writes: gather it in f.hdr.
		if f.hdrLen < 2 {
			n := copy(f.hdr[f.hdrLen:2], p)
			f.hdrLen += uint8(n)
			if p = p[n:]; f.hdrLen < 2 {
				return p
			}
		}
		need := headerLen(f.hdr[1])
		n := copy(f.hdr[f.hdrLen:need], p)
		f.hdrLen += uint8(n)
		if int(f.hdrLen) == need {
			f.frame(f.hdr[:need])
			f.hdrLen = 0
		}
		return p[n:]
	}
}

// headerLen returns the length of a frame header whose second byte is b1.
func headerLen(b1 byte) int {
	n := 2
	switch b1 & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b1&0x80 != 0 { // masked: a client's frame, allowed for
		n += 4
	}
	return n
}

// frame takes in a whole frame header h.
func (f *frameFollower) frame(h []byte) {
	if h[0]&0x0f == opClose {
		f.closed = true
	}
	switch n := h[1] & 0x7f; n {
	case 126:
		f.remain = uint64(binary.BigEndian.Uint16(h[2:]))
	case 127:
		f.remain = binary.BigEndian.Uint64(h[2:])
	default:
		f.remain = uint64(n)
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
