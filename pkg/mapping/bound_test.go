package mapping

import (
	"testing"
	"time"
)

// A shared deadline is never earlier than the evaluation's own bound, and
// at most slack later.
func TestBoundDeadline(t *testing.T) {
	t.Parallel()
	for _, timeout := range []time.Duration{time.Millisecond, 20 * time.Millisecond, time.Second, time.Hour} {
		b := newBound(timeout)
		if b.slack > timeout/16 || b.slack > maxSlack {
			t.Fatalf("timeout %v: slack %v", timeout, b.slack)
		}
		for range 1000 {
			before := time.Now()
			ctx := b.context()
			after := time.Now()
			d, ok := ctx.Deadline()
			if !ok || d.Before(before.Add(timeout)) || d.After(after.Add(timeout+b.slack)) {
				t.Fatalf("timeout %v: deadline %v after a start in [%v, %v], slack %v", timeout, d, before, after, b.slack)
			}
		}
	}
}
