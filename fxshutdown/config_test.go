package fxshutdown

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// The drain's budget is its share of the stop, whatever the connections:
// the end game it keeps for them is inside the budget (the shutdown
// package's TestEndGameReserve).
func TestDrainBudget(t *testing.T) {
	const left = 10 * time.Second
	for _, tc := range []struct {
		name        string
		config      Config
		deadline    bool
		want        time.Duration
		wantLimited bool
	}{
		{"default fraction", Config{}, true, 8 * time.Second, true},
		{"fraction", Config{DrainFraction: 0.5}, true, 5 * time.Second, true},
		{"fraction out of range", Config{DrainFraction: 1.5}, true, 8 * time.Second, true},
		{"timeout below the fraction", Config{DrainTimeout: 2 * time.Second}, true, 2 * time.Second, true},
		{"timeout above the fraction", Config{DrainTimeout: time.Minute}, true, 8 * time.Second, true},
		{"no deadline", Config{}, false, 0, false},
		{"no deadline, timeout", Config{DrainTimeout: 3 * time.Second}, false, 3 * time.Second, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			if tc.deadline {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, left)
				defer cancel()
			}
			got, limited := tc.config.drainBudget(ctx)
			// time passes between WithTimeout and drainBudget
			if limited != tc.wantLimited || got > tc.want || got < tc.want-100*time.Millisecond {
				t.Fatalf("drainBudget = %v, %v; want %v, %v", got, limited, tc.want, tc.wantLimited)
			}
		})
	}
}

// New serves a program without Fx: Config.RetryAfter reaches the 503s.
func TestNewWithoutFx(t *testing.T) {
	for _, tc := range []struct {
		retryAfter time.Duration
		want       string
	}{{0, "5"}, {30 * time.Second, "30"}, {-1, ""}} {
		r, err := New(Params{Config: Config{RetryAfter: tc.retryAfter}})
		if err != nil {
			t.Fatal(err)
		}
		s := r.Shutdowner
		if err := s.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		s.Middleware(http.NotFoundHandler()).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
		if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != tc.want {
			t.Errorf("RetryAfter %v: %d, Retry-After %q; want 503 and %q", tc.retryAfter, rec.Code, rec.Header().Get("Retry-After"), tc.want)
		}
	}
}
