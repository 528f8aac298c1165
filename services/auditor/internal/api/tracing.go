package api

import (
	"context"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/switchyard/switchyard/pkg/telemetry"
	"github.com/switchyard/switchyard/services/auditor/internal/store"
)

// startReplay starts a replay's span and writes its context into the
// replayed message: a new trace (a person asked for it, perhaps days
// later, and the original trace is long closed), linked to the trace the
// dead letter's event carried, so that one leads to the other. Tracing
// off, it returns ctx and a no-op span.
func (r *replayer) startReplay(ctx context.Context, m *nats.Msg, dl store.DeadLetter) (context.Context, trace.Span) {
	tr := r.cfg.Tracing
	if !tr.Enabled() {
		return ctx, trace.SpanFromContext(ctx)
	}
	opts := []trace.SpanStartOption{
		trace.WithNewRoot(),
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			attribute.String("switchyard.dead_letter_id", dl.ID),
			attribute.String("switchyard.event_id", dl.EventID),
			attribute.String("switchyard.destination", dl.Destination),
			attribute.String("messaging.destination.name", m.Subject),
		),
	}
	if orig := telemetry.Remote(m.Header); orig.IsValid() {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: orig, Attributes: []attribute.KeyValue{
			attribute.String("switchyard.link", "original delivery"),
		}}))
	}
	ctx, span := tr.Start(ctx, "replay "+dl.Destination, opts...)
	tr.Inject(ctx, m.Header)
	return ctx, span
}
