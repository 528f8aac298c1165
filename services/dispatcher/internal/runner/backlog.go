package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
)

// monitorBacklog measures every destination's backlog each
// BacklogInterval until ctx ends.
func (d *Dispatcher) monitorBacklog(ctx context.Context) error {
	tick := time.NewTicker(d.cfg.BacklogInterval)
	defer tick.Stop()
	for {
		for _, dest := range d.dests {
			if err := dest.measureBacklog(ctx); err != nil && ctx.Err() == nil {
				// A consumer deleted while no fetch was failing (all
				// workers busy, say) is noticed here too.
				if !errors.Is(err, jetstream.ErrConsumerNotFound) || !dest.recoverConsumer(ctx, err) {
					dest.log.WarnContext(ctx, "backlog not measured", slog.Any("error", err))
				}
			}
			if dest.breaker != nil {
				dest.breaker.RecordAgain(ctx)
			}
			dest.logSummary(ctx, d.cfg.BacklogInterval)
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return nil
		}
	}
}

// measureBacklog reads the destination's consumer and reports its
// backlog (see backlog.Reporter), with the breaker's state (closed when it
// is disabled).
func (dest *destination) measureBacklog(ctx context.Context) error {
	info, err := dest.cons().Info(ctx)
	if err != nil {
		return fmt.Errorf("consumer info: %w", err)
	}
	dest.noteAckFloor(info)
	circuit := switchyardv1.CircuitState_CIRCUIT_STATE_CLOSED
	if dest.breaker != nil {
		c, _ := dest.breaker.View()
		circuit = c.State
	}
	return dest.backlog.Report(ctx, info, circuit)
}

// outcomeTally counts a destination's outcomes between two summaries.
type outcomeTally struct {
	delivered, retrying, deadLettered atomic.Int64
}

// logSummary logs, at info, what the destination did since the last
// summary, if anything: single deliveries are logged at debug only.
func (dest *destination) logSummary(ctx context.Context, every time.Duration) {
	delivered, retrying, dead := dest.tally.delivered.Swap(0), dest.tally.retrying.Swap(0), dest.tally.deadLettered.Swap(0)
	if delivered+retrying+dead == 0 {
		return
	}
	dest.log.InfoContext(ctx, "deliveries", slog.Duration("in_last", every), slog.Int64("delivered", delivered),
		slog.Int64("failed_will_retry", retrying), slog.Int64("dead_lettered", dead))
}
