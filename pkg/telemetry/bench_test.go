package telemetry_test

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/telemetry"
)

// BenchmarkAttemptSpan is what tracing adds to one delivery attempt: read
// the event's trace context, start a span, write the outbound traceparent,
// end it. Off is a nil *Tracing (no endpoint); on exports to a discarding
// exporter, so that the figure is the SDK's and the queue's cost alone.
func BenchmarkAttemptSpan(b *testing.B) {
	h := nats.Header{telemetry.HeaderTraceparent: {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}
	run := func(b *testing.B, tr *telemetry.Tracing) {
		out := nats.Header{}
		b.ReportAllocs()
		for b.Loop() {
			ctx, span := tr.Start(tr.Extract(context.Background(), h), "deliver erp")
			tr.Inject(ctx, out)
			span.End()
		}
	}
	b.Run("off", func(b *testing.B) { run(b, nil) })
	b.Run("on", func(b *testing.B) {
		tr := telemetry.NewWithExporter(tracetest.NewNoopExporter(), config.Defaults().Telemetry.Traces, "dispatcher", nil, nil)
		b.Cleanup(func() { _ = tr.Shutdown(context.Background()) })
		run(b, tr)
	})
}
