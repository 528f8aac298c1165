package runner

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/events"
	"github.com/switchyard/switchyard/pkg/natsx"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/dispatcher/internal/delivery"
)

// handle makes one attempt for one message and settles it: ack when
// delivered, leave it for JetStream to redeliver on schedule when retryable,
// dead-letter and terminate when permanent or out of attempts. probe marks
// the half-open circuit breaker's probe attempt.
func (dest *destination) handle(ctx context.Context, msg jetstream.Msg, probe bool) {
	if probe {
		defer dest.probing.Store(false)
	}
	meta, err := msg.Metadata()
	if err != nil {
		dest.log.ErrorContext(ctx, "message without JetStream metadata; terminating it", slog.Any("error", err))
		_ = msg.TermWithReason("no metadata")
		return
	}
	ev := events.FromMsg(msg.Subject(), msg.Headers(), msg.Data())
	attempt := int(meta.NumDelivered)
	maxAttempts := dest.cfg.Retry.MaxAttempts
	log := dest.log.With(slog.String("event_id", ev.ID), slog.Int("attempt", attempt), slog.Uint64("seq", meta.Sequence.Stream))

	// While this replica holds the event, JetStream must not think it lost:
	// a slow audit write or a wait for the breaker is not a failed attempt.
	// The request itself fits in the ack wait (validated), so this fires
	// only when the work around it overruns. It stops before the message
	// is settled, so that no InProgress follows a nak.
	alive := keepAlive(msg, dest.keepAliveEvery(attempt))
	defer alive.stop()

	if !probe && dest.breaker != nil {
		if c, _ := dest.breaker.view(); c.State != switchyardv1.CircuitState_CIRCUIT_STATE_CLOSED {
			// Fetched just before the breaker opened: hold it, without
			// burning its attempt, until the partner is back (or it is
			// this replica's probe).
			n, p := dest.admit(ctx)
			if n == 0 {
				log.Warn("shutdown while the circuit breaker held the event; handing it back")
				alive.stop()
				_ = msg.Nak()
				return
			}
			if p {
				probe = true
				defer dest.probing.Store(false)
			}
		}
	}

	dest.d.metrics.inflight.WithLabelValues(dest.cfg.Name).Inc()
	res := dest.client.Send(ctx, delivery.Request{
		EventID:     ev.ID,
		EventType:   ev.Type,
		ContentType: ev.ContentType,
		Body:        ev.Data,
		Attempt:     attempt,
		ReplayOf:    ev.ReplayOf,
	})
	dest.d.metrics.inflight.WithLabelValues(dest.cfg.Name).Dec()
	if ctx.Err() != nil && !res.Delivered() {
		// Cut off by shutdown: hand the event back at once for another
		// replica. This counts as an attempt, as the server cannot know.
		log.Warn("delivery interrupted by shutdown; handing the event back")
		alive.stop()
		_ = msg.Nak()
		return
	}
	if dest.breaker != nil {
		dest.breaker.record(res.Retryable(), res.ErrorString(), probe)
		if probe || res.Retryable() {
			// Write it before this worker takes the next event, so that a
			// failure that opens the breaker stops this replica's next
			// attempt, and a probe is decided before another can start.
			dest.breaker.flush(ctx)
		}
	}

	final := res.Delivered() || !res.Retryable() || attempt >= maxAttempts
	dest.d.metrics.observe(dest.cfg.Name, res)
	dest.recordAttempt(ctx, ev, meta, attempt, res, final, probe)
	alive.stop()

	switch {
	case res.Delivered():
		// A plain ack, not a double ack: waiting for the server's
		// confirmation costs a round trip per event and changes nothing,
		// since a lost ack means a redelivery either way, a duplicate the
		// partner drops by Idempotency-Key.
		if err := msg.Ack(); err != nil {
			log.WarnContext(ctx, "ack of a delivered event failed", slog.Any("error", err))
		}
		log.DebugContext(ctx, "delivered", slog.Int("status", res.StatusCode), slog.Duration("took", res.Duration))
	case final:
		reason := switchyardv1.DeadLetterReason_DEAD_LETTER_REASON_MAX_ATTEMPTS
		if !res.Retryable() {
			reason = switchyardv1.DeadLetterReason_DEAD_LETTER_REASON_PERMANENT_FAILURE
		}
		dest.deadLetter(ctx, msg, ev, meta, attempt, res, reason, log)
	default:
		next := dest.nextDelay(attempt)
		if res.RetryAfter > next {
			// The destination asked for a longer pause than the schedule:
			// honour it, never retry sooner.
			if err := msg.NakWithDelay(NakDelay(dest.backoff, attempt, res.RetryAfter)); err != nil {
				log.WarnContext(ctx, "nak with delay failed; the schedule applies", slog.Any("error", err))
			}
			next = res.RetryAfter
		}
		// Otherwise leave the message unacked: JetStream redelivers it when
		// the ack wait for this delivery (its BackOff step) runs out.
		log.InfoContext(ctx, "attempt failed; will retry",
			slog.Int("status", res.StatusCode), slog.String("error", res.ErrorString()),
			slog.Duration("retry_in", next))
	}
}

