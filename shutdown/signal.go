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
// handler that has returned still wait on the signal.

// signal returns the request's drain signal.
func (c *requestContext) signal() <-chan struct{} {
	s := c.s
	if s.stagger <= 0 {
		return s.draining
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.sig == nil {
		c.sig = make(chan struct{})
		if s.signals == nil {
			s.signals = make(map[*requestContext]struct{})
		}
		s.signals[c] = struct{}{}
		c.asked.Store(true)
		select {
		case <-s.draining:
			// A late asker gets a random moment in what is left of the
			// window, or none.
			left := time.Until(s.staggerEnd)
			if left > 0 {
				left = rand.N(left)
			}
			s.fireAfter(c, left)
		default:
		}
	}
	return c.sig
}

// staggerSignals schedules the registered signals over the stagger window,
// which ends by half of the time left on ctx, if sooner. s.mu must be held.
func (s *Shutdowner) staggerSignals(ctx context.Context) {
	if s.stagger <= 0 {
		return
	}
	window := s.stagger
	if deadline, ok := ctx.Deadline(); ok {
		window = max(min(window, time.Until(deadline)/2), 0)
	}
	s.staggerEnd = time.Now().Add(window)
	order := make([]*requestContext, 0, len(s.signals))
	for c := range s.signals {
		order = append(order, c)
	}
	rand.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	for i, c := range order {
		s.fireAfter(c, window*time.Duration(i)/time.Duration(len(order)))
	}
}

// fireAfter closes c's signal after d, or at once if d <= 0. s.mu must be
// held.
func (s *Shutdowner) fireAfter(c *requestContext, d time.Duration) {
	if d <= 0 {
		s.fire(c)
		return
	}
	c.timer = time.AfterFunc(d, func() {
		s.mu.Lock()
		s.fire(c)
		s.mu.Unlock()
	})
}

// fire closes c's signal, once. s.mu must be held.
func (s *Shutdowner) fire(c *requestContext) {
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	select {
	case <-c.sig:
	default:
		close(c.sig)
	}
}

// fireAll closes every registered signal now and ends the window: the end
// game of a drain whose context has ended.
func (s *Shutdowner) fireAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.staggerEnd = time.Now()
	for c := range s.signals {
		s.fire(c)
	}
}

// handlerReturned forgets c's signal when its handler has returned, unless
// the request hijacked its connection: then untrack forgets it, when the
// connection is closed.
func (s *Shutdowner) handlerReturned(c *requestContext) {
	if !c.asked.Load() {
		return // no signal of its own: the common case, and lock-free
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !c.hijacked {
		s.forgetSignal(c)
	}
}

// forgetSignal stops c's signal if not yet fired and forgets it; a no-op
// for a request that has none. s.mu must be held.
func (s *Shutdowner) forgetSignal(c *requestContext) {
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	delete(s.signals, c)
}
