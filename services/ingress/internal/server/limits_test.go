package server

import (
	"errors"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/events"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/signing"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
	"github.com/switchyard/switchyard/pkg/topology"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
)

func TestRateLimit(t *testing.T) {
	t.Parallel()
	// One request now, the next in a thousand seconds.
	e := newEnv(t, func(c *Config) { c.Sources[0].RateLimit = config.SourceRateLimit{PerSecond: 0.001, Burst: 1} })
	if a := e.post(t, vector()); a.code != http.StatusAccepted {
		t.Fatalf("first request: %d %s", a.code, a.raw)
	}
	a := e.post(t, signed(t, "msg_second", `{"type":"x"}`))
	if a.code != http.StatusTooManyRequests || a.reply.Error != "rate_limited" {
		t.Fatalf("second request: %d %s, want 429 rate_limited", a.code, a.raw)
	}
	ra, err := strconv.Atoi(a.header.Get("Retry-After"))
	if err != nil || ra < 900 || ra > 1000 {
		t.Errorf("Retry-After = %q, want the ~1000 s until the next token", a.header.Get("Retry-After"))
	}
	recs, _ := waitAudit(t, e.js, "audit.rejected."+sourceName, 1)
	if r := recs[0].GetWebhookRejected(); r.Reason != switchyardv1.RejectReason_REJECT_REASON_RATE_LIMITED || r.StatusCode != http.StatusTooManyRequests {
		t.Errorf("rejection record = %v", r)
	}
	if n := eventCount(t, e.js); n != 1 {
		t.Errorf("EVENTS holds %d events, want 1", n)
	}
	// Another source is not limited by this one.
	e2 := newEnvOn(t, e.nats, e.js, func(c *Config) { c.Sources[0].Name = "other" })
	w := signed(t, "msg_other", `{}`)
	w.source = "other"
	if a := e2.post(t, w); a.code != http.StatusAccepted {
		t.Errorf("another source: %d", a.code)
	}
}

// TestAuditPublishesAreBounded: while NATS is down, every refused request
// still emits an audit record; they must not pile up. At most
// MaxAuditInFlight wait for their PubAck, the rest are dropped and counted,
// no goroutine is started per record, and no request waits.
func TestAuditPublishesAreBounded(t *testing.T) {
	// Not parallel: it counts goroutines.
	reg := prometheus.NewRegistry()
	e := newEnv(t, func(c *Config) {
		c.MaxAuditInFlight = 4
		c.AsyncTimeout = time.Second
		c.Registerer = reg
		// Every refusal goes to the tracker: this is the bound behind the
		// rejection audit limit.
		c.RejectionAudit = config.RejectionAudit{PerSecond: 1e6, Burst: 1e6, SummaryInterval: config.Duration(time.Hour)}
		// More requests than the default rate limit's burst.
		c.Sources[0].RateLimit = config.SourceRateLimit{Unlimited: true}
	})
	e.nats.NS.Shutdown()
	e.nats.NS.WaitForShutdown()
	before := runtime.NumGoroutine()
	const n = 500
	forged := vector()
	forged.signature = "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	for range n {
		if a := e.post(t, forged); a.code != http.StatusUnauthorized {
			t.Fatalf("status = %d, want 401", a.code)
		}
		if got := e.srv.auditing.InFlight(); got > 4 {
			t.Fatalf("%d audit records in flight, more than the bound of 4", got)
		}
	}
	if grown := runtime.NumGoroutine() - before; grown > 50 {
		t.Errorf("%d more goroutines after %d refused requests during an outage", grown, n)
	}
	dropped := e.srv.auditing.Dropped()
	if dropped == 0 || dropped+e.srv.auditing.Failed()+int64(e.srv.auditing.InFlight()) < n-4 {
		t.Errorf("dropped %d, failed %d, in flight %d of %d records", dropped, e.srv.auditing.Failed(), e.srv.auditing.InFlight(), n)
	}
	var m dto.Metric
	if err := e.srv.metrics.auditErrors.WithLabelValues("dropped").Write(&m); err != nil {
		t.Fatal(err)
	}
	if got := m.GetCounter().GetValue(); got != float64(dropped) {
		t.Errorf("switchyard_ingress_audit_errors_total{reason=dropped} = %v, want %d", got, dropped)
	}
}

