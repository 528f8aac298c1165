// Package telemetry is Switchyard's tracing: one OpenTelemetry tracer per
// service, W3C trace context carried in NATS message headers and HTTP
// requests, and an export queue that never holds up a delivery.
//
// Tracing is off unless telemetry.traces.endpoint is set. Off, a *Tracing
// (or a nil one) makes no span, reads and writes no traceparent and
// allocates nothing: the hot path pays a nil check.
package telemetry

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/switchyard/switchyard/pkg/config"
)

// HeaderTraceparent is the W3C trace context header, in NATS messages as
// in HTTP requests. NATS headers are case-sensitive: Switchyard writes and
// reads it in this canonical form.
const HeaderTraceparent = "Traceparent"

// Tracing is one service's tracer. The zero of its pointer, nil, is
// tracing off.
type Tracing struct {
	tracer   trace.Tracer
	provider *sdktrace.TracerProvider
}

// propagator is W3C trace context only: no baggage travels with events.
var propagator = propagation.TraceContext{}

// Dropped counts the spans a service made but did not export: the export
// queue was full, or the collector refused or did not answer.
func Dropped(reg prometheus.Registerer, service string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{
		Name:        "switchyard_trace_spans_dropped_total",
		Help:        "Spans not exported: the export queue (telemetry.traces.queue_size) was full, or the OTLP endpoint failed or did not answer in time.",
		ConstLabels: prometheus.Labels{"service": service},
	})
	if reg != nil {
		if err := reg.Register(c); err != nil {
			if are, ok := err.(prometheus.AlreadyRegisteredError); ok {
				return are.ExistingCollector.(prometheus.Counter)
			}
		}
	}
	return c
}

// New builds the tracing of one service (ingress, dispatcher, notifier,
// auditor): nil when cfg has no endpoint. Its spans are exported to cfg's
// OTLP/HTTP endpoint as service.name <cfg.ServiceName>-<service>, through
// a queue of cfg.QueueSize spans; spans that do not fit or whose export
// fails are counted in dropped. Shutdown flushes and stops it.
func New(cfg config.Traces, service string, dropped prometheus.Counter, log *slog.Logger) (*Tracing, error) {
	if cfg.Endpoint == "" {
		return nil, nil
	}
	exp, err := otlptracehttp.New(context.Background(),
		otlptracehttp.WithEndpointURL(cfg.Endpoint),
		otlptracehttp.WithTimeout(cfg.ExportTimeout.D()),
		// A failed batch is dropped and counted: retrying would hold the
		// queue while new spans are dropped anyway.
		otlptracehttp.WithRetry(otlptracehttp.RetryConfig{Enabled: false}),
	)
	if err != nil {
		return nil, fmt.Errorf("telemetry.traces.endpoint: %w", err)
	}
	return NewWithExporter(exp, cfg, service, dropped, log), nil
}

// NewWithExporter is New with the exporter given (tests pass an in-memory
// one); cfg.Endpoint is not read.
func NewWithExporter(exp sdktrace.SpanExporter, cfg config.Traces, service string, dropped prometheus.Counter, log *slog.Logger) *Tracing {
	if cfg.SampleRatio == 0 {
		cfg.SampleRatio = 1
	}
	name := cfg.ServiceName
	if name == "" {
		name = "switchyard"
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", name+"-"+service))),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.SampleRatio))),
		sdktrace.WithSpanProcessor(newQueue(exp, cfg.QueueSize, cfg.ExportTimeout.D(), dropped, log)),
	)
	return &Tracing{tracer: tp.Tracer("github.com/switchyard/switchyard"), provider: tp}
}

// Enabled reports whether t makes spans.
func (t *Tracing) Enabled() bool { return t != nil }

// Start starts a span as a child of the span in ctx (or of the remote
// context Extract put there). Off, it returns ctx and the span already in
// it (a no-op span), without allocating.
func (t *Tracing) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if t == nil {
		return ctx, trace.SpanFromContext(ctx)
	}
	return t.tracer.Start(ctx, name, opts...)
}

// Inject writes ctx's trace context into a NATS message's headers
// (Traceparent), replacing one already there. Off, it does nothing.
func (t *Tracing) Inject(ctx context.Context, h nats.Header) {
	if t == nil || h == nil {
		return
	}
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return
	}
	delete(h, HeaderTraceparent)
	delete(h, "Tracestate")
	propagator.Inject(ctx, propagation.HeaderCarrier(h))
}

// Extract returns ctx with the remote trace context of a NATS message's
// headers, if they carry a valid one. Off, it returns ctx.
func (t *Tracing) Extract(ctx context.Context, h nats.Header) context.Context {
	if t == nil || len(h) == 0 {
		return ctx
	}
	return propagator.Extract(ctx, propagation.HeaderCarrier(h))
}

// InjectHTTP writes ctx's trace context into an outbound request's headers.
// Off, it does nothing.
func (t *Tracing) InjectHTTP(ctx context.Context, h http.Header) {
	if t == nil || !trace.SpanContextFromContext(ctx).IsValid() {
		return
	}
	propagator.Inject(ctx, propagation.HeaderCarrier(h))
}

// ExtractHTTP returns ctx with the trace context a caller sent
// (traceparent), if valid. Off, it returns ctx.
func (t *Tracing) ExtractHTTP(ctx context.Context, h http.Header) context.Context {
	if t == nil {
		return ctx
	}
	return propagator.Extract(ctx, propagation.HeaderCarrier(h))
}

// Remote returns the span context a NATS message's headers carry, valid
// or not, whether tracing is on or off (a replay links to it).
func Remote(h nats.Header) trace.SpanContext {
	if len(h) == 0 {
		return trace.SpanContext{}
	}
	return trace.SpanContextFromContext(propagator.Extract(context.Background(), propagation.HeaderCarrier(h)))
}

// TraceID is the trace id (32 hex digits) of the span in ctx, or "" when
// there is none.
func TraceID(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return ""
	}
	return sc.TraceID().String()
}

// SampledTraceID is TraceID when the trace is sampled (exported), "" when
// not: what an audit record keeps, so that the id it shows can be looked up.
func SampledTraceID(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() || !sc.IsSampled() {
		return ""
	}
	return sc.TraceID().String()
}

// ForceFlush exports what is queued now.
func (t *Tracing) ForceFlush(ctx context.Context) error {
	if t == nil {
		return nil
	}
	return t.provider.ForceFlush(ctx)
}

// Shutdown exports what is queued (within ctx) and stops exporting.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	return t.provider.Shutdown(ctx)
}
