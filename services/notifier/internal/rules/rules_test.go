package rules

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/switchyard/switchyard/pkg/config"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/notifier/internal/series"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func cfg() Config {
	return NewConfig(config.Alerts{}, []config.Destination{{Name: "erp", Timeout: config.Duration(2 * time.Second)}})
}

// build folds records into a series of erp as of now.
func build(now time.Time, recs ...*switchyardv1.AuditRecord) *switchyardv1.Series {
	d := series.New(series.KindDestination, "erp")
	for _, r := range recs {
		series.Apply(d, r, now)
	}
	return series.Merge(nil, d, now, cfg().Limits(series.KindDestination, "erp"))
}

// attempts makes n attempts of erp spread over the minute before at.
func attempts(at time.Time, n int, status int32, outcome switchyardv1.Outcome, d time.Duration) []*switchyardv1.AuditRecord {
	var out []*switchyardv1.AuditRecord
	for i := range n {
		start := at.Add(-time.Duration(i) * time.Minute / time.Duration(n))
		out = append(out, &switchyardv1.AuditRecord{Time: timestamppb.New(start), Detail: &switchyardv1.AuditRecord_DeliveryAttempt{DeliveryAttempt: &switchyardv1.DeliveryAttempt{
			Destination: "erp", StartedAt: timestamppb.New(start), StatusCode: status, Outcome: outcome, Duration: durationpb.New(d),
			Error: "HTTP " + strconv.Itoa(int(status)), EventId: "ev-1",
		}}})
	}
	return out
}

func find(t *testing.T, cs []Condition, rule string) Condition {
	t.Helper()
	for _, c := range cs {
		if c.Rule == rule {
			return c
		}
	}
	t.Fatalf("no %s condition in %v", rule, cs)
	return Condition{}
}

func noPrior(string, map[string]string) *switchyardv1.Alert { return nil }

func TestErrorRate(t *testing.T) {
	t.Parallel()
	ok, fail := switchyardv1.Outcome_OUTCOME_DELIVERED, switchyardv1.Outcome_OUTCOME_RETRYABLE
	tests := []struct {
		name                 string
		good, bad            int
		firing, clear        bool
		severity             string
		permanentInsteadOfOK bool
	}{
		{name: "25% of 20 is a warning", good: 15, bad: 5, firing: true, severity: Warning},
		{name: "50% is critical", good: 10, bad: 10, firing: true, severity: Critical},
		{name: "19 attempts are too few", good: 9, bad: 10, clear: true},
		{name: "20% is in the band", good: 16, bad: 4},
		{name: "10% is clear", good: 18, bad: 2, clear: true},
		// A 400 means the partner is up: only retryable failures count.
		{name: "permanent failures do not count", good: 20, bad: 0, clear: true, permanentInsteadOfOK: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			okStatus, okOutcome := int32(200), ok
			if tt.permanentInsteadOfOK {
				okStatus, okOutcome = 400, switchyardv1.Outcome_OUTCOME_PERMANENT
			}
			recs := append(attempts(t0, tt.good, okStatus, okOutcome, 50*time.Millisecond), attempts(t0, tt.bad, 503, fail, 50*time.Millisecond)...)
			c := find(t, Evaluate(cfg(), build(t0, recs...), noPrior, t0), PartnerErrorRateHigh)
			if c.Firing != tt.firing || c.Clear != tt.clear || (tt.firing && c.Severity != tt.severity) {
				t.Errorf("condition = firing %v clear %v severity %s; want %v %v %s (%s)", c.Firing, c.Clear, c.Severity, tt.firing, tt.clear, tt.severity, c.Summary)
			}
			if c.Labels["destination"] != "erp" || c.ResolveAfter != 10*time.Minute {
				t.Errorf("labels %v resolve after %v", c.Labels, c.ResolveAfter)
			}
		})
	}
	// Attempts older than the window do not count.
	s := build(t0, attempts(t0, 20, 503, fail, time.Millisecond)...)
	if c := find(t, Evaluate(cfg(), s, noPrior, t0.Add(6*time.Minute+10*time.Second)), PartnerErrorRateHigh); c.Firing || !c.Clear {
		t.Errorf("6 minutes later: %+v", c)
	}
}

