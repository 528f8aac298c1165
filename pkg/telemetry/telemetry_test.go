package telemetry_test

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/otel/trace"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/telemetry"
	"github.com/switchyard/switchyard/pkg/testing/otlptest"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
)

func traces(endpoint string) config.Traces {
	t := config.Defaults().Telemetry.Traces
	t.Endpoint = endpoint
	return t
}

// Off (no endpoint), New returns nil, and nil makes no span, writes no
// header and allocates nothing.
func TestOffDoesNothing(t *testing.T) {
	tr, err := telemetry.New(traces(""), "ingress", nil, nil)
	if err != nil || tr != nil {
		t.Fatalf("New without endpoint = %v, %v; want nil, nil", tr, err)
	}
	h := nats.Header{}
	ctx := tr.ExtractHTTP(context.Background(), http.Header{"Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}})
	ctx, span := tr.Start(ctx, "x")
	tr.Inject(ctx, h)
	span.End()
	if len(h) != 0 || span.SpanContext().IsValid() || telemetry.TraceID(ctx) != "" {
		t.Fatalf("tracing off made a span or header: %v %v", h, span.SpanContext())
	}
	allocs := testing.AllocsPerRun(100, func() {
		c, s := tr.Start(context.Background(), "deliver")
		tr.Inject(c, h)
		s.End()
	})
	if allocs != 0 {
		t.Errorf("tracing off allocates %v times per span", allocs)
	}
}

// A trace context goes into NATS headers and comes back out; the receiver
// sees both spans, parent and child, in one trace under each service name.
func TestPropagatesThroughNATSHeaders(t *testing.T) {
	t.Parallel()
	rcv := otlptest.New(t)
	ing, err := telemetry.New(traces(rcv.URL()), "ingress", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	disp, err := telemetry.New(traces(rcv.URL()), "dispatcher", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A caller's traceparent is continued.
	const callerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	ctx := ing.ExtractHTTP(context.Background(), http.Header{"Traceparent": {"00-" + callerTrace + "-00f067aa0ba902b7-01"}})
	ctx, span := ing.Start(ctx, "ingress")
	h := nats.Header{telemetry.HeaderTraceparent: {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}
	ing.Inject(ctx, h)
	span.End()
	if got := telemetry.Remote(h).TraceID().String(); got != callerTrace {
		t.Fatalf("header trace = %s, want the caller's %s (replacing the old one)", got, callerTrace)
	}
	dctx, dspan := disp.Start(disp.Extract(context.Background(), h), "deliver", trace.WithSpanKind(trace.SpanKindClient))
	if telemetry.TraceID(dctx) != callerTrace {
		t.Fatalf("dispatcher trace id %q", telemetry.TraceID(dctx))
	}
	dspan.End()
	for _, tr := range []*telemetry.Tracing{ing, disp} {
		if err := tr.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	got := rcv.Trace(callerTrace)
	if len(got) != 2 {
		t.Fatalf("received %d spans of the trace, want 2: %+v", len(got), rcv.Spans())
	}
	byName := map[string]otlptest.Span{}
	for _, s := range got {
		byName[s.Name] = s
	}
	if byName["ingress"].Service != "switchyard-ingress" || byName["deliver"].Service != "switchyard-dispatcher" {
		t.Errorf("service names: %+v", got)
	}
	if byName["deliver"].ParentSpanID != byName["ingress"].SpanID {
		t.Errorf("deliver's parent = %s, want the ingress span %s", byName["deliver"].ParentSpanID, byName["ingress"].SpanID)
	}
}

// An endpoint that accepts connections and never answers: making spans
// does not wait for it, a full queue drops and counts, and a failed export
// counts its spans as dropped.
func TestUnreachableEndpointNeverBlocks(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { _ = c.Close() })
		}
	}()
	cfg := traces("http://" + ln.Addr().String() + "/v1/traces")
	cfg.QueueSize = 8
	cfg.ExportTimeout = config.Duration(200 * time.Millisecond)
	reg := prometheus.NewRegistry()
	dropped := telemetry.Dropped(reg, "dispatcher")
	tr, err := telemetry.New(cfg, "dispatcher", dropped, nil)
	if err != nil {
		t.Fatal(err)
	}
	const spans = 1000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range spans {
			_, s := tr.Start(context.Background(), "deliver")
			s.End()
		}
	}()
	// The spans are made without waiting on the endpoint: at most the
	// queue and one batch are held, the rest are dropped at once.
	waitfor.Within(t, 10*time.Second, "1000 spans made against an endpoint that never answers", func() bool {
		select {
		case <-done:
			return true
		default:
			return false
		}
	})
	if got := testutil.ToFloat64(dropped); got < spans-8-512 {
		t.Errorf("dropped = %v right after making %d spans into a queue of 8", got, spans)
	}
	// The exports in flight time out and count their spans too.
	waitfor.Within(t, 10*time.Second, "every span counted as dropped", func() bool { return testutil.ToFloat64(dropped) == spans })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = tr.Shutdown(ctx)
}