// nextDelay is the BackOff step that applies after this attempt.
func (dest *destination) nextDelay(attempt int) time.Duration {
	return dest.backoff[min(attempt-1, len(dest.backoff)-1)]
}

// keepAliveEvery is how often InProgress is sent for delivery number
// attempt: shortly before its ack wait (the BackOff step) runs out.
func (dest *destination) keepAliveEvery(attempt int) time.Duration {
	step := dest.nextDelay(attempt)
	return step - max(config.AckMargin(dest.cfg.Timeout.D())/2, step/10)
}

// NakDelay is the delay to nak delivery number attempt with so that it is
// redelivered wait from now, on a consumer with this BackOff.
//
// The server (nats-server consumer.go, processNak and checkPending) does
// not redeliver a nak'd message after the delay it was given: it sets the
// message's timestamp to now - AckWait + delay, and redelivers it once
// now - timestamp reaches the BackOff step of its delivery count. With
// AckWait = BackOff[0] that is delay + BackOff[n-1] - BackOff[0] after the
// nak, longer than asked by the growth of the schedule (a 2m Retry-After on
// the third attempt of the default schedule would wait 2m + 2m - 10s).
// Subtracting that growth gives the wait asked for.
func NakDelay(backoff []time.Duration, attempt int, wait time.Duration) time.Duration {
	step := backoff[min(max(attempt, 1)-1, len(backoff)-1)]
	return max(wait-step+backoff[0], time.Millisecond)
}

// pulse sends InProgress on a message every interval until stopped.
type pulse struct {
	mu      sync.Mutex
	t       *time.Timer
	stopped bool
}

func keepAlive(msg jetstream.Msg, every time.Duration) *pulse {
	p := &pulse{}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.t = time.AfterFunc(every, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.stopped {
			return
		}
		_ = msg.InProgress()
		p.t.Reset(every)
	})
	return p
}

func (p *pulse) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopped = true
	p.t.Stop()
}

// auditTimeout bounds waiting for an audit record to be stored.
const auditTimeout = 5 * time.Second

func (dest *destination) recordAttempt(ctx context.Context, ev events.Stored, meta *jetstream.MsgMetadata, attempt int, res delivery.Result, final, probe bool) {
	a := &switchyardv1.DeliveryAttempt{
		EventId:         ev.ID,
		Destination:     dest.cfg.Name,
		Subject:         ev.Subject,
		StreamSeq:       meta.Sequence.Stream,
		Attempt:         int32(attempt),
		MaxAttempts:     int32(dest.cfg.Retry.MaxAttempts),
		StartedAt:       timestamppb.New(res.Started),
		Duration:        durationpb.New(res.Duration),
		StatusCode:      int32(res.StatusCode),
		Outcome:         res.Outcome,
		Error:           res.ErrorString(),
		ResponseSnippet: res.Snippet,
		Final:           final,
		ReplayOf:        ev.ReplayOf,
		Source:          ev.Source,
		EventType:       ev.Type,
		Probe:           probe,
	}
	if res.RetryAfter > 0 {
		a.RetryAfter = durationpb.New(res.RetryAfter)
	}
	rec := &switchyardv1.AuditRecord{
		// The same delivery of the same stream message is the same attempt.
		Id:     fmt.Sprintf("attempt:%s:%d:%s:%d", natsx.StreamEvents, meta.Sequence.Stream, dest.cfg.Name, attempt),
		Detail: &switchyardv1.AuditRecord_DeliveryAttempt{DeliveryAttempt: a},
	}
	actx, cancel := context.WithTimeout(ctx, auditTimeout)
	defer cancel()
	if err := dest.d.audit.Emit(actx, rec); err != nil {
		dest.log.ErrorContext(ctx, "attempt not recorded in the audit log", slog.String("event_id", ev.ID), slog.Any("error", err))
	}
}

