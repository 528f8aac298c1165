// Package engine turns audit records into alerts: it reads the AUDIT stream
// through the notifier's durable consumer and sends an alert for each dead
// letter.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/natsx"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/notifier/internal/sender"
)

// Config configures the engine.
type Config struct {
	// Sender delivers alerts. Required.
	Sender sender.Sender
	// Logger is required.
	Logger *slog.Logger
	// RetryWait is the wait after a retryable send failure that named no
	// Retry-After. Default 5s.
	RetryWait time.Duration
}

// Engine evaluates records and sends alerts.
type Engine struct {
	js    jetstream.JetStream
	audit *auditlog.Emitter
	cfg   Config
}

// New returns an engine.
func New(js jetstream.JetStream, audit *auditlog.Emitter, cfg Config) (*Engine, error) {
	if cfg.Sender == nil || cfg.Logger == nil {
		return nil, errors.New("notifier: Config.Sender and Config.Logger are required")
	}
	if cfg.RetryWait == 0 {
		cfg.RetryWait = 5 * time.Second
	}
	return &Engine{js: js, audit: audit, cfg: cfg}, nil
}

// Run consumes audit records until ctx is done.
func (e *Engine) Run(ctx context.Context) error {
	cons, err := e.js.Consumer(ctx, natsx.StreamAudit, natsx.ConsumerNotifier)
	if err != nil {
		return fmt.Errorf("notifier: open consumer: %w", err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(256))
	if err != nil {
		return fmt.Errorf("notifier: consume: %w", err)
	}
	defer it.Stop()
	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("notifier: read AUDIT: %w", err)
		}
		e.handle(ctx, msg)
	}
}

func (e *Engine) handle(ctx context.Context, msg jetstream.Msg) {
	rec, err := auditlog.Decode(msg.Data())
	if err != nil {
		e.cfg.Logger.ErrorContext(ctx, "undecodable audit record terminated", slog.Any("error", err))
		_ = msg.TermWithReason("undecodable")
		return
	}
	dl := rec.GetDeadLettered()
	if dl == nil {
		_ = msg.Ack()
		return
	}
	alert := DeadLetterAlert(dl)
	err = e.cfg.Sender.Send(ctx, alert)
	var retry *sender.RetryableError
	switch {
	case err == nil:
		e.record(ctx, dl, true, "")
		_ = msg.Ack()
	case errors.As(err, &retry):
		wait := retry.After
		if wait == 0 {
			wait = e.cfg.RetryWait
		}
		e.cfg.Logger.WarnContext(ctx, "alert not sent; will retry", slog.String("sender", e.cfg.Sender.Name()),
			slog.Duration("retry_in", wait), slog.Any("error", err))
		_ = msg.NakWithDelay(wait)
	default:
		e.cfg.Logger.ErrorContext(ctx, "alert could not be sent and will not be retried", slog.String("sender", e.cfg.Sender.Name()), slog.Any("error", err))
		e.record(ctx, dl, false, err.Error())
		_ = msg.Ack()
	}
}

// DeadLetterAlert describes a dead letter for on-call.
func DeadLetterAlert(dl *switchyardv1.DeadLetter) sender.Alert {
	lastErr := dl.LastError
	if lastErr == "" {
		lastErr = "(none)"
	}
	return sender.Alert{
		Title:  "Delivery dead-lettered: " + dl.Destination,
		Firing: true,
		Fields: []sender.Field{
			{Label: "Destination", Value: dl.Destination},
			{Label: "Event", Value: "`" + dl.EventId + "`"},
			{Label: "Attempts", Value: strconv.Itoa(int(dl.Attempts))},
			{Label: "Last error", Value: lastErr},
			{Label: "Reason", Value: dl.Reason.String()},
			{Label: "Subject", Value: dl.Subject},
		},
	}
}

func (e *Engine) record(ctx context.Context, dl *switchyardv1.DeadLetter, delivered bool, errText string) {
	rec := &switchyardv1.AuditRecord{
		Id: "alert:dead_letter:" + dl.Id,
		Detail: &switchyardv1.AuditRecord_Alert{Alert: &switchyardv1.AlertNotification{
			Fingerprint: "DeliveryDeadLettered/" + dl.Destination + "/" + dl.Id,
			Rule:        "DeliveryDeadLettered",
			Labels:      map[string]string{"destination": dl.Destination},
			State:       switchyardv1.AlertState_ALERT_STATE_FIRING,
			Severity:    "critical",
			Summary:     "Delivery dead-lettered: " + dl.Destination,
			Sender:      e.cfg.Sender.Name(),
			Delivered:   delivered,
			Error:       errText,
			Count:       1,
		}},
	}
	if err := e.audit.Emit(ctx, rec); err != nil {
		e.cfg.Logger.WarnContext(ctx, "alert not recorded in the audit log", slog.Any("error", err))
	}
}
