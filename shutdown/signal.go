package shutdown

import (
	"context"
	"math/rand/v2"
	"time"
)

// Each request inside Middleware has one drain signal, which [Draining]
// returns. Without a stagger window it is s.draining itself, shared by all
// and free. With one, a request that asks for its signal gets a channel of
// its own, made then (so that requests which never ask cost nothing), and
// registered in s.signals until the request ends; when the drain begins the
// registered signals are closed in random order, spread evenly over the
// window. A request ends when its handler returns or, if it hijacked its
// connection, when that connection is closed: the goroutines of a chat-style
// handler that has returned still wait on the signal. A request that asks
// only after it has ended (the write pump of a chat connection that its read
// pump has closed) gets s.draining and registers nothing.

// signal returns the request's drain signal.
func (c *requestContext) signal() <-chan struct{} {
	s := c.s
	if s.stagger <= 0 {
		if !c.asked() {
			s.mu.Lock()
			c.markAsked()
			s.mu.Unlock()
		}
		return s.draining
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if sig := c.sig(); sig != nil {
		return sig
	}
	// Stored before ended reads returned, as handlerReturned stores
	// returned before it reads asked: one of the two sees the other.
	c.markAsked()
	if c.ended() {
		return s.draining
	}
	c.extra().sig = make(chan struct{})
	if s.signals == nil {
		s.signals = make(map[*requestContext]struct{})
	}
	s.signals[c] = struct{}{}
	if c.conn != nil {
		c.conn.extra().req = c // for Close to forget
	}
	// drainingBit, set with s.mu held as the signals are scheduled, not
	// s.draining, which is closed before.
	if s.isDraining() {
		// A late asker gets a random moment in what is left of the
		// window, or none.
		left := time.Until(s.staggerEnd)
		if left > 0 {
			left = rand.N(left)
		}
		s.fireAfter(c, left)
	}
	return c.more.sig
}

// markAsked records that application code asked for c's signal: its
// connection gets no goodbye on its behalf when the signal fires. s.mu must
// be held.
func (c *requestContext) markAsked() {
	c.settle(askedFlag)
	if c.conn != nil {
		c.conn.ws.state.Or(wsAsked)
	}
}

// ended reports whether the request has ended: its handler has returned
// without hijacking, or the connection it hijacked is closed. s.mu must be
// held.
func (c *requestContext) ended() bool {
	if c.conn != nil {
		return !c.s.open(c.conn)
	}
	return c.returned()
}

// staggerSignals schedules the registered signals, and the goodbyes said
// on the handlers' behalf, over the stagger window, which ends by half of
// the time left on ctx, if sooner; without a window the goodbyes are said
// now. s.mu must be held.
func (s *Shutdowner) staggerSignals(ctx context.Context) {
	var behalf []goodbyer
	for _, c := range s.tracked() {
		if s.onBehalf(c) {
			behalf = append(behalf, c)
		}
	}
	for c := range s.streams {
		if s.streamOnBehalf(c) {
			behalf = append(behalf, c)
		}
	}
	if s.stagger <= 0 {
		s.schedulePending(0)
		goodbyeAll(behalf)
		return
	}
	window := s.stagger
	if deadline, ok := ctx.Deadline(); ok {
		window = max(min(window, time.Until(deadline)/2), 0)
	}
	s.staggerEnd = time.Now().Add(window)
	s.schedulePending(window)
	signals := make([]*requestContext, 0, len(s.signals))
	for c := range s.signals {
		signals = append(signals, c)
	}
	// One random order for both, evenly spread.
	n := len(signals) + len(behalf)
	for i, k := range rand.Perm(n) {
		at := window * time.Duration(i) / time.Duration(n)
		if k < len(signals) {
			s.fireAfter(signals[k], at)
		} else {
			s.scheduleGoodbye(behalf[k-len(signals)], at)
		}
	}
}

// fireAfter closes c's signal after d, or at once if d <= 0. s.mu must be
// held.
func (s *Shutdowner) fireAfter(c *requestContext, d time.Duration) {
	if d <= 0 {
		s.fire(c)
		return
	}
	c.extra().timer = time.AfterFunc(d, func() {
		s.mu.Lock()
		s.fire(c)
		s.mu.Unlock()
	})
}

// fire closes c's signal, once. s.mu must be held.
func (s *Shutdowner) fire(c *requestContext) {
	c.stopTimer()
	select {
	case <-c.more.sig:
	default:
		close(c.more.sig)
	}
}

// fireAll closes every registered signal now, ends the window, and stops
// the goodbyes still scheduled (deadlineGoodbyes says the websockets'): the
// end game of a drain whose context has ended.
func (s *Shutdowner) fireAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.staggerEnd = time.Now()
	if s.pendingTimer != nil {
		s.pendingTimer.Stop() // the end game says what it would have
	}
	for c := range s.signals {
		s.fire(c)
	}
	for _, c := range s.tracked() {
		if m := c.more; m != nil && m.timer != nil {
			m.timer.Stop()
			m.timer = nil
		}
	}
	for c := range s.streams {
		c.stopTimer()
	}
}

// handlerReturned ends c, and forgets its signal, when its handler has
// returned, unless the request hijacked its connection: then untrack
// forgets it, when the connection is closed.
func (s *Shutdowner) handlerReturned(c *requestContext) {
	if st := c.stream.Load(); st != nil {
		s.closeStream(c, st)
	} else if cancel := c.earlyCancel(); cancel != nil {
		cancel() // a protocol request's context, which no stream took
	}
	if c.flags.Or(returnedFlag)&askedFlag == 0 || s.stagger <= 0 {
		return // no signal of its own: the common case, and lock-free
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.conn == nil {
		s.forgetSignal(c)
	}
}

// forgetSignal stops c's signal if not yet fired and forgets it; a no-op
// for a request that has none. s.mu must be held.
func (s *Shutdowner) forgetSignal(c *requestContext) {
	c.stopTimer()
	delete(s.signals, c)
}