// DeadLetterID is the dead letter's id and Nats-Msg-Id: one per stream
// message and destination, so the dispatcher and the advisory reconciler
// cannot both create one.
func DeadLetterID(seq uint64, destination string) string {
	return fmt.Sprintf("%s:%d:%s", natsx.StreamEvents, seq, destination)
}

// deadLetter stores the dead letter, records it, then terminates the message.
// If storing fails the message is left unacked: JetStream will redeliver
// it (or raise MAX_DELIVERIES), and the dead letter is tried again.
func (dest *destination) deadLetter(ctx context.Context, msg jetstream.Msg, ev events.Stored, meta *jetstream.MsgMetadata, attempt int, res delivery.Result, reason switchyardv1.DeadLetterReason, log *slog.Logger) {
	dl := &switchyardv1.DeadLetter{
		Id:              DeadLetterID(meta.Sequence.Stream, dest.cfg.Name),
		EventId:         ev.ID,
		Destination:     dest.cfg.Name,
		Subject:         ev.Subject,
		Stream:          natsx.StreamEvents,
		StreamSeq:       meta.Sequence.Stream,
		Attempts:        int32(attempt),
		LastStatusCode:  int32(res.StatusCode),
		LastError:       res.ErrorString(),
		ResponseSnippet: res.Snippet,
		Reason:          reason,
		DeadLetteredAt:  timestamppb.Now(),
		Source:          ev.Source,
		EventType:       ev.Type,
		ReplayOf:        ev.ReplayOf,
	}
	if _, err := dest.d.publishDeadLetter(ctx, dl, msg.Headers(), msg.Data()); err != nil {
		log.ErrorContext(ctx, "dead letter not stored; leaving the event for redelivery", slog.Any("error", err))
		return
	}
	if err := msg.TermWithReason(reason.String()); err != nil {
		log.WarnContext(ctx, "terminate after dead letter failed", slog.Any("error", err))
	}
	dest.d.metrics.deadLetters.WithLabelValues(dest.cfg.Name).Inc()
	log.WarnContext(ctx, "dead-lettered",
		slog.String("reason", reason.String()), slog.Int("status", res.StatusCode), slog.String("error", res.ErrorString()))
}

// publishDeadLetter stores dl (with the payload) in DEAD_LETTERS and records
// it (without the payload) in the audit log. It reports whether the dead
// letter was already stored: DEAD_LETTERS drops a second one with the same
// id (Nats-Msg-Id) within its 2h duplicate window. The audit record is
// emitted either way (its id is deterministic and the audit log upserts),
// since a crash may have come between the two.
func (d *Dispatcher) publishDeadLetter(ctx context.Context, dl *switchyardv1.DeadLetter, h nats.Header, payload []byte) (duplicate bool, err error) {
	full := proto.Clone(dl).(*switchyardv1.DeadLetter)
	full.Payload = payload
	full.Headers = map[string]string{}
	for k := range h {
		if k == nats.MsgIdHdr {
			continue
		}
		full.Headers[k] = h.Get(k)
	}
	data, err := proto.Marshal(full)
	if err != nil {
		return false, fmt.Errorf("encode dead letter: %w", err)
	}
	m := nats.NewMsg("dlq." + dl.Destination)
	m.Header.Set(nats.MsgIdHdr, dl.Id)
	m.Data = data
	pctx, cancel := context.WithTimeout(ctx, auditTimeout)
	defer cancel()
	ack, err := d.js.PublishMsg(pctx, m)
	if err != nil {
		return false, fmt.Errorf("publish dead letter %s: %w", dl.Id, err)
	}
	rec := &switchyardv1.AuditRecord{
		Id:     "dead_letter:" + dl.Id,
		Detail: &switchyardv1.AuditRecord_DeadLettered{DeadLettered: dl},
	}
	if err := d.audit.Emit(pctx, rec); err != nil {
		// The dead letter itself is stored; only its audit copy is missing.
		d.cfg.Logger.ErrorContext(ctx, "dead letter not recorded in the audit log", slog.String("dead_letter_id", dl.Id), slog.Any("error", err))
	}
	return ack.Duplicate, nil
}
