package mapping

import (
	"context"
	"sync/atomic"
	"time"
)

// maxSlack is the most an evaluation may run past its time bound because
// it shares its deadline with evaluations that started a little later.
const maxSlack = 10 * time.Millisecond

// bound hands out the contexts that bound evaluations in time.
//
// A context per evaluation (context.WithTimeout) costs a timer, its
// allocations and a lock of the timer heap twice per event, a visible part
// of a mapping's cost at thousands of events a second. Evaluations that
// start within slack of each other share one context instead, whose
// deadline is the latest of theirs: each still stops at most slack after
// its own bound (Timeout/16, at most 10 ms), and one timer serves all the
// events of that span.
type bound struct {
	timeout, slack time.Duration
	cur            atomic.Pointer[sharedDeadline]
}

type sharedDeadline struct {
	ctx      context.Context
	deadline time.Time
	// cancel is left to the deadline's timer: the context is shared, so
	// no evaluation may end it, and it ends by itself at the deadline.
	cancel context.CancelFunc
}

func newBound(timeout time.Duration) *bound {
	return &bound{timeout: timeout, slack: min(timeout/16, maxSlack)}
}

// context is the context of an evaluation starting now: done at least
// timeout from now, and at most timeout+slack. It does not derive from the
// caller's context: an evaluation is short, bounded by its own time, and
// is not cut off half-way (which would fail the event) because the caller
// is shutting down.
func (b *bound) context() context.Context {
	want := time.Now().Add(b.timeout)
	if c := b.cur.Load(); c != nil && !c.deadline.Before(want) && c.deadline.Sub(want) <= b.slack {
		return c.ctx
	}
	d := want.Add(b.slack)
	ctx, cancel := context.WithDeadline(context.Background(), d)
	b.cur.Store(&sharedDeadline{ctx: ctx, deadline: d, cancel: cancel})
	return ctx
}
