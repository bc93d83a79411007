package shutdown

import (
	"bytes"
	"encoding/binary"
	"net/http"
	"slices"
	"testing"
)

// envelopeStreamBytes builds a stream of length-prefixed messages from
// program: each message's flags and a length of 0 to 600 bytes, as the
// program's bytes choose; a message whose flags have endFlag ends the
// stream. It returns the stream and the offsets of the boundaries between
// messages.
func envelopeStreamBytes(program []byte, endFlag byte) (stream []byte, boundaries []int) {
	boundaries = []int{0}
	for len(program) >= 3 {
		flags := program[0]
		n := int(binary.BigEndian.Uint16(program[1:3])) % 601
		program = program[3:]
		stream = append(stream, flags, 0, 0, 0, 0)
		binary.BigEndian.PutUint32(stream[len(stream)-4:], uint32(n))
		stream = append(stream, bytes.Repeat([]byte{flags}, n)...) // payload bytes mean nothing
		boundaries = append(boundaries, len(stream))
		if endFlag != 0 && flags&endFlag != 0 {
			break
		}
	}
	return stream, boundaries
}

// The envelope follower finds every boundary between messages, whatever
// their lengths and however the writes split the stream, and knows when a
// message with the end flag has ended the stream. The seed corpus is in
// testdata/fuzz.
func FuzzEnvelopeFollower(f *testing.F) {
	f.Add([]byte{0, 0, 5, 0, 0, 0}, []byte{0}, byte(0))
	f.Add([]byte{1, 1, 0, 0, 0, 3, 0x80, 0, 40}, []byte{4, 0, 9}, byte(0x80))
	f.Add([]byte{0, 2, 88, 2, 0, 17, 0, 0, 1}, []byte{255, 3}, byte(0x02))
	f.Fuzz(func(t *testing.T, program, splits []byte, endFlag byte) {
		stream, boundaries := envelopeStreamBytes(program[:min(len(program), 1024)], endFlag)
		g := envelopeFollower{endFlag: endFlag}
		at := 0
		for i := 0; at < len(stream); i++ {
			size := 1
			if len(splits) > 0 {
				size = 1 + int(splits[i%len(splits)])%700
			}
			p := stream[at:min(at+size, len(stream))]
			want := len(p)
			if j, _ := slices.BinarySearch(boundaries, at); j < len(boundaries) && boundaries[j]-at < len(p) {
				want = boundaries[j] - at
				if want == 0 && at != 0 && !g.atBoundary() {
					t.Fatalf("at %d: a boundary the follower does not see", at)
				}
			}
			if got := g.toBoundary(p); got != want {
				t.Fatalf("at %d of %d bytes, toBoundary of %d bytes = %d, want %d", at, len(stream), len(p), got, want)
			}
			// span: to the first boundary after at least one byte.
			wantSpan := len(p)
			if j, _ := slices.BinarySearch(boundaries, at+1); j < len(boundaries) && boundaries[j]-at < len(p) {
				wantSpan = boundaries[j] - at
			}
			if got := g.span(p); got != wantSpan {
				t.Fatalf("at %d of %d bytes, span of %d bytes = %d, want %d", at, len(stream), len(p), got, wantSpan)
			}
			g.follow(p)
			at += len(p)
			if _, ok := slices.BinarySearch(boundaries, at); g.atBoundary() != ok {
				t.Fatalf("at %d of %d bytes: atBoundary = %v, want %v", at, len(stream), g.atBoundary(), ok)
			}
		}
		if g.messages != uint32(len(boundaries)-1) {
			t.Fatalf("messages = %d, want %d", g.messages, len(boundaries)-1)
		}
		ended := endFlag != 0 && len(stream) > 0 && stream[boundaries[len(boundaries)-2]]&endFlag != 0
		if g.ended != ended {
			t.Fatalf("ended = %v, want %v", g.ended, ended)
		}
	})
}

// The goodbyes written into a body are whole messages with the end flag,
// as the follower of their protocol reads them.
func TestProtocolGoodbyesAreEndMessages(t *testing.T) {
	for _, tc := range []struct {
		name    string
		goodbye []byte
		endFlag byte
		payload string
	}{
		{"grpc-web", grpcWebGoodbye, 0x80, "grpc-status:14\r\ngrpc-message:server shutting down\r\n"},
		{"connect", connectGoodbye, 0x02, `{"error":{"code":"unavailable","message":"server shutting down"}}`},
	} {
		g := envelopeFollower{endFlag: tc.endFlag}
		g.follow(tc.goodbye)
		if !g.atBoundary() || !g.ended || string(tc.goodbye[5:]) != tc.payload {
			t.Errorf("%s: goodbye %q: boundary %v, ended %v; want a whole end message of %q", tc.name, tc.goodbye, g.atBoundary(), g.ended, tc.payload)
		}
	}
}

// streamKind tells the protocols apart by Content-Type, parameters and
// case aside, and follows none it does not know.
func TestStreamKind(t *testing.T) {
	for ct, want := range map[string]uint8{
		"text/event-stream":                kindEvents,
		"Text/Event-Stream; charset=utf-8": kindEvents,
		"application/grpc":                 kindGRPC,
		"application/grpc+proto":           kindGRPC,
		"application/grpc+json":            kindGRPC,
		"application/grpc-web":             kindGRPCWeb,
		"application/grpc-web+proto":       kindGRPCWeb,
		"application/grpc-web-text":        0, // base64: not envelopes
		"application/grpc-web-text+proto":  0,
		"application/connect+proto":        kindConnect,
		"application/connect+json":         kindConnect,
		"application/proto":                0, // Connect's unary calls are plain requests
		"application/json":                 0,
		"application/grpcx":                0,
		"":                                 0,
	} {
		if got := streamKind([]string{ct}); got != want {
			t.Errorf("streamKind(%q) = %d, want %d", ct, got, want)
		}
	}
}

// The Shutdowner's status replaces the handler's, whichever way the
// handler set its trailers.
func TestSetGoodbyeTrailers(t *testing.T) {
	declared := http.Header{"Trailer": {"Grpc-Status, Grpc-Message", "Grpc-Status-Details-Bin"}, "Grpc-Status": {"1"}, "Grpc-Message": {"context canceled"}, "Grpc-Status-Details-Bin": {"xx"}}
	setGoodbyeTrailers(declared)
	if declared.Get("Grpc-Status") != "14" || declared.Get("Grpc-Message") != goodbyeMessage || len(declared["Grpc-Status-Details-Bin"]) != 0 {
		t.Errorf("declared trailers became %v", declared)
	}
	undeclared := http.Header{"Trailer:grpc-status": {"13"}, "Trailer:Grpc-Message": {"internal"}}
	setGoodbyeTrailers(undeclared)
	want := http.Header{"Trailer:Grpc-Status": {"14"}, "Trailer:Grpc-Message": {goodbyeMessage}}
	if len(undeclared) != len(want) || undeclared["Trailer:Grpc-Status"][0] != "14" || undeclared["Trailer:Grpc-Message"][0] != goodbyeMessage {
		t.Errorf("undeclared trailers became %v, want %v", undeclared, want)
	}
}

// Following a protocol stream allocates nothing.
func TestEnvelopeFollowerAllocations(t *testing.T) {
	stream, _ := envelopeStreamBytes([]byte{0, 0, 90, 0, 1, 0, 0, 0, 3}, 0)
	var g envelopeFollower
	var f boundaryFollower = &g
	if n := testing.AllocsPerRun(100, func() {
		f.toBoundary(stream[:7])
		f.follow(stream)
	}); n != 0 {
		t.Errorf("%v allocations a run, want 0", n)
	}
}
