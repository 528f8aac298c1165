package tests

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/telemetry"
	"github.com/switchyard/switchyard/pkg/testing/otlptest"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
	"github.com/switchyard/switchyard/services/auditor/auditapi"
)

// A webhook that fails twice at its partner and is then delivered is one
// trace in the collector, across the services: ingress's request span, its
// store span under it, and under that one dispatcher span per attempt
// (destination, attempt number, status, outcome), each the parent of the
// partner's request (traceparent). The audit log's attempts carry the
// trace id.
//
// The services run in this test process, each with its own NATS
// connection and its own tracer provider exporting over OTLP/HTTP to an
// httptest receiver that decodes the protobuf, as separate processes
// would; the trace context crosses between them only in the event's NATS
// headers.
func TestOneTraceAcrossServices(t *testing.T) {
	rcv := otlptest.New(t)
	erp := newPartner(t, func(attempt int) int {
		if attempt <= 2 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	cfg := config.Config{
		Sources:      []config.Source{{Name: "shop", Scheme: "standard-webhooks", Secrets: []config.Secret{vectorSecret}}},
		Destinations: []config.Destination{destination("erp", erp.URL, []string{"webhooks.shop.>"}, 5)},
	}
	cfg.Telemetry.Traces.Endpoint = rcv.URL()
	sys := startSystem(t, options{Config: cfg, Now: func() time.Time { return time.Unix(vectorTimestamp, 0) }})

	req, _ := http.NewRequest(http.MethodPost, sys.Ingress.URL+"/webhooks/shop", strings.NewReader(vectorBody))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("webhook-id", vectorID)
	req.Header.Set("webhook-timestamp", "1614265330")
	req.Header.Set("webhook-signature", vectorSignature)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("webhook answered %d %s", resp.StatusCode, b)
	}
	id := "shop:" + vectorID

	api := &auditapi.Client{BaseURL: sys.AuditAPI.URL, RequestedBy: "tracing-test"}
	ev := waitfor.Value(t, "three attempts of the event in the audit log, the last delivered", func() (auditapi.EventDetail, bool) {
		ev, err := api.GetEvent(context.Background(), id)
		return ev, err == nil && len(ev.Attempts) == 3 && ev.Attempts[2].Outcome == "delivered"
	})
	traceID := ev.Attempts[0].TraceID
	if len(traceID) != 32 {
		t.Fatalf("attempt record trace_id = %q", traceID)
	}
	for i, a := range ev.Attempts {
		if a.TraceID != traceID {
			t.Errorf("attempt %d trace_id = %q, want the event's trace %s", i+1, a.TraceID, traceID)
		}
	}

	// Two ingress spans and three attempts, exported within a second or
	// so of ending.
	spans := waitfor.Value(t, "the trace's five spans at the collector", func() ([]otlptest.Span, bool) {
		s := rcv.Trace(traceID)
		return s, len(s) >= 5
	})
	if len(spans) != 5 {
		t.Fatalf("%d spans in the trace, want 5: %+v", len(spans), spans)
	}
	var server, store otlptest.Span
	var attempts []otlptest.Span
	for _, s := range spans {
		switch {
		case s.Kind == tracepb.Span_SPAN_KIND_SERVER:
			server = s
		case s.Kind == tracepb.Span_SPAN_KIND_PRODUCER:
			store = s
		case s.Name == "deliver erp":
			attempts = append(attempts, s)
		}
	}
	if server.Service != "switchyard-ingress" || server.ParentSpanID != "" || server.Attributes["switchyard.source"] != "shop" {
		t.Errorf("request span = %+v, want ingress's root span", server)
	}
	if store.Service != "switchyard-ingress" || store.ParentSpanID != server.SpanID || store.Attributes["switchyard.event_id"] != id {
		t.Errorf("store span = %+v, want ingress's span under the request", store)
	}
	if len(attempts) != 3 {
		t.Fatalf("%d attempt spans, want 3: %+v", len(attempts), spans)
	}
	byAttempt := map[string]otlptest.Span{}
	for _, a := range attempts {
		byAttempt[a.Attributes["switchyard.attempt"]] = a
	}
	got := erp.got(id)
	if len(got) != 3 {
		t.Fatalf("partner got %d requests", len(got))
	}
	for i, want := range []struct{ status, outcome string }{{"503", "retryable"}, {"503", "retryable"}, {"200", "delivered"}} {
		a, ok := byAttempt[string(rune('1'+i))]
		if !ok {
			t.Fatalf("no span for attempt %d: %+v", i+1, attempts)
		}
		if a.Service != "switchyard-dispatcher" || a.ParentSpanID != store.SpanID || a.Attributes["switchyard.destination"] != "erp" ||
			a.Attributes["http.response.status_code"] != want.status || a.Attributes["switchyard.outcome"] != want.outcome {
			t.Errorf("attempt %d span = %+v, want the dispatcher's span under the store span, %s %s", i+1, a, want.status, want.outcome)
		}
		sc := telemetry.Remote(natsHeader(got[i].header))
		if sc.TraceID().String() != traceID || sc.SpanID().String() != a.SpanID {
			t.Errorf("request %d traceparent %q, want attempt %d's span %s", i+1, got[i].header.Get("Traceparent"), i+1, a.SpanID)
		}
	}
}

// natsHeader reads an HTTP header as the NATS header type Remote takes
// (both are map[string][]string in canonical form here).
func natsHeader(h http.Header) map[string][]string { return h }

// A replay of a dead letter is a new trace, started by the auditor and
// linked to the trace of the original delivery; its attempt is a span of
// the new trace.
func TestReplayLinksToTheOriginalTrace(t *testing.T) {
	rcv := otlptest.New(t)
	crm := newPartner(t, func(attempt int) int {
		if attempt <= 2 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	cfg := config.Config{
		Sources:      []config.Source{{Name: "shop", Scheme: "standard-webhooks", Secrets: []config.Secret{vectorSecret}}},
		Destinations: []config.Destination{destination("crm", crm.URL, []string{"webhooks.shop.>"}, 2)},
	}
	cfg.Telemetry.Traces.Endpoint = rcv.URL()
	sys := startSystem(t, options{Config: cfg, Now: func() time.Time { return time.Unix(vectorTimestamp, 0) }})
	req, _ := http.NewRequest(http.MethodPost, sys.Ingress.URL+"/webhooks/shop", strings.NewReader(vectorBody))
	req.Header.Set("webhook-id", vectorID)
	req.Header.Set("webhook-timestamp", "1614265330")
	req.Header.Set("webhook-signature", vectorSignature)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("webhook answered %d", resp.StatusCode)
	}
	id := "shop:" + vectorID
	ctx := context.Background()
	api := &auditapi.Client{BaseURL: sys.AuditAPI.URL, RequestedBy: "tracing-test"}
	ev := waitfor.Value(t, "the dead letter in the audit log", func() (auditapi.EventDetail, bool) {
		ev, err := api.GetEvent(ctx, id)
		return ev, err == nil && len(ev.DeadLetters) == 1 && len(ev.Attempts) == 2
	})
	original := ev.Attempts[0].TraceID
	if len(original) != 32 {
		t.Fatalf("original trace id %q", original)
	}
	dlID := ev.DeadLetters[0].ID
	if _, err := api.Replay(ctx, dlID, "tracing-test"); err != nil {
		t.Fatal(err)
	}
	ev = waitfor.Value(t, "the replay delivered", func() (auditapi.EventDetail, bool) {
		ev, err := api.GetEvent(ctx, id)
		return ev, err == nil && len(ev.Attempts) == 3
	})
	var replayed auditapi.Attempt
	for _, a := range ev.Attempts {
		if a.ReplayOf == dlID {
			replayed = a
		}
	}
	if replayed.Outcome != "delivered" || len(replayed.TraceID) != 32 || replayed.TraceID == original {
		t.Fatalf("replayed attempt %+v: want delivered in a trace of its own (the original is %s)", replayed, original)
	}
	spans := waitfor.Value(t, "the replay's two spans at the collector", func() ([]otlptest.Span, bool) {
		s := rcv.Trace(replayed.TraceID)
		return s, len(s) >= 2
	})
	var replay, attempt otlptest.Span
	for _, s := range spans {
		switch s.Name {
		case "replay crm":
			replay = s
		case "deliver crm":
			attempt = s
		}
	}
	if replay.Service != "switchyard-auditor" || replay.ParentSpanID != "" || len(replay.Links) != 1 || replay.Links[0] != original ||
		replay.Attributes["switchyard.dead_letter_id"] != dlID {
		t.Errorf("replay span = %+v, want the auditor's root span linked to trace %s", replay, original)
	}
	if attempt.Service != "switchyard-dispatcher" || attempt.ParentSpanID != replay.SpanID || attempt.Attributes["switchyard.replay_of"] != dlID {
		t.Errorf("replayed attempt span = %+v, want the dispatcher's span under the replay", attempt)
	}
}