func TestLatency(t *testing.T) {
	t.Parallel()
	ok := switchyardv1.Outcome_OUTCOME_DELIVERED
	var history []*switchyardv1.AuditRecord
	for m := 60; m >= 6; m-- {
		history = append(history, attempts(t0.Add(-time.Duration(m)*time.Minute), 5, 200, ok, 300*time.Millisecond)...)
	}
	tests := []struct {
		name          string
		current       time.Duration
		n             int
		firing, clear bool
	}{
		// Baseline about 300ms: fires above max(2 x 300ms, 1s) = 1s.
		{name: "fast", current: 250 * time.Millisecond, n: 30, clear: true},
		{name: "twice the baseline but under the floor", current: 800 * time.Millisecond, n: 30},
		{name: "above the floor", current: 1400 * time.Millisecond, n: 30, firing: true},
		// 80% of the 2s timeout is 1.6s.
		{name: "too few", current: 1900 * time.Millisecond, n: 10, clear: true},
	}
	for _, tt := range tests {
		s := build(t0, append(history, attempts(t0, tt.n, 200, ok, tt.current)...)...)
		c := find(t, Evaluate(cfg(), s, noPrior, t0), PartnerLatencyHigh)
		if c.Firing != tt.firing || c.Clear != tt.clear {
			t.Errorf("%s: firing %v clear %v, want %v %v (%s; %v)", tt.name, c.Firing, c.Clear, tt.firing, tt.clear, c.Summary, c.Fields)
		}
		if c.Baseline < 300*time.Millisecond || c.Baseline > 360*time.Millisecond {
			t.Errorf("%s: baseline %v, want about 300ms", tt.name, c.Baseline)
		}
	}

	// With a 20s baseline (a slow partner), the timeout clause fires first.
	slow := NewConfig(config.Alerts{}, []config.Destination{{Name: "erp", Timeout: config.Duration(time.Second)}})
	s := build(t0, attempts(t0, 30, 200, ok, 900*time.Millisecond)...)
	if c := find(t, Evaluate(slow, s, noPrior, t0), PartnerLatencyHigh); !c.Firing {
		t.Errorf("p95 900ms with a 1s timeout: %+v", c)
	}

	// While it fires, the baseline it fired with holds: the slow window
	// does not raise its own bar.
	firing := func(string, map[string]string) *switchyardv1.Alert {
		return &switchyardv1.Alert{State: switchyardv1.AlertState_ALERT_STATE_FIRING, BaselineSeconds: 0.1}
	}
	s = build(t0, attempts(t0, 30, 200, ok, 200*time.Millisecond)...)
	c := find(t, Evaluate(cfg(), s, firing, t0), PartnerLatencyHigh)
	// Clear under max(1.5 x 100ms, 1s x 1.5/2) = 750ms.
	if !c.Clear || c.Baseline != 100*time.Millisecond {
		t.Errorf("200ms with a frozen 100ms baseline: clear %v baseline %v", c.Clear, c.Baseline)
	}
}