// TestRejectionAuditIsBounded: a flood of forged requests, of requests to
// unknown sources and of unauthenticated publishes is answered in full, but
// audited one by one only up to the burst of each source's rejection
// audit limit; the rest are counted in a metric and in summary records
// that say how many there were. Before, every one was an audit record (and
// a database row).
func TestRejectionAuditIsBounded(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	const burst, n = 3, 20
	e := newEnv(t, withAPIKey("orders", testAPIKey), func(c *Config) {
		c.Registerer = reg
		// A burst of 3 and no refill within the test.
		c.RejectionAudit = config.RejectionAudit{PerSecond: 0.0001, Burst: burst, SummaryInterval: config.Duration(100 * time.Millisecond)}
	})
	base := e.serve(t)
	forged := http.Header{
		"Content-Type":                 {"application/json"},
		signing.HeaderWebhookID:        {vecID},
		signing.HeaderWebhookTimestamp: {strconv.Itoa(vecTimestamp)},
		signing.HeaderWebhookSignature: {"v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="},
	}
	for i := range n {
		if a := send(t, http.MethodPost, base+"/webhooks/"+sourceName, forged, []byte(vecBody)); a.code != http.StatusUnauthorized {
			t.Fatalf("forged request %d: %d, want 401 every time", i, a.code)
		}
		if a := send(t, http.MethodPost, base+"/webhooks/nope-"+strconv.Itoa(i), forged, []byte(vecBody)); a.code != http.StatusNotFound {
			t.Fatalf("unknown source %d: %d, want 404 every time", i, a.code)
		}
		if a := send(t, http.MethodPost, base+"/v1/events", http.Header{"Authorization": {"Bearer sy_live_guess_0000000000"}}, []byte(`{}`)); a.code != http.StatusUnauthorized {
			t.Fatalf("unauthenticated publish %d: %d, want 401 every time", i, a.code)
		}
	}
	// The records of each: burst individual ones, and summaries (one per
	// interval that saw refusals) that account for the rest.
	for _, tt := range []struct {
		summary string // the summaries' source
		reason  switchyardv1.RejectReason
	}{
		{sourceName, switchyardv1.RejectReason_REJECT_REASON_BAD_SIGNATURE},
		{unknownSource, switchyardv1.RejectReason_REJECT_REASON_UNKNOWN_SOURCE},
		{apiSource, switchyardv1.RejectReason_REJECT_REASON_UNAUTHORIZED},
	} {
		var individual, summarized int64
		var summaries []*switchyardv1.WebhookRejected
		waitfor.True(t, "rejection records and summaries of "+tt.summary, func() bool {
			individual, summarized, summaries = 0, 0, nil
			for _, r := range natstest.AuditRecords(t, e.js, "audit.rejected.>") {
				rj := r.GetWebhookRejected()
				switch {
				case rj.Reason != tt.reason:
				case rj.Summarized > 0:
					summarized += rj.Summarized
					summaries = append(summaries, rj)
				default:
					individual++
				}
			}
			return individual+summarized >= n
		})
		if individual != burst || summarized != n-burst {
			t.Errorf("%s: %d records one by one and %d in summaries, want %d and %d", tt.summary, individual, summarized, burst, n-burst)
		}
		for _, s := range summaries {
			if s.Source != tt.summary || s.StatusCode == 0 || s.RemoteAddr != "127.0.0.1" || !strings.Contains(s.Detail, "not recorded one by one") {
				t.Errorf("summary %v", s)
			}
		}
		if got := testutil.ToFloat64(e.srv.metrics.unaudited.WithLabelValues(tt.summary)); got != n-burst {
			t.Errorf("switchyard_ingress_rejections_unaudited_total{source=%q} = %v, want %d", tt.summary, got, n-burst)
		}
	}
}

