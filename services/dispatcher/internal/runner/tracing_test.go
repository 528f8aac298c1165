package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/events"
	"github.com/switchyard/switchyard/pkg/telemetry"
)

// An event whose headers carry a trace (as ingress writes it): every
// attempt is a span of that trace, a child of the span in the header, with
// the destination, attempt number, status and outcome; the partner gets
// the attempt's traceparent; the attempt records carry the trace id.
func TestAttemptsContinueTheEventsTrace(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := newPartner(t,
		reply{status: http.StatusServiceUnavailable},
		reply{status: http.StatusServiceUnavailable},
		reply{status: http.StatusOK},
	)
	exp := tracetest.NewInMemoryExporter()
	tr := telemetry.NewWithExporter(exp, config.Defaults().Telemetry.Traces, "dispatcher", nil, nil)
	t.Cleanup(func() { _ = tr.Shutdown(context.Background()) })
	e.run(t, e.js, func(c *Config) { c.Tracing = tr }, destinationFor("erp", p.URL, 5))

	const traceID, parentSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	ev := orderEvent("ev-traced")
	ev.Header = nats.Header{telemetry.HeaderTraceparent: {"00-" + traceID + "-" + parentSpan + "-01"}}
	e.publish(t, ev)
	e.waitSettled(t, "erp", 3)
	if err := tr.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}

	spans := exp.GetSpans()
	if len(spans) != 3 {
		t.Fatalf("%d spans, want one per attempt (3)", len(spans))
	}
	hits := p.received()
	for i, s := range spans {
		if s.SpanContext.TraceID().String() != traceID || s.Parent.SpanID().String() != parentSpan {
			t.Errorf("span %d: trace %s parent %s; want the event's trace and span", i+1, s.SpanContext.TraceID(), s.Parent.SpanID())
		}
		attrs := spanAttrs(s)
		wantStatus, wantOutcome := "503", "retryable"
		if i == 2 {
			wantStatus, wantOutcome = "200", "delivered"
		}
		if s.Name != "deliver erp" || attrs["switchyard.destination"] != "erp" || attrs["switchyard.attempt"] != strconv.Itoa(i+1) ||
			attrs["http.response.status_code"] != wantStatus || attrs["switchyard.outcome"] != wantOutcome || attrs["switchyard.event_id"] != "ev-traced" {
			t.Errorf("span %d = %s %v", i+1, s.Name, attrs)
		}
		want := "00-" + traceID + "-" + s.SpanContext.SpanID().String() + "-01"
		if got := hits[i].header.Get("Traceparent"); got != want {
			t.Errorf("request %d traceparent = %q, want the attempt's span %q", i+1, got, want)
		}
	}
	_, as := attempts(t, e.js, "erp")
	if len(as) != 3 {
		t.Fatalf("%d attempt records", len(as))
	}
	for i, a := range as {
		if a.TraceId != traceID {
			t.Errorf("attempt record %d trace_id = %q, want %s", i+1, a.TraceId, traceID)
		}
	}
}

// Tracing off: no traceparent goes out and the records carry no trace id,
// even when the event's headers have one.
func TestTracingOffSendsNoTraceparent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := newPartner(t, reply{status: http.StatusOK})
	e.start(t, destinationFor("erp", p.URL, 5))
	ev := orderEvent("ev-untraced")
	ev.Header = nats.Header{telemetry.HeaderTraceparent: {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}
	e.publish(t, ev)
	e.waitSettled(t, "erp", 1)
	if got := p.received()[0].header.Get("Traceparent"); got != "" {
		t.Errorf("traceparent %q sent with tracing off", got)
	}
	if _, as := attempts(t, e.js, "erp"); len(as) != 1 || as[0].TraceId != "" {
		t.Errorf("attempt records %v", as)
	}
}

func spanAttrs(s tracetest.SpanStub) map[string]string {
	out := map[string]string{}
	for _, kv := range s.Attributes {
		out[string(kv.Key)] = kv.Value.Emit()
	}
	return out
}

// A dead letter carries the trace of its last attempt, and the event's
// trace context in its headers.
func TestDeadLetterCarriesTheTrace(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := newPartner(t, reply{status: http.StatusBadRequest})
	tr := telemetry.NewWithExporter(tracetest.NewInMemoryExporter(), config.Defaults().Telemetry.Traces, "dispatcher", nil, nil)
	t.Cleanup(func() { _ = tr.Shutdown(context.Background()) })
	e.run(t, e.js, func(c *Config) { c.Tracing = tr }, destinationFor("erp", p.URL, 5))
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	ev := orderEvent("ev-dead")
	ev.Header = nats.Header{telemetry.HeaderTraceparent: {"00-" + traceID + "-00f067aa0ba902b7-01"}}
	e.publish(t, ev)
	e.waitSettled(t, "erp", 1)
	_, dls := deadLetters(t, e.js, "erp")
	if len(dls) != 1 {
		t.Fatalf("%d dead letters", len(dls))
	}
	if dls[0].TraceId != traceID || !strings.Contains(dls[0].Headers[telemetry.HeaderTraceparent], traceID) {
		t.Errorf("dead letter trace_id %q, headers %v; want trace %s", dls[0].TraceId, dls[0].Headers, traceID)
	}
}

// syncBuffer is a log output safe for the dispatcher's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) lines() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Split(strings.TrimSpace(b.buf.String()), "\n")
}

// With JSON logs, every line about an event carries event_id,
// destination, source, attempt and trace_id, so that jq
// 'select(.event_id=="…")' over every service's log tells its story.
func TestEventLogLinesCarryTheEventsAttributes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := newPartner(t, reply{status: http.StatusServiceUnavailable}, reply{status: http.StatusOK})
	tr := telemetry.NewWithExporter(tracetest.NewInMemoryExporter(), config.Defaults().Telemetry.Traces, "dispatcher", nil, nil)
	t.Cleanup(func() { _ = tr.Shutdown(context.Background()) })
	var out syncBuffer
	log := slog.New(slog.NewJSONHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e.run(t, e.js, func(c *Config) { c.Tracing, c.Logger = tr, log }, destinationFor("erp", p.URL, 5))
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	ev := orderEvent("ev-logged")
	ev.Header = nats.Header{
		telemetry.HeaderTraceparent: {"00-" + traceID + "-00f067aa0ba902b7-01"},
		events.HeaderSource:         {"shop"},
	}
	e.publish(t, ev)
	e.waitSettled(t, "erp", 2)
	var about []map[string]any
	for _, l := range out.lines() {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not a JSON line: %q", l)
		}
		if m["event_id"] == "ev-logged" {
			about = append(about, m)
		}
	}
	if len(about) < 2 {
		t.Fatalf("%d log lines about the event, want at least the retry and the delivery:\n%s", len(about), strings.Join(out.lines(), "\n"))
	}
	for _, m := range about {
		if m["destination"] != "erp" || m["source"] != "shop" || m["trace_id"] != traceID || m["attempt"] == nil {
			t.Errorf("log line %v lacks destination, source, attempt or trace_id", m)
		}
	}
}
