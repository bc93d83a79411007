// Package shutdown drains an HTTP server's handlers and hijacked connections
// (WebSockets) when the server stops.
//
// [http.Server.Shutdown] neither closes nor waits for hijacked connections, and
// it waits indefinitely for streaming handlers (server-sent events, long polls)
// that never learn the server is stopping. A [Shutdowner] closes that gap: its
// [Shutdowner.Middleware] counts running handlers and tracks every connection
// they hijack until it is closed, even after the handler has returned. It
// says goodbye on behalf of handlers that know nothing of the drain: a
// websocket close frame at a frame boundary, whatever library writes the
// frames; a clean end with a retry field for server-sent events (see
// [WithGoodbye]); UNAVAILABLE at a message boundary for gRPC, gRPC-Web and
// Connect streams; a cancelled context for other streamed responses and,
// after a grace, for long polls, with 503 if they say nothing (see
// [WithPendingGrace] and [Shutdowner.ConnContext]). The per-request
// [Draining] lets a handler say its own goodbye instead, and
// [WithOwnGoodbyes] a hub; [Shutdowner.Draining] only watches.
// [Shutdowner.Shutdown] and
// [Shutdowner.ShutdownWithServer] wait for them, answer late requests with
// 503, and close what is left in time to return by the deadline, whatever
// the peers do: a peer that stops reading never holds a drain, nor makes a
// Close wait.
//
// The package imports the standard library only (and a small internal
// package of this module's, which itself imports the standard library
// only).
package shutdown
