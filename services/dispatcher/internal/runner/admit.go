package runner

import (
	"context"
	"log/slog"
	"time"

	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/dispatcher/internal/breaker"
)

// admit waits until the circuit breaker lets this replica send, and says
// how many events it may take: all its workers when closed, one when it
// holds the half-open probe (then probing is set). The fetch loop asks
// before each fetch, and a handler asks again before it sends, for an event
// fetched just before the breaker opened. It returns 0 when ctx ends.
func (dest *destination) admit(ctx context.Context) (n int, probe bool) {
	b := dest.breaker
	if b == nil {
		return dest.cfg.Concurrency, false
	}
	me := dest.d.cfg.Instance
	lease := dest.d.probeLease(dest.cfg.Timeout.D())
	for {
		c, changed := b.View()
		now := time.Now()
		var wakeAt time.Time
		switch c.State {
		case switchyardv1.CircuitState_CIRCUIT_STATE_CLOSED:
			return dest.cfg.Concurrency, false
		case switchyardv1.CircuitState_CIRCUIT_STATE_OPEN:
			if !now.Before(c.OpenUntil) {
				dest.takeProbe(ctx, me, lease)
				continue
			}
			wakeAt = c.OpenUntil
		case switchyardv1.CircuitState_CIRCUIT_STATE_HALF_OPEN:
			mine := c.Prober == me
			switch {
			case mine && c.ProbeUntil.Sub(now) < lease/2:
				dest.takeProbe(ctx, me, lease) // renew the lease
				continue
			case mine && dest.probing.CompareAndSwap(false, true):
				return 1, true
			case mine:
				wakeAt = c.ProbeUntil.Add(-lease / 2) // our probe is running
			case now.After(c.ProbeUntil):
				dest.takeProbe(ctx, me, lease) // its replica stopped renewing
				continue
			default:
				wakeAt = c.ProbeUntil.Add(time.Millisecond)
			}
		}
		t := time.NewTimer(max(time.Until(wakeAt), time.Millisecond))
		select {
		case <-changed:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return 0, false
		}
		t.Stop()
	}
}

// probeLease is how long a replica holds the half-open probe without
// renewing it: a fetch plus an attempt, with room to spare.
func (d *Dispatcher) probeLease(timeout time.Duration) time.Duration {
	return d.cfg.FetchWait + timeout + 5*time.Second
}

// takeProbe moves an open circuit whose cooldown is over to half-open
// with this replica as the prober, takes over a probe whose replica stopped
// renewing it, or renews this replica's lease.
func (dest *destination) takeProbe(ctx context.Context, me string, lease time.Duration) {
	err := dest.breaker.Update(ctx, func(c *breaker.Circuit, now time.Time) string { return c.HalfOpen(me, now, lease) })
	if err != nil && ctx.Err() == nil {
		dest.log.WarnContext(ctx, "circuit breaker probe not taken", slog.Any("error", err))
		// Do not spin on a NATS outage.
		select {
		case <-time.After(time.Second):
		case <-ctx.Done():
		}
	}
}

// probeFoundNothing: the half-open probe fetch found no event due. If the
// destination has nothing at all waiting there is nothing to protect and
// nothing to probe with: close the breaker, and the next events show
// whether the partner is up. Otherwise keep waiting for an event whose
// retry is due.
func (dest *destination) probeFoundNothing(ctx context.Context) {
	info, err := dest.cons().Info(ctx)
	if err != nil || info.NumPending > 0 || info.NumAckPending > 0 {
		return
	}
	me := dest.d.cfg.Instance
	err = dest.breaker.Update(ctx, func(c *breaker.Circuit, now time.Time) string {
		if !c.MayProbe(me, now) {
			return ""
		}
		c.Close("no event left to probe with; the next event will show whether the partner is up")
		return c.Reason
	})
	if err != nil && ctx.Err() == nil {
		dest.log.WarnContext(ctx, "circuit breaker not closed", slog.Any("error", err))
	}
}
