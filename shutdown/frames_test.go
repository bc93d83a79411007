package shutdown

import (
	"encoding/binary"
	"slices"
	"testing"
)

// frameStream builds a byte stream from program: a server's, with an
// optional response head, or a client's, whose frames are masked, then
// frames whose opcodes, flags, length encodings and payload sizes the
// program's bytes choose. It returns the stream, the offsets at which a
// frame begins or the stream ends (the boundaries), the offset just past
// the first close frame's header, or -1, and whether it is a client's.
func frameStream(program []byte) (stream []byte, boundaries []int, closeAt int, client bool) {
	next := func() byte {
		if len(program) == 0 {
			return 0
		}
		b := program[0]
		program = program[1:]
		return b
	}
	closeAt = -1
	switch next() & 3 {
	case 2, 3:
		client = true
	case 1:
		stream = append(stream, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"...)
	}
	for len(program) > 0 {
		boundaries = append(boundaries, len(stream))
		b0, b1 := next(), next()
		// FIN and RSV bits as given; opcodes 0-2 and 8-10, as libraries send.
		op := []byte{0, 1, 2, 8, 9, 10}[int(b0&0x0f)%6]
		var n uint64
		switch b1 % 4 {
		case 0, 1: // 7-bit length
			n = uint64(next() % 126)
		case 2: // 16-bit
			n = uint64(binary.BigEndian.Uint16([]byte{next() % 2, next()}))
		case 3: // 64-bit, not always minimal
			n = uint64(next()) * 3
		}
		flags := b0 & 0xf0
		if op >= 8 {
			flags |= 0x80 // control frames are never fragmented
		}
		h := []byte{flags | op, 0}
		switch {
		case b1%4 == 3:
			h[1] = 127
			h = binary.BigEndian.AppendUint64(h, n)
		case b1%4 == 2 || n > 125:
			h[1] = 126
			h = binary.BigEndian.AppendUint16(h, uint16(n))
		default:
			h[1] = byte(n)
		}
		if client {
			h[1] |= 0x80
			h = append(h, next(), 'H', 0x88, next()) // the masking key
		}
		stream = append(stream, h...)
		if op == opClose && closeAt < 0 {
			closeAt = len(stream)
		}
		// 'H' bytes in payloads must not confuse anything.
		stream = append(stream, make([]byte, n)...)
		for i := len(stream) - int(n); i < len(stream); i += 7 {
			stream[i] = 'H'
		}
	}
	boundaries = append(boundaries, len(stream))
	return stream, boundaries, closeAt, client
}

// checkFollow writes stream through a follower in the pieces that splits
// cuts it into, and checks at every cut what the follower says against the
// boundaries the stream was built with.
func checkFollow(t *testing.T, stream []byte, boundaries []int, closeAt int, client bool, splits []byte) {
	t.Helper()
	var f frameFollower
	if client {
		f = frameFollower{phase: phaseFrames, client: true}
	}
	at := 0
	for i := 0; at < len(stream); i++ {
		size := 1
		if len(splits) > 0 { // the cuts, over and over
			cut := splits[i%len(splits)]
			size = 1 + int(cut)%97
			if cut > 200 { // now and then a large write
				size = 1 + int(cut)*311
			}
		}
		p := stream[at:min(at+size, len(stream))]
		// toBoundary: the distance to the first boundary at or after at,
		// or len(p) if it lies beyond p.
		want := len(p)
		if j, _ := slices.BinarySearch(boundaries, at); j < len(boundaries) && boundaries[j]-at < len(p) {
			want = boundaries[j] - at
		}
		if got := f.toBoundary(p); got != want {
			t.Fatalf("at %d, toBoundary of %d bytes = %d, want %d", at, len(p), got, want)
		}
		f.follow(p)
		at += len(p)
		_, isBoundary := slices.BinarySearch(boundaries, at)
		if f.atBoundary() != isBoundary {
			t.Fatalf("at %d of %d: atBoundary = %v, want %v", at, len(stream), f.atBoundary(), isBoundary)
		}
		if f.closed != (closeAt >= 0 && at >= closeAt) {
			t.Fatalf("at %d: closed = %v, first close frame's header ends at %d", at, f.closed, closeAt)
		}
	}
}

// The follower finds every frame boundary, in a server's stream or a
// client's, whatever the frames and however the writes or reads split them. The seed corpus is in testdata/fuzz.
func FuzzFrameFollower(f *testing.F) {
	f.Add([]byte{1, 0x81, 0, 5, 0x88, 0, 2}, []byte{0})
	f.Add([]byte{0, 0x01, 2, 1, 0, 0x80, 1, 30, 0x89, 0, 0}, []byte{1, 2, 3, 250})
	f.Add([]byte{1, 0xc1, 3, 200, 0x02, 0, 125}, []byte{255, 0, 0, 9})
	f.Add([]byte{2, 0x81, 2, 1, 7, 9, 0x88, 0, 2, 3, 4}, []byte{1, 3})
	f.Fuzz(func(t *testing.T, program, splits []byte) {
		// A few hundred frames say all there is to say, and keep each
		// run short.
		stream, boundaries, closeAt, client := frameStream(program[:min(len(program), 1024)])
		checkFollow(t, stream, boundaries, closeAt, client, splits)
	})
}

// A client's frame that is not masked loses the follower for good: what it
// would say from there on, a close frame included, cannot be trusted.
func TestClientFrameNotMasked(t *testing.T) {
	f := frameFollower{phase: phaseFrames, client: true}
	f.follow([]byte{0x81, 0x82, 1, 2, 3, 4, 'h', 'i'}) // masked "hi"
	if !f.atBoundary() {
		t.Fatal("not at a boundary after a whole masked frame")
	}
	for _, p := range [][]byte{{0x81, 0x02}, {'h', 'i'}, {0x88, 0x82, 1, 2, 3, 4, 0x03, 0xe8}} {
		f.follow(p)
		if f.atBoundary() || f.closed {
			t.Fatalf("after %q, an unmasked frame before it: atBoundary %v, closed %v, want neither", p, f.atBoundary(), f.closed)
		}
	}
}

// BenchmarkFrameFollower measures following one small frame, a 2-byte
// header and 20 bytes of text, in one write: the cost that each Write of a
// websocket pays.
func BenchmarkFrameFollower(b *testing.B) {
	frame := append([]byte{0x81, 20}, make([]byte, 20)...)
	f := frameFollower{phase: phaseFrames}
	b.ReportAllocs()
	for b.Loop() {
		f.follow(frame)
	}
	if !f.atBoundary() {
		b.Fatal("not at a boundary after whole frames")
	}
}
