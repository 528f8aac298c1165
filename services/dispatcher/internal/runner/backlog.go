package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
				dest.log.WarnContext(ctx, "backlog not measured", slog.Any("error", err))
			}
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
// waiting, and once when the backlog has drained, so that the notifier's
// BacklogGrowing rule can fire and resolve. Replicas measuring in the same
// interval produce one record (its id is the interval).
func (dest *destination) measureBacklog(ctx context.Context) error {
	info, err := dest.consumer.Info(ctx)
	if err != nil {
		return fmt.Errorf("consumer info: %w", err)
	}
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
	empty := info.NumPending == 0 && info.NumAckPending == 0
	wasEmpty := dest.backlogEmpty
	dest.backlogEmpty = empty
	if empty && wasEmpty {
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
	}
	if dest.breaker != nil {
		c, _ := dest.breaker.view()
		report.Circuit = c.State
	}
	interval := dest.d.cfg.BacklogInterval
	rec := &switchyardv1.AuditRecord{
		Id:     fmt.Sprintf("backlog:%s:%d", name, time.Now().Truncate(interval).UnixMilli()),
		Detail: &switchyardv1.AuditRecord_Backlog{Backlog: report},
	}
	actx, cancel := context.WithTimeout(ctx, auditTimeout)
	defer cancel()
	if err := dest.d.audit.Emit(actx, rec); err != nil {
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
