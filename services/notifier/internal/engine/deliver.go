package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/notifier/internal/alerting"
	"github.com/switchyard/switchyard/services/notifier/internal/sender"
)

// deliver sends one sender's messages, one at a time. A message is
// acknowledged only once the sender accepted it or it was given up for a
// permanent reason; a retryable failure leaves it in the stream for a
// delayed redelivery (the receiver's Retry-After, or a growing backoff).
func (e *Engine) deliver(ctx context.Context, s sender.Sender) error {
	cons, err := e.js.Consumer(ctx, StreamNotifications, ConsumerPrefix+s.Name())
	if err != nil {
		return fmt.Errorf("notifier: open consumer for %s: %w", s.Name(), err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(1))
	if err != nil {
		return fmt.Errorf("notifier: consume messages for %s: %w", s.Name(), err)
	}
	for {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				handBack(it)
				return nil
			}
			it.Stop()
			return fmt.Errorf("notifier: read %s: %w", StreamNotifications, err)
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
		e.m.notifications.WithLabelValues(s.Name(), "stale").Inc()
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
		e.finish(ctx, log, s.Name(), &n, true, nil, attempts)
		e.m.notifications.WithLabelValues(s.Name(), "delivered").Inc()
		_ = m.Ack()
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
		e.m.notifications.WithLabelValues(s.Name(), "retried").Inc()
		e.m.sendFailures.WithLabelValues(s.Name(), strconv.Itoa(retry.StatusCode), "false").Inc()
		log.WarnContext(ctx, "alert not sent; will retry", slog.Duration("retry_in", wait), slog.Int("attempt", attempts), slog.Any("error", err))
		_ = m.NakWithDelay(wait)
	default:
		e.m.notifications.WithLabelValues(s.Name(), "given_up").Inc()
		e.m.sendFailures.WithLabelValues(s.Name(), strconv.Itoa(sender.StatusCode(err)), "true").Inc()
		log.ErrorContext(ctx, "alert could not be sent and will not be retried; other alerts go on", slog.Int("attempt", attempts), slog.Any("error", err))
		e.finish(ctx, log, s.Name(), &n, false, err, attempts)
		_ = m.Ack()
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

// finish records the outcome in the alert's state (which lets the next
// message be made) and in the audit log.
func (e *Engine) finish(ctx context.Context, log *slog.Logger, name string, n *switchyardv1.Notification, delivered bool, sendErr error, attempts int) {
	na := n.GetAlert()
	key := alerting.Key(na.GetFingerprint())
	now := e.clock.Now()
	// A KV outage must not make the message go again: keep trying to
	// record it, as long as the process lives.
	for wait := 100 * time.Millisecond; ; wait = min(wait*2, 5*time.Second) {
		_, _, err := update(ctx, e.store, key, func(a *switchyardv1.Alert) (*switchyardv1.Alert, bool) {
			return a, alerting.Done(a, name, na.GetSequence(), delivered, now)
		})
		if err == nil || ctx.Err() != nil {
			break
		}
		log.WarnContext(ctx, "alert outcome not recorded; will retry", slog.Any("error", err))
		select {
		case <-time.After(wait):
		case <-ctx.Done():
		}
	}
	rec := proto.Clone(na).(*switchyardv1.AlertNotification)
	rec.Sender, rec.Delivered, rec.Attempts = name, delivered, int32(attempts)
	if sendErr != nil {
		rec.Error = sendErr.Error()
		rec.StatusCode = int32(sender.StatusCode(sendErr))
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := e.audit.Emit(actx, &switchyardv1.AuditRecord{
		Id:     fmt.Sprintf("alert:%s:%d:%s", na.GetFingerprint(), na.GetSequence(), name),
		Detail: &switchyardv1.AuditRecord_Alert{Alert: rec},
	})
	if err != nil {
		log.WarnContext(ctx, "alert not recorded in the audit log", slog.Any("error", err))
	}
}
