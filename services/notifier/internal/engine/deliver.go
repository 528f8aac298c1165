package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/switchyard/switchyard/pkg/topology"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/notifier/internal/alerting"
	"github.com/switchyard/switchyard/services/notifier/internal/sender"
)

// deliver sends one sender's messages, one at a time. A message is
// acknowledged only once the sender accepted it or it was given up for a
// permanent reason; a retryable failure leaves it in the stream for a
// delayed redelivery (the receiver's Retry-After, or a growing backoff).
func (e *Engine) deliver(ctx context.Context, s sender.Sender) error {
	cons, err := e.js.Consumer(ctx, topology.StreamNotifications, topology.SenderConsumerName(s.Name()))
	if err != nil {
		return fmt.Errorf("notifier: open consumer for %s: %w", s.Name(), err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(1))
	if err != nil {
		return fmt.Errorf("notifier: consume messages for %s: %w", s.Name(), err)
	}
	for {
		m, err := it.Next(jetstream.NextContext(ctx))
		if errors.Is(err, jetstream.ErrNoHeartbeat) && ctx.Err() == nil {
			// As in ingest: the iterator pulls again by itself.
			e.log.WarnContext(ctx, "missed heartbeats reading "+topology.StreamNotifications+"; reading on", slog.String("sender", s.Name()), slog.Any("error", err))
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				handBack(it)
				return nil
			}
			it.Stop()
			return fmt.Errorf("notifier: read %s: %w", topology.StreamNotifications, err)
		}
		e.deliverOne(ctx, s, m)
	}
}

func (e *Engine) deliverOne(ctx context.Context, s sender.Sender, m jetstream.Msg) {
	var n switchyardv1.Notification
	if err := proto.Unmarshal(m.Data(), &n); err != nil || n.GetAlert() == nil {
		e.log.ErrorContext(ctx, "undecodable alert message terminated", slog.String("subject", m.Subject()))
		_ = m.TermWithReason("undecodable")
		return
	}
	na := n.GetAlert()
	log := e.log.With(slog.String("sender", s.Name()), slog.String("rule", na.GetRule()), slog.Any("labels", na.GetLabels()),
		slog.String("kind", na.GetKind()), slog.String("fingerprint", na.GetFingerprint()))
	// The alert's state says whether this is still the message in flight:
	// a copy delivered twice, or one whose state was handled by another
	// replica, is dropped here rather than sent twice.
	key := alerting.Key(na.GetFingerprint())
	cur, _, err := e.store.fetch(ctx, key)
	if err != nil {
		log.WarnContext(ctx, "alert state not readable; message retried", slog.Any("error", err))
		_ = m.NakWithDelay(e.cfg.RetryWait)
		return
	}
	a, _ := cur.(*switchyardv1.Alert)
	if p := alerting.Pending(a, s.Name(), na.GetSequence()); p == nil || p.Kind != na.GetKind() {
		e.m.notifications.WithLabelValues(s.Name(), outcomeStale).Inc()
		log.DebugContext(ctx, "alert message no longer due; dropped", slog.Uint64("sequence", na.GetSequence()))
		_ = m.Ack()
		return
	}
	attempts := 1
	if meta, err := m.Metadata(); err == nil {
		attempts = int(meta.NumDelivered)
	}
	err = s.Send(ctx, senderAlert(&n))
	var retry *sender.RetryableError
	switch {
	case err == nil:
		e.m.notifications.WithLabelValues(s.Name(), outcomeDelivered).Inc()
		e.finish(ctx, log, s.Name(), m, &n, true, nil, attempts)
	case errors.As(err, &retry):
		if ctx.Err() != nil {
			// Shutting down: hand it to another replica at once.
			_ = m.Nak()
			return
		}
		wait := retry.After
		if wait == 0 {
			wait = e.backoff(attempts)
		}
		e.m.notifications.WithLabelValues(s.Name(), outcomeRetried).Inc()
		e.m.sendFailures.WithLabelValues(s.Name(), sender.FailureReason(err), "false").Inc()
		log.WarnContext(ctx, "alert not sent; will retry", slog.Duration("retry_in", wait), slog.Int("attempt", attempts), slog.Any("error", err))
		_ = m.NakWithDelay(wait)
	default:
		e.m.notifications.WithLabelValues(s.Name(), outcomeGivenUp).Inc()
		e.m.sendFailures.WithLabelValues(s.Name(), sender.FailureReason(err), "true").Inc()
		log.ErrorContext(ctx, "alert could not be sent and will not be retried; other alerts go on", slog.Int("attempt", attempts), slog.Any("error", err))
		e.finish(ctx, log, s.Name(), m, &n, false, err, attempts)
	}
}

