package engine

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/testing/slacktest"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
)

func backlogReport(dest string, st switchyardv1.CircuitState) *switchyardv1.AuditRecord {
	return &switchyardv1.AuditRecord{Detail: &switchyardv1.AuditRecord_Backlog{Backlog: &switchyardv1.BacklogReport{
		Destination: dest, NumPending: 3, NumAckPending: 12, MaxAckPending: 1000, OldestPendingAge: durationpb.New(time.Minute),
		Paused: st != switchyardv1.CircuitState_CIRCUIT_STATE_CLOSED, Circuit: st,
	}}}
}

// The breaker state in the dispatcher's backlog reports mends a lost
// CircuitChanged record: a lost "closed" no longer leaves PartnerDown (and
// its inhibition of the destination's other alerts) firing for ever, and a
// lost "open" no longer keeps it from firing.
func TestBacklogReportsReconcilePartnerDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.start()
	open, closed := switchyardv1.CircuitState_CIRCUIT_STATE_OPEN, switchyardv1.CircuitState_CIRCUIT_STATE_CLOSED

	e.emit(circuit("erp", open))
	e.advance(30 * time.Second)
	e.wantTitles("[FIRING][critical] erp is down: its circuit breaker is open")
	// The breaker closes; its CircuitChanged record is lost, the reports
	// say closed. Meanwhile crm's breaker opens, and only its reports say
	// so.
	for range 6 {
		e.emit(backlogReport("erp", closed), backlogReport("crm", open))
		e.advance(30 * time.Second)
	}
	got := strings.Join(e.titles(), "\n")
	if n := len(e.titles()); n != 3 || !strings.Contains(got, "[RESOLVED][critical] PartnerDown on erp") ||
		!strings.Contains(got, "[FIRING][critical] crm is down: its circuit breaker is open") {
		t.Fatalf("Slack got:\n%s\nwant erp resolved and crm down", got)
	}
	var page slacktest.Message
	for _, m := range e.slack.Accepted() {
		if strings.Contains(m.Text, "crm is down") {
			page = m
		}
	}
	if fields := strings.Join(page.Fields, "\n"); !strings.Contains(fields, "the state comes from the dispatcher's backlog reports") {
		t.Errorf("crm's page does not say where its state came from:\n%s", fields)
	}
}

// Rejections for a malformed signature, token-endpoint refusals (status 0,
// flagged by the dispatcher) and events the auditor has not recorded each
// fire their rule.
func TestInputsTheRulesUsedToMiss(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.start()
	var recs []*switchyardv1.AuditRecord
	for range 10 {
		recs = append(recs, &switchyardv1.AuditRecord{Detail: &switchyardv1.AuditRecord_WebhookRejected{WebhookRejected: &switchyardv1.WebhookRejected{
			Source: "shop", Reason: switchyardv1.RejectReason_REJECT_REASON_MALFORMED, StatusCode: 401,
			Detail: "malformed signature header: each signature is <version>,<base64>",
		}}})
		// Unreadable bodies (400) are not about the signature.
		recs = append(recs, &switchyardv1.AuditRecord{Detail: &switchyardv1.AuditRecord_WebhookRejected{WebhookRejected: &switchyardv1.WebhookRejected{
			Source: "billing", Reason: switchyardv1.RejectReason_REJECT_REASON_MALFORMED, StatusCode: 400, Detail: "the request body could not be read completely",
		}}})
	}
	for i := range 3 {
		recs = append(recs, &switchyardv1.AuditRecord{Detail: &switchyardv1.AuditRecord_DeliveryAttempt{DeliveryAttempt: &switchyardv1.DeliveryAttempt{
			EventId: "ev-token", Destination: "crm", Attempt: int32(i + 1), Outcome: switchyardv1.Outcome_OUTCOME_RETRYABLE, AuthFailure: true,
			Error: "oauth2 token endpoint answered 401 invalid_client", StartedAt: timestamppb.New(e.clock.Now()), Duration: durationpb.New(5 * time.Millisecond),
		}}})
	}
	e.emit(recs...)
	e.auditorReports(&switchyardv1.AuditLag{PendingRecords: 20, PendingEvents: 250000, OldestAge: durationpb.New(time.Minute)})
	e.advance(30 * time.Second)
	e.wantAll(
		"[FIRING][warning] 10 webhooks from shop refused for their signature",
		"[FIRING][critical] crm refuses Switchyard's credentials",
		"[FIRING][warning] The audit log is behind by 1m0s",
	)
}

// drainAuditor acknowledges every record waiting for the auditor's
// consumer, as a running auditor would.
func (e *env) drainAuditor() {
	e.t.Helper()
	ctx := context.Background()
	cons, err := e.js.Consumer(ctx, natsx.StreamAudit, natsx.ConsumerAuditor)
	if err != nil {
		e.t.Fatal(err)
	}
	for {
		batch, err := cons.FetchNoWait(100)
		if err != nil {
			e.t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			if err := m.DoubleAck(ctx); err != nil {
				e.t.Fatal(err)
			}
			n++
		}
		if n == 0 {
			return
		}
	}
}

// With no auditor running, nobody reports the audit log's lag: the
// notifier reads the auditor's consumer itself, and pages.
func TestAuditLagWithoutAnAuditor(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.auditorCheck = 10 * time.Second
	r := e.start()
	e.emit(e.attempts("erp", 5, 0, 20*time.Millisecond)...)
	for range 5 {
		e.advance(time.Minute)
	}
	e.wantTitles() // 5 minutes old only now: the group wait
	e.advance(time.Minute)
	e.wantTitles("[FIRING][warning] The audit log is behind by 6m0s")
	if !strings.Contains(e.titles()[0], "the auditor is not reading AUDIT (is it running?)") {
		t.Errorf("title %q does not say the auditor is not reading", e.titles()[0])
	}
	fields := strings.Join(e.slack.Accepted()[0].Fields, "\n")
	if !strings.Contains(fields, "*Auditor's consumer on AUDIT*\n5 records not yet acknowledged, the oldest 6m0s old") {
		t.Errorf("fields:\n%s", fields)
	}
	// The same reading, exported for the Prometheus AuditLag rule.
	wantAuditorConsumer(t, r, 5, 6*time.Minute)

	// The auditor is back and catches up: resolved after 2 minutes.
	e.drainAuditor()
	for range 3 {
		e.advance(time.Minute)
	}
	e.wantTitles("[FIRING]", "[RESOLVED][warning] AuditLag resolved")
	wantAuditorConsumer(t, r, 0, 0)
}

// wantAuditorConsumer checks the replica's gauges of the auditor's
// consumer on AUDIT.
func wantAuditorConsumer(t *testing.T, r *replica, pending float64, age time.Duration) {
	t.Helper()
	if got := testutil.ToFloat64(r.eng.m.auditorPending); got != pending {
		t.Errorf("switchyard_notifier_auditor_consumer_pending = %v, want %v", got, pending)
	}
	if got := testutil.ToFloat64(r.eng.m.auditorOldestAge); got != age.Seconds() {
		t.Errorf("switchyard_notifier_auditor_consumer_oldest_age_seconds = %v, want %v", got, age.Seconds())
	}
}