func TestPartnerDownAndCredentials(t *testing.T) {
	t.Parallel()
	circuit := func(at time.Time, to switchyardv1.CircuitState) *switchyardv1.AuditRecord {
		return &switchyardv1.AuditRecord{Time: timestamppb.New(at), Detail: &switchyardv1.AuditRecord_CircuitChanged{CircuitChanged: &switchyardv1.CircuitChanged{
			Destination: "erp", To: to, Reason: "5 consecutive failures", LastError: "connection refused"}}}
	}
	s := build(t0, circuit(t0.Add(-time.Minute), switchyardv1.CircuitState_CIRCUIT_STATE_OPEN))
	c := find(t, Evaluate(cfg(), s, noPrior, t0), PartnerDown)
	if !c.Firing || c.Clear || c.Severity != Critical || !c.FirstSeen.Equal(t0.Add(-time.Minute)) {
		t.Errorf("open breaker: %+v", c)
	}
	s = build(t0, circuit(t0.Add(-time.Minute), switchyardv1.CircuitState_CIRCUIT_STATE_OPEN), circuit(t0.Add(-30*time.Second), switchyardv1.CircuitState_CIRCUIT_STATE_CLOSED))
	c = find(t, Evaluate(cfg(), s, noPrior, t0), PartnerDown)
	if c.Firing || !c.Clear || !c.ClearSince.Equal(t0.Add(-30*time.Second)) || c.ResolveAfter != 2*time.Minute {
		t.Errorf("closed breaker: %+v", c)
	}

	s = build(t0, attempts(t0, 3, 401, switchyardv1.Outcome_OUTCOME_PERMANENT, 10*time.Millisecond)...)
	c = find(t, Evaluate(cfg(), s, noPrior, t0), CredentialsFailing)
	if !c.Firing || c.Count != 3 || !strings.Contains(c.LinkPath, "/v1/events/ev-1") {
		t.Errorf("three 401s: %+v", c)
	}
	s = build(t0, attempts(t0, 2, 403, switchyardv1.Outcome_OUTCOME_PERMANENT, 10*time.Millisecond)...)
	if c = find(t, Evaluate(cfg(), s, noPrior, t0), CredentialsFailing); c.Firing || c.Clear {
		t.Errorf("two 403s: firing %v clear %v, want neither (the default needs 3)", c.Firing, c.Clear)
	}
	// An OAuth2 token endpoint refusing the client: no status of the
	// destination's own, flagged by the dispatcher.
	refused := attempts(t0, 3, 0, switchyardv1.Outcome_OUTCOME_RETRYABLE, 10*time.Millisecond)
	for _, r := range refused {
		r.GetDeliveryAttempt().AuthFailure, r.GetDeliveryAttempt().Error = true, "oauth2 token: 401 invalid_client"
	}
	if c = find(t, Evaluate(cfg(), build(t0, refused...), noPrior, t0), CredentialsFailing); !c.Firing || c.Count != 3 {
		t.Errorf("three token refusals: %+v", c)
	}
	// A quiet partner: one delivery, dead-lettered on a 401, is enough.
	s = build(t0, &switchyardv1.AuditRecord{Detail: &switchyardv1.AuditRecord_DeadLettered{DeadLettered: &switchyardv1.DeadLetter{
		Id: "EVENTS:1:erp", Destination: "erp", EventId: "ev-9", LastStatusCode: 401, LastError: "HTTP 401 Unauthorized"}}})
	if c = find(t, Evaluate(cfg(), s, noPrior, t0), CredentialsFailing); !c.Firing || c.LinkPath != "/v1/events/ev-9" {
		t.Errorf("a dead letter on a 401: %+v", c)
	}
	s = build(t0, &switchyardv1.AuditRecord{Detail: &switchyardv1.AuditRecord_DeadLettered{DeadLettered: &switchyardv1.DeadLetter{
		Id: "EVENTS:2:erp", Destination: "erp", EventId: "ev-10", AuthFailure: true, LastError: "oauth2 token: 400 invalid_grant"}}})
	if c = find(t, Evaluate(cfg(), s, noPrior, t0), CredentialsFailing); !c.Firing {
		t.Errorf("a dead letter on a token refusal: %+v", c)
	}

	// Backlog reports carry the breaker's state: with the CircuitChanged
	// record lost, they fire PartnerDown and say where the state came from.
	report := func(at time.Time, st switchyardv1.CircuitState) *switchyardv1.AuditRecord {
		return &switchyardv1.AuditRecord{Time: timestamppb.New(at), Detail: &switchyardv1.AuditRecord_Backlog{Backlog: &switchyardv1.BacklogReport{
			Destination: "erp", NumAckPending: 10, MaxAckPending: 1000, Circuit: st}}}
	}
	s = build(t0, report(t0.Add(-time.Minute), switchyardv1.CircuitState_CIRCUIT_STATE_OPEN), report(t0.Add(-30*time.Second), switchyardv1.CircuitState_CIRCUIT_STATE_OPEN))
	c = find(t, Evaluate(cfg(), s, noPrior, t0), PartnerDown)
	if !c.Firing || !c.FirstSeen.Equal(t0.Add(-time.Minute)) || !strings.Contains(c.Fields[2].Value, "backlog reports") {
		t.Errorf("open in backlog reports: %+v", c)
	}
	s = build(t0, circuit(t0.Add(-5*time.Minute), switchyardv1.CircuitState_CIRCUIT_STATE_OPEN),
		report(t0.Add(-3*time.Minute), switchyardv1.CircuitState_CIRCUIT_STATE_CLOSED), report(t0.Add(-2*time.Minute), switchyardv1.CircuitState_CIRCUIT_STATE_CLOSED))
	c = find(t, Evaluate(cfg(), s, noPrior, t0), PartnerDown)
	if c.Firing || !c.Clear || !c.ClearSince.Equal(t0.Add(-3*time.Minute)) {
		t.Errorf("open, then closed in backlog reports: %+v", c)
	}
}

