package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/switchyard/switchyard/pkg/events"
	"github.com/switchyard/switchyard/pkg/mapping"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/dispatcher/internal/delivery"
	"github.com/switchyard/switchyard/services/dispatcher/internal/ids"
	"github.com/switchyard/switchyard/services/dispatcher/internal/settle"
)

// maxMappingError bounds the error text a failed mapping leaves in its dead
// letter (gojq quotes part of the value it failed on).
const maxMappingError = 1024

// compileMapping compiles the destination's filter and transformation; nil
// when it has neither. The configuration was validated, so an error here
// is a hand-built one's.
func compileMapping(name string, spec mapping.Spec) (*mapping.Mapping, error) {
	if spec.Empty() {
		return nil, nil
	}
	m, err := mapping.Compile(spec)
	if err != nil {
		return nil, fmt.Errorf("destination %q: %w", name, err)
	}
	return m, nil
}

// transformVersion is the version of the destination's transformation,
// "" when it has none (no mapping, or only a filter).
func (dest *destination) transformVersion() string {
	if dest.mapping == nil {
		return ""
	}
	return dest.mapping.Version()
}

// mapEvent runs the destination's filter and transformation over ev. It
// reports false when the filter leaves the event out; an error is the
// mapping's (the event must be dead-lettered: no later attempt can do
// better with the same program).
func (dest *destination) mapEvent(ctx context.Context, ev events.Stored) (mapping.Output, bool, error) {
	in := mapping.NewInput(mapping.Event{ID: ev.ID, Type: ev.Type, Source: ev.Source, Subject: ev.Subject, Header: ev.Header, Body: ev.Data})
	keep, err := dest.mapping.Filter(ctx, in)
	if err != nil || !keep {
		return mapping.Output{}, false, err
	}
	out, err := dest.mapping.Apply(ctx, in)
	if err != nil {
		return mapping.Output{}, false, err
	}
	return out, true, nil
}

// withMapping puts the transformation's output on the request.
func withMapping(req delivery.Request, out mapping.Output) delivery.Request {
	req.Body, req.Header, req.Path = out.Body, out.Header, out.Path
	if out.ContentType != "" {
		req.ContentType = out.ContentType
	}
	return req
}

// filteredOut acknowledges an event the destination's filter leaves out:
// no attempt; a DeliveryFiltered record, so that the audit log says the
// delivery was left out rather than pending for ever; counted. The record
// is stored before the ack, as an attempt's is: acknowledged first, it could
// be lost with the process, and the delivery would stay pending.
func (dest *destination) filteredOut(ctx context.Context, msg jetstream.Msg, ev events.Stored, meta *jetstream.MsgMetadata, alive *pulse, log *slog.Logger) {
	inc, _ := dest.d.inc.Get()
	rec := &switchyardv1.AuditRecord{
		// One per stream message and destination, however often it is
		// delivered again before the ack lands.
		Id: ids.FilteredID(inc, meta.Sequence.Stream, dest.cfg.Name),
		Detail: &switchyardv1.AuditRecord_DeliveryFiltered{DeliveryFiltered: &switchyardv1.DeliveryFiltered{
			EventId: ev.ID, Destination: dest.cfg.Name, Subject: ev.Subject, StreamSeq: meta.Sequence.Stream,
			ReplayOf: ev.ReplayOf, FilteredAt: timestamppb.Now(),
		}},
	}
	if err := dest.storeRecord(ctx, rec); err != nil {
		log.ErrorContext(ctx, "filtered-out event not recorded in the audit log", slog.Any("error", err))
	}
	alive.stop()
	if err := msg.Ack(); err != nil {
		log.WarnContext(ctx, "ack of a filtered-out event failed", slog.Any("error", err))
	}
	dest.d.metrics.filtered.WithLabelValues(dest.cfg.Name).Inc()
	log.DebugContext(ctx, "left out by the destination's filter")
}

// mappingFailed dead-letters an event whose filter or transformation
// failed: a permanent failure decided by settle like any other, made
// without a request (so no attempt record, and nothing for the circuit
// breaker: the partner did not answer). The dead letter keeps the stored
// payload, so a replay runs the transformation current then.
func (dest *destination) mappingFailed(ctx context.Context, msg jetstream.Msg, ev events.Stored, meta *jetstream.MsgMetadata, attempt int,
	err error, alive *pulse, log *slog.Logger) {
	stage := mapping.StageTransform
	var me *mapping.Error
	if errors.As(err, &me) {
		stage = me.Stage
	}
	dest.d.metrics.mappingFailures.WithLabelValues(dest.cfg.Name, string(stage)).Inc()
	text := err.Error()
	if v := dest.mapping.Version(); v != "" && stage != mapping.StageFilter {
		text = "transformation " + v + ": " + text
	}
	if len(text) > maxMappingError {
		text = text[:maxMappingError] + "..."
	}
	res := delivery.Result{Outcome: switchyardv1.Outcome_OUTCOME_PERMANENT, Err: errors.New(text), Started: time.Now()}
	act := settle.Decide(res, settle.Attempt{Number: attempt}, dest.policy)
	log.WarnContext(ctx, "the destination's mapping failed; dead-lettering the event", slog.String("stage", string(stage)), slog.String("error", text))
	dest.finishDeadLetter(ctx, msg, dest.newDeadLetter(ev, meta, attempt, res, act.Reason), act.LastDelivery, alive, log)
}