// TestRejectionSummaryAtClose: refusals over the limit since the last
// summary are summarised when the server closes, not lost.
func TestRejectionSummaryAtClose(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) {
		c.RejectionAudit = config.RejectionAudit{PerSecond: 0.0001, Burst: 1, SummaryInterval: config.Duration(time.Hour)}
	})
	forged := vector()
	forged.signature = "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	for range 5 {
		if a := e.post(t, forged); a.code != http.StatusUnauthorized {
			t.Fatalf("status %d, want 401", a.code)
		}
	}
	if err := e.srv.Close(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	recs, _ := waitAudit(t, e.js, "audit.rejected."+sourceName, 2)
	if s := recs[1].GetWebhookRejected(); s.Summarized != 4 || s.Reason != switchyardv1.RejectReason_REJECT_REASON_BAD_SIGNATURE || s.EventId != "" {
		t.Errorf("summary = %v, want 4 bad signatures", s)
	}
}

// TestBodyLimitsWithinMaxPayload: against a NATS server whose max_payload
// leaves no room for a body at the limit plus its envelope, ingress refuses
// to start and says which field to lower and to what. Before, it started,
// and every body near the limit was answered 503 forever.
func TestBodyLimitsWithinMaxPayload(t *testing.T) {
	t.Parallel()
	const maxPayload = 64 << 10
	ns := natstest.StartWithServer(t, topology.Topology{}, natsx.EmbeddedConfig{MaxPayload: maxPayload})
	_, js := ns.Connect(t)
	fits := config.ByteSize(maxPayload - events.EnvelopeAllowance)
	build := func(apiMax int64, sourceMax config.ByteSize) error {
		cfg := Config{
			Logger:  natstest.Logger(t),
			MaxBody: apiMax,
			Sources: []config.Source{{Name: "shop", Scheme: "standard-webhooks", Secrets: []config.Secret{vecSecret}, MaxBody: sourceMax}},
		}
		srv, err := New(js, auditlog.NewEmitter(js, "ingress"), cfg)
		if err == nil {
			_ = srv.Close(testCtx(t))
		}
		return err
	}
	for _, tt := range []struct {
		name      string
		apiMax    int64
		sourceMax config.ByteSize
		want      *PayloadLimitError // nil: starts
	}{
		{"both fit", int64(fits), fits, nil},
		{"ingress.max_body too large", maxPayload, maxPayload,
			&PayloadLimitError{Field: "ingress.max_body", Limit: 65536, MaxPayload: 65536, AtMost: 57344}},
		{"a source's too large", 1024, fits + 1,
			&PayloadLimitError{Field: "sources[0].max_body", Source: "shop", Limit: 57345, MaxPayload: 65536, AtMost: 57344}},
	} {
		err := build(tt.apiMax, tt.sourceMax)
		var got *PayloadLimitError
		switch {
		case tt.want == nil && err != nil:
			t.Errorf("%s: New: %v", tt.name, err)
		case tt.want != nil && !errors.As(err, &got):
			t.Errorf("%s: New = %v, want a %T", tt.name, err, tt.want)
		case tt.want != nil && *got != *tt.want:
			t.Errorf("%s: %+v, want %+v", tt.name, *got, *tt.want)
		}
	}

	// At the limit that fits, the largest envelope a scheme makes (Shopify
	// keeps six provider headers, each up to 512 bytes) is stored.
	var shop schemeCase
	for _, c := range schemeCases(t) {
		if c.source.Scheme == "shopify" {
			shop = c
		}
	}
	shop.source.MaxBody = fits
	e := newEnvOn(t, ns, js, withNow(schemeNow), func(c *Config) {
		c.Sources = []config.Source{shop.source}
		c.MaxBody = int64(fits)
	})
	body := []byte(`{"pad":"` + strings.Repeat("x", int(fits)-len(`{"pad":""}`)) + `"}`)
	h := shop.sign(true, strings.Repeat("i", 200), schemeNow, body)
	long := strings.Repeat("v", maxHeaderValue)
	for _, k := range []string{signing.HeaderShopifyTopic, signing.HeaderShopifyEventID, "X-Shopify-Shop-Domain", "X-Shopify-Api-Version", "X-Shopify-Triggered-At"} {
		h.Set(k, long)
	}
	h.Set("Content-Type", "application/json; "+long)
	a := send(t, http.MethodPost, e.serve(t)+"/webhooks/"+shop.source.Name, h, body)
	if a.code != http.StatusAccepted {
		t.Fatalf("body of %d bytes (the limit) with the largest envelope: %d %s, want 202", len(body), a.code, a.raw)
	}
}