func TestDeadLettered(t *testing.T) {
	t.Parallel()
	dl := &switchyardv1.AuditRecord{Detail: &switchyardv1.AuditRecord_DeadLettered{DeadLettered: &switchyardv1.DeadLetter{
		Id: "EVENTS:9:erp", Destination: "erp", EventId: "shop:msg 1/2", LastStatusCode: 500, LastError: "boom",
		Reason: switchyardv1.DeadLetterReason_DEAD_LETTER_REASON_MAX_ATTEMPTS}}}
	s := build(t0, dl)
	c := find(t, Evaluate(cfg(), s, noPrior, t0.Add(time.Minute)), DeliveryDeadLettered)
	if !c.Firing || c.Count != 1 || !c.Digest || c.LinkPath != "/v1/events/shop:msg%201%2F2" {
		t.Errorf("one dead letter: %+v", c)
	}
	fields := map[string]string{}
	for _, f := range c.Fields {
		fields[f.Label] = f.Value
	}
	if fields["Last error"] != "HTTP 500: boom" || fields["Reason"] != "max_attempts" || fields["Destination"] != "erp" {
		t.Errorf("fields = %v", fields)
	}
	c = find(t, Evaluate(cfg(), s, noPrior, t0.Add(30*time.Minute)), DeliveryDeadLettered)
	if c.Firing || !c.Clear || !c.ClearSince.Equal(t0) {
		t.Errorf("30 minutes later: %+v", c)
	}
}

func TestBacklogSignatureAndAuditLag(t *testing.T) {
	t.Parallel()
	report := func(pending, maxPending int64, age time.Duration, full bool) *switchyardv1.AuditRecord {
		return &switchyardv1.AuditRecord{Time: timestamppb.New(t0), Detail: &switchyardv1.AuditRecord_Backlog{Backlog: &switchyardv1.BacklogReport{
			Destination: "erp", NumAckPending: pending, MaxAckPending: maxPending, OldestPendingAge: durationpb.New(age), Full: full}}}
	}
	for _, tt := range []struct {
		rec    *switchyardv1.AuditRecord
		firing bool
		sev    string
	}{
		{report(100, 10000, time.Minute, false), false, ""},
		{report(8000, 10000, time.Minute, false), true, Warning},
		{report(10, 10000, 2*time.Hour, false), true, Warning},
		{report(10000, 10000, time.Minute, true), true, Critical},
	} {
		c := find(t, Evaluate(cfg(), build(t0, tt.rec), noPrior, t0), BacklogGrowing)
		if c.Firing != tt.firing || c.Clear == tt.firing || (tt.firing && c.Severity != tt.sev) {
			t.Errorf("backlog %v: firing %v severity %s", tt.rec.GetBacklog(), c.Firing, c.Severity)
		}
	}

	src := series.New(series.KindSource, "shop")
	for range 10 {
		series.Apply(src, &switchyardv1.AuditRecord{Time: timestamppb.New(t0), Detail: &switchyardv1.AuditRecord_WebhookRejected{WebhookRejected: &switchyardv1.WebhookRejected{
			Source: "shop", Reason: switchyardv1.RejectReason_REJECT_REASON_BAD_SIGNATURE, StatusCode: 401}}}, t0)
	}
	cs := Evaluate(cfg(), series.Merge(nil, src, t0, cfg().Limits(series.KindSource, "shop")), noPrior, t0)
	if c := find(t, cs, SignatureFailures); !c.Firing || c.Labels["source"] != "shop" || c.Count != 10 {
		t.Errorf("10 bad signatures: %+v", c)
	}

	lag := series.New(series.KindAudit, "auditor")
	series.Apply(lag, &switchyardv1.AuditRecord{Service: "auditor", Time: timestamppb.New(t0), Detail: &switchyardv1.AuditRecord_AuditLag{AuditLag: &switchyardv1.AuditLag{
		PendingRecords: 5000, OldestAge: durationpb.New(6 * time.Minute), LastError: "connection refused"}}}, t0)
	cs = Evaluate(cfg(), series.Merge(nil, lag, t0, series.Limits{}), noPrior, t0)
	if c := find(t, cs, AuditLag); !c.Firing || len(c.Labels) != 0 {
		t.Errorf("6 minutes behind: %+v", c)
	}
}

