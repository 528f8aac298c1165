package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/switchyard/switchyard/pkg/natsx"
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

// measureBacklog reads the destination's consumer, updates the backlog
// metrics and records a BacklogReport: each interval while anything is
// waiting or the circuit breaker is not closed, and once when the backlog
// has drained and the breaker closed, so that the notifier's BacklogGrowing
// and PartnerDown rules can fire and resolve. The report always carries
// the breaker's state (closed when it is disabled). Replicas measuring in
// the same interval produce one record (its id is the interval).
func (dest *destination) measureBacklog(ctx context.Context) error {
	info, err := dest.cons().Info(ctx)
	if err != nil {
		return fmt.Errorf("consumer info: %w", err)
	}
	dest.noteAckFloor(info)
	age, err := dest.oldestPendingAge(ctx, info)
	if err != nil {
		return err
	}
	name := dest.cfg.Name
	maxAck := info.Config.MaxAckPending
	full := maxAck > 0 && info.NumAckPending >= maxAck
	m := dest.d.metrics
	m.pending.WithLabelValues(name).Set(float64(info.NumPending))
	m.ackPending.WithLabelValues(name).Set(float64(info.NumAckPending))
	m.maxAckPending.WithLabelValues(name).Set(float64(maxAck))
	m.oldestAge.WithLabelValues(name).Set(age.Seconds())
	m.backlogFull.WithLabelValues(name).Set(boolGauge(full))

	if full && !dest.backlogFull {
		dest.log.WarnContext(ctx, "consumer reached max_ack_pending: new events wait until retries drain; raise max_ack_pending or fix the partner",
			slog.Int("num_ack_pending", info.NumAckPending), slog.Int("max_ack_pending", maxAck), slog.Uint64("num_pending", info.NumPending))
	}
	dest.backlogFull = full
	circuit := switchyardv1.CircuitState_CIRCUIT_STATE_CLOSED
	if dest.breaker != nil {
		c, _ := dest.breaker.View()
		circuit = c.State
	}
	closed := circuit == switchyardv1.CircuitState_CIRCUIT_STATE_CLOSED
	empty := info.NumPending == 0 && info.NumAckPending == 0
	quiet := empty && closed
	wasQuiet := dest.backlogQuiet
	dest.backlogQuiet = quiet
	if quiet && wasQuiet {
		return nil
	}
	report := &switchyardv1.BacklogReport{
		Destination:      name,
		NumPending:       info.NumPending,
		NumAckPending:    int64(info.NumAckPending),
		MaxAckPending:    int64(maxAck),
		OldestPendingAge: durationpb.New(age),
		Full:             full,
		NumRedelivered:   int64(info.NumRedelivered),
		Paused:           info.Paused,
		Circuit:          circuit,
	}
	interval := dest.d.cfg.BacklogInterval
	rec := &switchyardv1.AuditRecord{
		Id:     fmt.Sprintf("backlog:%s:%d", name, time.Now().Truncate(interval).UnixMilli()),
		Detail: &switchyardv1.AuditRecord_Backlog{Backlog: report},
	}
	actx, cancel := context.WithTimeout(ctx, auditTimeout)
	defer cancel()
	if err := dest.d.audit.Emit(actx, rec); err != nil {
		dest.backlogQuiet = false // report again next time
		return fmt.Errorf("record backlog: %w", err)
	}
	return nil
}

// oldestPendingAge is how long the oldest event not yet finished (waiting
// for its first attempt or for a retry) has been in the stream: the first
// event on the destination's subjects after the consumer's ack floor.
func (dest *destination) oldestPendingAge(ctx context.Context, info *jetstream.ConsumerInfo) (time.Duration, error) {
	if info.NumPending == 0 && info.NumAckPending == 0 {
		return 0, nil
	}
	stream, err := dest.d.js.Stream(ctx, natsx.StreamEvents)
	if err != nil {
		return 0, fmt.Errorf("open stream: %w", err)
	}
	var oldest time.Time
	for _, filter := range info.Config.FilterSubjects {
		m, err := stream.GetMsg(ctx, info.AckFloor.Stream+1, jetstream.WithGetMsgSubject(filter))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("read oldest pending event: %w", err)
		}
		if oldest.IsZero() || m.Time.Before(oldest) {
			oldest = m.Time
		}
	}
	if oldest.IsZero() {
		return 0, nil
	}
	return max(0, time.Since(oldest)), nil
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
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
