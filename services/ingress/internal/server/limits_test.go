package server

import (
	"net/http"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/switchyard/switchyard/pkg/config"
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
