package shutdown

import (
	"slices"
	"testing"
)

// eventStreamBytes builds an event stream from program: events of one to
// four non-empty lines, each line and each event's closing empty line
// ended by LF, CR or CRLF as the program's bytes choose. It returns the
// stream and the offsets at which the follower must report a boundary: the
// start, and the end of each event's empty line, both after its CR and
// after its LF when that line ends with CRLF (the LF belongs to the CR:
// nothing comes between them).
func eventStreamBytes(program []byte) (stream []byte, boundaries []int) {
	next := func() byte {
		if len(program) == 0 {
			return 0
		}
		b := program[0]
		program = program[1:]
		return b
	}
	terminators := []string{"\n", "\r", "\r\n"}
	lastCR := false
	end := func(b byte) string {
		t := terminators[int(b)%3]
		if lastCR && t == "\n" {
			t = "\r\n" // a bare LF after a CR would be that CR's LF
		}
		lastCR = t == "\r"
		return t
	}
	boundaries = []int{0}
	for len(program) > 0 {
		for range 1 + next()%4 {
			// A field line; 'H', ':' and spaces mean nothing to the follower.
			stream = append(stream, "data: H"[:1+next()%7]...)
			stream = append(stream, end(next())...)
		}
		t := end(next())
		if t == "\r\n" {
			boundaries = append(boundaries, len(stream)+1)
		}
		stream = append(stream, t...)
		boundaries = append(boundaries, len(stream))
	}
	return stream, boundaries
}

// The event follower finds every boundary between events, whatever the
// line endings and however the writes split the stream, and never leaves
// one between the CR and the LF of a CRLF that both lie in one write. The
// seed corpus is in testdata/fuzz.
func FuzzEventFollower(f *testing.F) {
	f.Add([]byte{0, 3, 0, 0}, []byte{0})
	f.Add([]byte{1, 2, 1, 2, 2, 1, 0, 3, 2}, []byte{1, 2, 3})
	f.Add([]byte{3, 6, 1, 6, 1, 6, 1, 6, 1, 1}, []byte{255, 7})
	f.Fuzz(func(t *testing.T, program, splits []byte) {
		stream, boundaries := eventStreamBytes(program[:min(len(program), 1024)])
		g := eventFollower{atEvent: true} // as openStream makes it
		at := 0
		for i := 0; at < len(stream); i++ {
			size := 1
			if len(splits) > 0 {
				size = 1 + int(splits[i%len(splits)])%41
			}
			p := stream[at:min(at+size, len(stream))]
			// The first boundary in p, and past the LF of a CRLF
			// whose CR ends an event, when that LF is in p too.
			want := len(p)
			if j, _ := slices.BinarySearch(boundaries, at); j < len(boundaries) && boundaries[j]-at < len(p) {
				want = boundaries[j] - at
				if want > 0 && j+1 < len(boundaries) && boundaries[j+1] == boundaries[j]+1 && boundaries[j+1]-at <= len(p) {
					want++
				}
			}
			if got := g.toBoundary(p); got != want {
				t.Fatalf("at %d of %q, toBoundary of %q = %d, want %d", at, stream, p, got, want)
			}
			g.follow(p)
			at += len(p)
			if _, ok := slices.BinarySearch(boundaries, at); g.atBoundary() != ok {
				t.Fatalf("at %d of %q: atBoundary = %v, want %v", at, stream, g.atBoundary(), ok)
			}
		}
	})
}