// backoff is the wait before retry number attempts.
func (e *Engine) backoff(attempts int) time.Duration {
	d := e.cfg.RetryWait
	for i := 1; i < attempts && d < e.cfg.MaxRetryWait; i++ {
		d *= 2
	}
	return min(d, e.cfg.MaxRetryWait)
}

// finishTimeout is how long an outcome may still take to be stored once
// the notifier is shutting down.
const finishTimeout = 10 * time.Second

// finish records the outcome of message m in the alert's state (which lets
// the next message be made) and in the audit log, and only then
// acknowledges m. An outcome that cannot be stored leaves m to be sent
// again rather than be forgotten: a message acknowledged with its outcome
// unrecorded would stay the sender's pending message for good, and no
// message about the alert would ever follow.
func (e *Engine) finish(ctx context.Context, log *slog.Logger, name string, m jetstream.Msg, n *switchyardv1.Notification, delivered bool, sendErr error, attempts int) {
	na := n.GetAlert()
	if !e.recordOutcome(ctx, log, m, name, na.GetFingerprint(), na.GetSequence(), delivered) {
		log.WarnContext(ctx, "alert outcome not recorded before shutdown; the message will be sent again", slog.Uint64("sequence", na.GetSequence()))
		_ = m.Nak()
		return
	}
	rec := proto.Clone(na).(*switchyardv1.AlertNotification)
	rec.Sender, rec.Delivered, rec.Attempts = name, delivered, int32(attempts)
	if sendErr != nil {
		rec.Error = sendErr.Error()
		rec.StatusCode = int32(sender.StatusCode(sendErr))
	}
	e.auditAlert(ctx, log, rec)
	_ = m.Ack()
}

// recordOutcome stores that sender name's message seq of the alert was
// accepted (delivered) or given up. The state must not depend on the
// sender loop's context: the receiver has answered, and the shutdown that
// cancels ctx must not lose that. So it keeps trying while the process
// runs (a KV outage; m is kept from being redelivered meanwhile), and for
// finishTimeout more once ctx is done. It reports whether the outcome is
// stored, or no longer needed (the message is not the pending one any more).
func (e *Engine) recordOutcome(ctx context.Context, log *slog.Logger, m jetstream.Msg, name, fp string, seq uint64, delivered bool) bool {
	key := alerting.Key(fp)
	var deadline time.Time
	lastProgress := time.Now()
	for wait := 100 * time.Millisecond; ; wait = min(wait*2, 5*time.Second) {
		if ctx.Err() != nil && deadline.IsZero() {
			deadline = time.Now().Add(finishTimeout)
		}
		attemptEnd := time.Now().Add(5 * time.Second)
		if !deadline.IsZero() {
			attemptEnd = deadline
		}
		wctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), attemptEnd)
		now := e.clock.Now()
		_, _, err := update(wctx, e.store, key, func(a *switchyardv1.Alert) (*switchyardv1.Alert, bool) {
			return a, alerting.Done(a, name, seq, delivered, now)
		})
		cancel()
		if err == nil {
			return true
		}
		if ctx.Err() != nil && deadline.IsZero() {
			deadline = time.Now().Add(finishTimeout)
		}
		if !deadline.IsZero() && time.Until(deadline) < wait {
			return false
		}
		log.WarnContext(ctx, "alert outcome not recorded; will retry", slog.Duration("retry_in", wait), slog.Any("error", err))
		time.Sleep(wait)
		if time.Since(lastProgress) > 30*time.Second {
			_ = m.InProgress()
			lastProgress = time.Now()
		}
	}
}

// auditAlert records what happened to an alert message in the audit log.
func (e *Engine) auditAlert(ctx context.Context, log *slog.Logger, rec *switchyardv1.AlertNotification) {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := e.audit.Emit(actx, &switchyardv1.AuditRecord{
		Id:     fmt.Sprintf("alert:%s:%d:%s", rec.GetFingerprint(), rec.GetSequence(), rec.GetSender()),
		Detail: &switchyardv1.AuditRecord_Alert{Alert: rec},
	})
	if err != nil {
		log.WarnContext(ctx, "alert not recorded in the audit log", slog.Any("error", err))
	}
}
