package shutdown

import (
	"encoding/binary"
	"net/http"
	"strings"
)

// Protocol streams: gRPC, gRPC-Web and Connect responses, which frame
// their messages with a five-byte prefix (a flags byte and a big-endian
// length). Their requests are known by Content-Type as they arrive, and
// get a context the Shutdowner can cancel from the start, since gRPC
// servers take their context's Done channel before they write anything;
// their responses are followed message by message once the header says
// what they are. When the drain signal fires, at the next message boundary
// the Shutdowner ends the stream with the protocol's own retryable status:
//
//   - gRPC: trailers grpc-status 14 (UNAVAILABLE) and grpc-message, set as
//     the handler returns, in place of whatever status it set;
//   - gRPC-Web: the same status in the body's trailer frame;
//   - Connect: the end-of-stream message with the error "unavailable".
//
// Then it cancels the request's context and fails the handler's writes
// with ErrGoodbyeSent, as for an event stream (sse.go).

// goodbyeMessage is the message of every protocol's goodbye status.
const goodbyeMessage = "server shutting down"

// The goodbyes written into the body.
var (
	grpcWebGoodbye = envelope(0x80, "grpc-status:14\r\ngrpc-message:"+goodbyeMessage+"\r\n")
	connectGoodbye = envelope(0x02, `{"error":{"code":"unavailable","message":"`+goodbyeMessage+`"}}`)
)

// envelope frames payload with flags.
func envelope(flags byte, payload string) []byte {
	b := make([]byte, 5, 5+len(payload))
	b[0] = flags
	binary.BigEndian.PutUint32(b[1:], uint32(len(payload)))
	return append(b, payload...)
}

// streamKind returns the kind of stream that a Content-Type header's values
// name, or 0. gRPC-Web's text encoding (base64) is not followed: its bytes
// are not envelopes.
func streamKind(v []string) uint8 {
	if len(v) == 0 {
		return 0
	}
	mt, _, _ := strings.Cut(v[0], ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	switch {
	case mt == "text/event-stream":
		return kindEvents
	case strings.HasPrefix(mt, "application/grpc-web-text"):
		return 0
	case family(mt, "application/grpc-web"):
		return kindGRPCWeb
	case family(mt, "application/grpc"):
		return kindGRPC
	case strings.HasPrefix(mt, "application/connect+"):
		return kindConnect
	}
	return 0
}

// family reports whether mt is base or base+suffix.
func family(mt, base string) bool {
	rest, ok := strings.CutPrefix(mt, base)
	return ok && (rest == "" || rest[0] == '+')
}

// protocolKind returns the kind of protocol stream a request asks for, by
// its method and Content-Type, or 0: every gRPC, gRPC-Web and Connect
// streaming call is a POST, so other requests cost one comparison.
func protocolKind(r *http.Request) uint8 {
	if r.Method != http.MethodPost {
		return 0
	}
	if k := streamKind(r.Header["Content-Type"]); k != kindEvents {
		return k
	}
	return 0
}

// envelopeFollower follows length-prefixed messages to tell where one
// ends. A message whose flags have the end bit (the trailer frame of
// gRPC-Web, Connect's end of stream) ends the stream: nothing may follow.
type envelopeFollower struct {
	prefix   uint8  // bytes of the current prefix seen, 1 to 5; 0 between messages
	flags    byte   // the current message's flags
	left     uint32 // bytes of the current message still to come, once its prefix is whole
	length   uint32 // the current prefix's length, as it is read
	endFlag  byte   // the flag of the message that ends the stream; 0 for gRPC
	ended    bool   // a message with endFlag has been written whole
	messages uint32 // whole messages written, up to 1<<32-1
}

func (f *envelopeFollower) follow(p []byte) {
	for len(p) > 0 {
		if f.left > 0 {
			k := uint32(min(uint64(f.left), uint64(len(p))))
			f.left -= k
			p = p[k:]
			if f.left == 0 {
				f.messageEnded()
			}
			continue
		}
		f.byte(p[0])
		p = p[1:]
	}
}

// byte takes one byte of a prefix.
func (f *envelopeFollower) byte(b byte) {
	if f.prefix == 0 {
		f.flags, f.length = b, 0
		f.prefix = 1
		return
	}
	f.length = f.length<<8 | uint32(b)
	if f.prefix++; f.prefix == 5 { // the prefix is whole; 5 while the payload comes
		f.left = f.length
		if f.left == 0 {
			f.messageEnded()
		}
	}
}

func (f *envelopeFollower) messageEnded() {
	f.prefix = 0
	if f.messages < ^uint32(0) {
		f.messages++
	}
	if f.endFlag != 0 && f.flags&f.endFlag != 0 {
		f.ended = true
	}
}

// atBoundary reports whether the stream is between messages.
func (f *envelopeFollower) atBoundary() bool { return f.prefix == 0 }

// toBoundary returns how many bytes of p come before the first message
// boundary in it, or len(p); zero when f is at one now. It does not move f.
func (f *envelopeFollower) toBoundary(p []byte) int {
	if f.atBoundary() {
		return 0
	}
	g := *f
	for i := 0; i < len(p); {
		if g.left > 0 {
			k := int(min(uint64(g.left), uint64(len(p)-i)))
			g.left -= uint32(k)
			i += k
			if g.left == 0 {
				return i
			}
			continue
		}
		g.byte(p[i])
		i++
		if g.atBoundary() {
			return i
		}
	}
	return len(p)
}

// setGoodbyeTrailers makes h's gRPC status the Shutdowner's goodbye, in
// place of the handler's: as a declared trailer where the handler
// declared it (grpc-go, connect-go), else as an undeclared one.
func setGoodbyeTrailers(h http.Header) {
	declared := make(map[string]bool, 3)
	for _, v := range h["Trailer"] {
		for _, k := range strings.Split(v, ",") {
			declared[http.CanonicalHeaderKey(strings.TrimSpace(k))] = true
		}
	}
	for _, kv := range [...][2]string{{"Grpc-Status", "14"}, {"Grpc-Message", goodbyeMessage}, {"Grpc-Status-Details-Bin", ""}} {
		k, v := kv[0], kv[1]
		for key := range h { // a "Trailer:" key is not canonicalized: any case
			if name, ok := strings.CutPrefix(key, http.TrailerPrefix); (ok && strings.EqualFold(name, k)) || key == k {
				delete(h, key)
			}
		}
		switch {
		case v == "":
		case declared[k]:
			h[k] = []string{v}
		default:
			h[http.TrailerPrefix+k] = []string{v}
		}
	}
}

// span returns how many bytes of p, at least one if p has any, reach the
// end of the current message or, between messages, of the next one: the
// next boundary after the first byte of p. It does not move f.
func (f *envelopeFollower) span(p []byte) int {
	if len(p) == 0 || !f.atBoundary() {
		return f.toBoundary(p)
	}
	g := *f
	g.follow(p[:1])
	if g.atBoundary() {
		return 1
	}
	return 1 + g.toBoundary(p[1:])
}
