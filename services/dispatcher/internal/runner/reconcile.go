package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/switchyard/switchyard/pkg/destinations"
	"github.com/switchyard/switchyard/pkg/events"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/topology"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
)

// ReconcilerConsumer is the durable consumer on ADVISORIES through which the
// dispatcher replicas turn deliveries given up without a dead letter into
// dead letters (declared by topology.ReconcilerConsumer).
const ReconcilerConsumer = topology.ReconcilerConsumer

// Advisory subjects (nats-server jetstream_events.go) for EVENTS consumers.
const (
	advisoryMaxDeliveries = topology.AdvisoryMaxDeliveries
	advisoryTerminated    = topology.AdvisoryTerminated
)

// advisory is the part of a JetStream consumer advisory the reconciler reads
// (io.nats.jetstream.advisory.v1.max_deliver and .terminated).
type advisory struct {
	Stream     string    `json:"stream"`
	Consumer   string    `json:"consumer"`
	StreamSeq  uint64    `json:"stream_seq"`
	Deliveries uint64    `json:"deliveries"`
	Reason     string    `json:"reason"`
	Time       time.Time `json:"timestamp"`
}

// reconcile reads the advisories until ctx ends. Every replica runs it on
// the one durable consumer, so each advisory is handled once (and handling
// it twice is harmless: the dead letter id is its Nats-Msg-Id).
func (d *Dispatcher) reconcile(ctx context.Context) error {
	cons, err := d.js.Consumer(ctx, natsx.StreamAdvisories, ReconcilerConsumer)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("open consumer %s: %w", ReconcilerConsumer, err)
	}
	failures := 0
	for ctx.Err() == nil {
		batch, err := cons.Fetch(16, jetstream.FetchMaxWait(d.cfg.FetchWait))
		if err == nil {
			for msg := range batch.Messages() {
				// Finish an advisory begun, even at shutdown: the dead
				// letter and its audit record belong together.
				wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*auditTimeout)
				d.reconcileOne(wctx, msg)
				cancel()
			}
			err = batch.Error()
		}
		if err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			failures++
			wait := min(time.Duration(failures)*200*time.Millisecond, 5*time.Second)
			d.cfg.Logger.WarnContext(ctx, "advisory fetch failed; retrying", slog.Any("error", err), slog.Duration("wait", wait))
			select {
			case <-time.After(wait):
			case <-ctx.Done():
			}
			continue
		}
		failures = 0
	}
	return nil
}