// AuditLag counts unrecorded events with the records, and fires from the
// auditor's consumer when the auditor reports nothing.
func TestAuditLagSources(t *testing.T) {
	t.Parallel()
	at := timestamppb.New(t0)
	tests := []struct {
		name          string
		self, view    *switchyardv1.AuditLag
		firing, clear bool
		summary       string
	}{
		{name: "events behind count", self: &switchyardv1.AuditLag{PendingRecords: 10, PendingEvents: 150000, OldestAge: durationpb.New(time.Minute)},
			firing: true, summary: "behind by 1m0s"},
		{name: "a few of each is fine", self: &switchyardv1.AuditLag{PendingRecords: 10, PendingEvents: 10, OldestAge: durationpb.New(time.Minute)}, clear: true},
		{name: "no auditor: its consumer says so", view: &switchyardv1.AuditLag{PendingRecords: 40, OldestAge: durationpb.New(6 * time.Minute)},
			firing: true, summary: "behind by 6m0s: the auditor is not reading AUDIT"},
		{name: "caught up, but its consumer is behind", self: &switchyardv1.AuditLag{CaughtUp: true},
			view: &switchyardv1.AuditLag{PendingRecords: 40, OldestAge: durationpb.New(6 * time.Minute)}, firing: true},
		{name: "both behind", self: &switchyardv1.AuditLag{PendingRecords: 40, OldestAge: durationpb.New(7 * time.Minute), LastError: "connection refused"},
			view: &switchyardv1.AuditLag{PendingRecords: 40, OldestAge: durationpb.New(6 * time.Minute)}, firing: true, summary: "behind by 7m0s"},
		{name: "its consumer caught up", view: &switchyardv1.AuditLag{CaughtUp: true}, clear: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := &switchyardv1.Series{Kind: series.KindAudit, Name: "auditor"}
			if tt.self != nil {
				s.AuditLag, s.AuditLagAt = tt.self, at
			}
			if tt.view != nil {
				s.AuditorConsumer, s.AuditorConsumerAt = tt.view, at
			}
			c := find(t, Evaluate(cfg(), s, noPrior, t0), AuditLag)
			if c.Firing != tt.firing || c.Clear != tt.clear || !strings.Contains(c.Summary, tt.summary) {
				t.Errorf("firing %v clear %v summary %q; want %v, %v, %q", c.Firing, c.Clear, c.Summary, tt.firing, tt.clear, tt.summary)
			}
		})
	}
}

func TestDisabledRulesAreClear(t *testing.T) {
	t.Parallel()
	c := cfg()
	c.Alerts.Destinations = map[string]config.DestinationAlertRules{"erp": {ErrorRate: config.ErrorRateRule{Disabled: true}}}
	s := build(t0, attempts(t0, 30, 503, switchyardv1.Outcome_OUTCOME_RETRYABLE, time.Millisecond)...)
	if got := find(t, Evaluate(c, s, noPrior, t0), PartnerErrorRateHigh); got.Firing || !got.Clear {
		t.Errorf("disabled rule: %+v", got)
	}
	if got := find(t, Evaluate(cfg(), s, noPrior, t0), PartnerErrorRateHigh); !got.Firing {
		t.Errorf("enabled rule: %+v", got)
	}
	a := &switchyardv1.Alert{Rule: PartnerDown, Labels: map[string]string{"destination": "erp"}}
	if got := Cleared(cfg(), a); !got.Clear || got.ResolveAfter != 2*time.Minute {
		t.Errorf("Cleared = %+v", got)
	}
}

func TestFormat(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		1523 * time.Millisecond: "1.52s", 120*time.Millisecond + 400*time.Microsecond: "120ms", 200*time.Second + 300*time.Millisecond: "3m20s",
	} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%v) = %q, want %q", d, got, want)
		}
	}
	if got := percent(1.0 / 3); got != "33.3%" {
		t.Errorf("percent = %q", got)
	}
	if got := percent(0.25); got != "25%" {
		t.Errorf("percent = %q", got)
	}
}
