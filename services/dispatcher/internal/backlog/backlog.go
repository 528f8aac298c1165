// Package backlog measures a destination consumer's backlog and reports
// it: gauges, and BacklogReport audit records, from which the notifier's
// BacklogGrowing and PartnerDown rules fire and resolve.
package backlog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/natsx"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
)

// auditTimeout bounds waiting for one BacklogReport to be stored.
const auditTimeout = 5 * time.Second

// Metrics are the backlog gauges by destination, registered by the
// dispatcher.
type Metrics struct {
	// Pending is the consumer's num_pending; AckPending its
	// num_ack_pending; MaxAckPending its max_ack_pending.
	Pending, AckPending, MaxAckPending *prometheus.GaugeVec
	// OldestAge is the age in seconds of the oldest event not finished.
	OldestAge *prometheus.GaugeVec
	// Full is 1 while num_ack_pending has reached max_ack_pending.
	Full *prometheus.GaugeVec
}

// Config is what every destination's Reporter shares; every field is
// required.
type Config struct {
	// JS reads the oldest pending event from EVENTS.
	JS jetstream.JetStream
	// Audit records the reports.
	Audit *auditlog.Emitter
	// Interval is how often the dispatcher reports: one record id per
	// interval.
	Interval time.Duration
	Metrics  Metrics
}

// Reporter reports one destination's backlog. Report is called from one
// goroutine at a time.
type Reporter struct {
	cfg  Config
	dest string
	log  *slog.Logger
	// full remembers the last measure, to log changes; quiet whether it
	// had nothing to report.
	full, quiet bool
}

// NewReporter returns the Reporter of a destination.
func NewReporter(cfg Config, destination string, log *slog.Logger) *Reporter {
	return &Reporter{cfg: cfg, dest: destination, log: log}
}

// Report updates the backlog metrics from a fresh info of the
// destination's consumer and records a BacklogReport: each interval while
// anything is waiting or the circuit breaker is not closed, and once when
// the backlog has drained and the breaker closed, so that the notifier's
// BacklogGrowing and PartnerDown rules can fire and resolve. The report
// always carries the circuit breaker's state. Replicas measuring in the
// same interval produce one record (its id is the interval).
func (r *Reporter) Report(ctx context.Context, info *jetstream.ConsumerInfo, circuit switchyardv1.CircuitState) error {
	age, err := r.oldestPendingAge(ctx, info)
	if err != nil {
		return err
	}
	name := r.dest
	maxAck := info.Config.MaxAckPending
	full := maxAck > 0 && info.NumAckPending >= maxAck
	m := r.cfg.Metrics
	m.Pending.WithLabelValues(name).Set(float64(info.NumPending))
	m.AckPending.WithLabelValues(name).Set(float64(info.NumAckPending))
	m.MaxAckPending.WithLabelValues(name).Set(float64(maxAck))
	m.OldestAge.WithLabelValues(name).Set(age.Seconds())
	m.Full.WithLabelValues(name).Set(boolGauge(full))

	if full && !r.full {
		r.log.WarnContext(ctx, "consumer reached max_ack_pending: new events wait until retries drain; raise max_ack_pending or fix the partner",
			slog.Int("num_ack_pending", info.NumAckPending), slog.Int("max_ack_pending", maxAck), slog.Uint64("num_pending", info.NumPending))
	}
	r.full = full
	closed := circuit == switchyardv1.CircuitState_CIRCUIT_STATE_CLOSED
	empty := info.NumPending == 0 && info.NumAckPending == 0
	quiet := empty && closed
	wasQuiet := r.quiet
	r.quiet = quiet
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
	interval := r.cfg.Interval
	rec := &switchyardv1.AuditRecord{
		Id:     fmt.Sprintf("backlog:%s:%d", name, time.Now().Truncate(interval).UnixMilli()),
		Detail: &switchyardv1.AuditRecord_Backlog{Backlog: report},
	}
	actx, cancel := context.WithTimeout(ctx, auditTimeout)
	defer cancel()
	if err := r.cfg.Audit.Emit(actx, rec); err != nil {
		r.quiet = false // report again next time
		return fmt.Errorf("record backlog: %w", err)
	}
	return nil
}

// oldestPendingAge is how long the oldest event not yet finished (waiting
// for its first attempt or for a retry) has been in the stream: the first
// event on the destination's subjects after the consumer's ack floor.
func (r *Reporter) oldestPendingAge(ctx context.Context, info *jetstream.ConsumerInfo) (time.Duration, error) {
	if info.NumPending == 0 && info.NumAckPending == 0 {
		return 0, nil
	}
	stream, err := r.cfg.JS.Stream(ctx, natsx.StreamEvents)
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