func (d *Dispatcher) reconcileOne(ctx context.Context, msg jetstream.Msg) {
	var a advisory
	if err := json.Unmarshal(msg.Data(), &a); err != nil || a.StreamSeq == 0 {
		d.cfg.Logger.WarnContext(ctx, "unreadable advisory skipped", slog.String("subject", msg.Subject()), slog.Any("error", err))
		_ = msg.Ack()
		return
	}
	if !strings.HasPrefix(a.Consumer, destinations.ConsumerPrefix) {
		_ = msg.Ack() // another service's consumer
		return
	}
	dest := strings.TrimPrefix(a.Consumer, destinations.ConsumerPrefix)
	log := d.cfg.Logger.With(slog.String("destination", dest), slog.Uint64("seq", a.StreamSeq))
	var reason switchyardv1.DeadLetterReason
	var lastError string
	switch {
	case strings.HasPrefix(msg.Subject(), advisoryMaxDeliveries):
		// The last allowed delivery ran out of ack wait without being
		// settled: the dispatcher stopped during the final attempt (or its
		// dead letter could not be stored). Its outcome is unknown.
		reason = switchyardv1.DeadLetterReason_DEAD_LETTER_REASON_MAX_DELIVERIES_ADVISORY
		lastError = fmt.Sprintf("the final attempt (delivery %d) was not settled: the dispatcher stopped or lost NATS during it; its outcome is unknown", a.Deliveries)
	case isDispatcherTermReason(a.Reason):
		// The dispatcher terminates only after the dead letter and its
		// audit record are stored.
		d.metrics.reconciled.WithLabelValues("terminated", "already_dead_lettered").Inc()
		_ = msg.Ack()
		return
	default:
		reason = switchyardv1.DeadLetterReason_DEAD_LETTER_REASON_PERMANENT_FAILURE
		lastError = fmt.Sprintf("terminated outside the dispatcher (reason %q)", a.Reason)
	}
	kind := "max_deliveries"
	if reason == switchyardv1.DeadLetterReason_DEAD_LETTER_REASON_PERMANENT_FAILURE {
		kind = "terminated"
	}

	inc, created := d.inc.get()
	dl := &switchyardv1.DeadLetter{
		Id:          DeadLetterID(inc, a.StreamSeq, dest),
		Destination: dest,
		Stream:      natsx.StreamEvents,
		StreamSeq:   a.StreamSeq,
		// Known only from the event itself; a stable placeholder otherwise.
		EventId:        UnknownEventID(a.StreamSeq),
		Attempts:       int32(a.Deliveries),
		LastError:      lastError,
		Reason:         reason,
		DeadLetteredAt: timestamppb.Now(),
	}
	var raw *jetstream.RawStreamMsg
	var err error
	if !a.Time.IsZero() && a.Time.Before(created) {
		// The advisory is about an EVENTS that was deleted since: the
		// message at this sequence now is another event.
		err = jetstream.ErrMsgNotFound
	} else {
		var stream jetstream.Stream
		if stream, err = d.js.Stream(ctx, natsx.StreamEvents); err == nil {
			raw, err = stream.GetMsg(ctx, a.StreamSeq)
		}
	}
	switch {
	case err == nil:
		ev := events.FromMsg(raw.Subject, raw.Header, raw.Data)
		dl.Subject, dl.Source, dl.EventType, dl.ReplayOf = ev.Subject, ev.Source, ev.Type, ev.ReplayOf
		if ev.ID != "" {
			dl.EventId = ev.ID
		}
	case errors.Is(err, jetstream.ErrMsgNotFound):
		dl.LastError += "; the event is no longer in EVENTS (aged out), so this dead letter has no payload and no event id"
	default:
		log.WarnContext(ctx, "event for a dead letter not read; will try again", slog.Any("error", err))
		_ = msg.NakWithDelay(retryDelay(msg))
		return
	}
	var dup bool
	if raw != nil {
		dup, err = d.storeDeadLetter(ctx, dl, raw.Header, raw.Data)
	} else {
		dup, err = d.storeDeadLetter(ctx, dl, nil, nil)
	}
	if err != nil {
		// Not acked: the advisory comes back until both copies are stored.
		log.WarnContext(ctx, "reconciled dead letter not stored; will try again", slog.Any("error", err))
		_ = msg.NakWithDelay(retryDelay(msg))
		return
	}
	result := "dead_lettered"
	if dup {
		result = "already_dead_lettered"
	} else {
		d.metrics.deadLetters.WithLabelValues(dest).Inc()
		log.WarnContext(ctx, "dead-lettered from an advisory", slog.String("reason", reason.String()), slog.String("event_id", dl.EventId),
			slog.Bool("payload_omitted", dl.PayloadOmitted))
	}
	d.metrics.reconciled.WithLabelValues(kind, result).Inc()
	_ = msg.Ack()
}

// UnknownEventID stands for the id of the EVENTS message at seq in a dead
// letter the reconciler writes after EVENTS no longer holds the event: the
// advisory names the sequence only. The audit log's attempt records for the
// same stream_seq and destination carry the real id.
func UnknownEventID(seq uint64) string {
	return fmt.Sprintf("unknown:%s:%d", natsx.StreamEvents, seq)
}

// retryDelay is how long an advisory waits before it is handled again:
// 2s more with each try, at most a minute.
func retryDelay(msg jetstream.Msg) time.Duration {
	n := uint64(1)
	if meta, err := msg.Metadata(); err == nil {
		n = meta.NumDelivered
	}
	return min(time.Duration(n)*2*time.Second, time.Minute)
}

// isDispatcherTermReason reports whether a termination reason is one the
// dispatcher gives (it terminates only after storing the dead letter).
func isDispatcherTermReason(r string) bool {
	_, ok := switchyardv1.DeadLetterReason_value[r]
	return ok
}
