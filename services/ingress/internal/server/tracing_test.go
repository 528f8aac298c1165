package server

import (
	"context"
	"net/http"
	"testing"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/telemetry"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
)

func withTracing(tr *telemetry.Tracing) envOption { return func(c *Config) { c.Tracing = tr } }

// A webhook that carries the partner's traceparent: ingress continues the
// partner's trace (a server span, and the store span under it) and writes
// the store span's context into the stored event, for the dispatcher.
func TestWebhookContinuesTheCallersTrace(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	tr := telemetry.NewWithExporter(exp, config.Defaults().Telemetry.Traces, "ingress", nil, nil)
	e := newEnv(t, withTracing(tr))
	const partnerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	w := vector()
	w.header = http.Header{"Traceparent": {"00-" + partnerTrace + "-00f067aa0ba902b7-01"}}
	if a := e.post(t, w); a.code != http.StatusAccepted {
		t.Fatalf("answer %d %s", a.code, a.raw)
	}
	if err := tr.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	spans := exp.GetSpans()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want the request's and the store's", len(spans))
	}
	store, req := spans[0], spans[1]
	if req.Name != "POST /webhooks/{source}" || req.SpanKind != trace.SpanKindServer || req.Parent.SpanID().String() != "00f067aa0ba902b7" {
		t.Errorf("request span %s kind %v parent %s", req.Name, req.SpanKind, req.Parent.SpanID())
	}
	if store.SpanKind != trace.SpanKindProducer || store.Parent.SpanID() != req.SpanContext.SpanID() {
		t.Errorf("store span %s kind %v parent %s, want a producer under the request", store.Name, store.SpanKind, store.Parent.SpanID())
	}
	msgs := natstest.StreamMsgs(t, e.js, natsx.StreamEvents, "webhooks.>")
	if len(msgs) != 1 {
		t.Fatalf("%d events stored", len(msgs))
	}
	sc := telemetry.Remote(msgs[0].Header)
	if sc.TraceID().String() != partnerTrace || sc.SpanID() != store.SpanContext.SpanID() {
		t.Errorf("stored traceparent %q, want the store span of the partner's trace", msgs[0].Header.Get(telemetry.HeaderTraceparent))
	}
}

// Tracing off: a partner's traceparent is not stored.
func TestTracingOffStoresNoTraceparent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := vector()
	w.header = http.Header{"Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}
	if a := e.post(t, w); a.code != http.StatusAccepted {
		t.Fatalf("answer %d %s", a.code, a.raw)
	}
	msgs := natstest.StreamMsgs(t, e.js, natsx.StreamEvents, "webhooks.>")
	if len(msgs) != 1 || msgs[0].Header.Get(telemetry.HeaderTraceparent) != "" {
		t.Errorf("stored %d events, headers %v", len(msgs), msgs[0].Header)
	}
}
