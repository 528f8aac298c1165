package series

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func attempt(at time.Time, status int32, outcome switchyardv1.Outcome, d time.Duration) *switchyardv1.AuditRecord {
	return &switchyardv1.AuditRecord{Time: timestamppb.New(at), Detail: &switchyardv1.AuditRecord_DeliveryAttempt{DeliveryAttempt: &switchyardv1.DeliveryAttempt{
		Destination: "erp", StartedAt: timestamppb.New(at), StatusCode: status, Outcome: outcome, Duration: durationpb.New(d), EventId: "ev",
	}}}
}

func deadLetter(id string) *switchyardv1.AuditRecord {
	return &switchyardv1.AuditRecord{Id: "dead_letter:" + id, Detail: &switchyardv1.AuditRecord_DeadLettered{DeadLettered: &switchyardv1.DeadLetter{
		Id: id, Destination: "erp", EventId: "ev-" + id, LastError: "HTTP 500", LastStatusCode: 500,
	}}}
}

var limits = Limits{Window: 5 * time.Minute, BaselineWindow: time.Hour, RunGap: 30 * time.Minute}

func TestLatencyHistogram(t *testing.T) {
	t.Parallel()
	for _, d := range []time.Duration{0, time.Millisecond, 7 * time.Millisecond, 100 * time.Millisecond, 1500 * time.Millisecond, time.Minute, 48 * time.Hour} {
		v := LatencyValue(LatencyIndex(d))
		if v < d && d <= 9*time.Hour {
			t.Errorf("LatencyValue(LatencyIndex(%v)) = %v, below the value", d, v)
		}
		if d > time.Millisecond && d <= 9*time.Hour && float64(v) > 1.19*float64(d)+1 {
			t.Errorf("LatencyValue(LatencyIndex(%v)) = %v, more than 19%% above", d, v)
		}
	}
	h := map[int32]int64{}
	for range 95 {
		h[LatencyIndex(100*time.Millisecond)]++
	}
	for range 5 {
		h[LatencyIndex(2*time.Second)]++
	}
	if p, n := Quantile(h, 0.95); n != 100 || p < 100*time.Millisecond || p > 120*time.Millisecond {
		t.Errorf("p95 with 5%% slow = %v (n %d), want about 100ms", p, n)
	}
	h[LatencyIndex(2*time.Second)] += 5
	if p, _ := Quantile(h, 0.95); p < 2*time.Second {
		t.Errorf("p95 with 10%% slow = %v, want about 2s", p)
	}
	if p, n := Quantile(nil, 0.95); p != 0 || n != 0 {
		t.Errorf("Quantile(empty) = %v, %d", p, n)
	}
}

// Two replicas read different records of one destination: their deltas
// add up in the state.
func TestMergeAddsUpReplicas(t *testing.T) {
	t.Parallel()
	a, b := New(KindDestination, "erp"), New(KindDestination, "erp")
	for i := range 30 {
		Apply(a, attempt(t0.Add(time.Duration(i)*time.Second), 200, switchyardv1.Outcome_OUTCOME_DELIVERED, 50*time.Millisecond), t0.Add(time.Minute))
		Apply(b, attempt(t0.Add(time.Duration(i)*time.Second), 503, switchyardv1.Outcome_OUTCOME_RETRYABLE, 2*time.Second), t0.Add(time.Minute))
	}
	Apply(a, &switchyardv1.AuditRecord{Time: timestamppb.New(t0.Add(10 * time.Second)), Detail: &switchyardv1.AuditRecord_CircuitChanged{
		CircuitChanged: &switchyardv1.CircuitChanged{Destination: "erp", To: switchyardv1.CircuitState_CIRCUIT_STATE_OPEN}}}, t0.Add(time.Minute))
	Apply(b, &switchyardv1.AuditRecord{Time: timestamppb.New(t0.Add(5 * time.Second)), Detail: &switchyardv1.AuditRecord_CircuitChanged{
		CircuitChanged: &switchyardv1.CircuitChanged{Destination: "erp", To: switchyardv1.CircuitState_CIRCUIT_STATE_CLOSED}}}, t0.Add(time.Minute))
	Apply(a, deadLetter("EVENTS:1:erp"), t0.Add(time.Minute))
	Apply(b, deadLetter("EVENTS:1:erp"), t0.Add(time.Minute)) // read twice
	Apply(b, deadLetter("EVENTS:2:erp"), t0.Add(time.Minute))

	now := t0.Add(time.Minute)
	s := Merge(nil, a, now, limits)
	s = Merge(s, b, now, limits)
	w := Window(s, now, 5*time.Minute)
	if w.Attempts != 60 || w.Retryable != 30 {
		t.Errorf("window = %+v, want 60 attempts, 30 retryable", w)
	}
	if p, n := Quantile(w.Latency, 0.5); n != 60 || p > 100*time.Millisecond {
		t.Errorf("median = %v over %d", p, n)
	}
	if s.Circuit.GetState() != switchyardv1.CircuitState_CIRCUIT_STATE_OPEN {
		t.Errorf("circuit = %v, want the later record's state (open)", s.Circuit)
	}
	if r := s.DeadLetters; r.Total != 2 || r.RunStartTotal != 0 || !r.RunStartedAt.AsTime().Equal(now) {
		t.Errorf("dead letters = %v, want 2 in one run", r)
	}

	// After the run gap a dead letter starts a new run.
	later := now.Add(31 * time.Minute)
	d := New(KindDestination, "erp")
	Apply(d, deadLetter("EVENTS:3:erp"), later)
	s = Merge(s, d, later, limits)
	if r := s.DeadLetters; r.Total != 3 || r.RunStartTotal != 2 || !r.RunStartedAt.AsTime().Equal(later) || r.LastEventId != "ev-EVENTS:3:erp" {
		t.Errorf("dead letters after the gap = %v, want a new run of 1", r)
	}
	if len(s.Buckets) != 0 {
		t.Errorf("%d fine buckets kept 31 minutes later, want none (window 5m)", len(s.Buckets))
	}
	if len(s.Baseline) == 0 {
		t.Error("the baseline buckets were dropped within the baseline window")
	}
}

func TestBaselineExcludesTheCurrentWindow(t *testing.T) {
	t.Parallel()
	now := t0
	d := New(KindDestination, "erp")
	for m := 60; m >= 1; m-- {
		lat := 100 * time.Millisecond
		if m <= 5 {
			lat = 3 * time.Second // the current window is slow
		}
		for range 10 {
			Apply(d, attempt(now.Add(-time.Duration(m)*time.Minute), 200, switchyardv1.Outcome_OUTCOME_DELIVERED, lat), now)
		}
	}
	s := Merge(nil, d, now, limits)
	b, n := Quantile(Baseline(s, now, 5*time.Minute, time.Hour), 0.95)
	if b > 120*time.Millisecond || n < 500 {
		t.Errorf("baseline p95 = %v over %d samples, want about 100ms from the hour before the window", b, n)
	}
	cur, _ := Quantile(Window(s, now, 5*time.Minute).Latency, 0.95)
	if cur < 3*time.Second {
		t.Errorf("window p95 = %v, want about 3s", cur)
	}
}

func TestTarget(t *testing.T) {
	t.Parallel()
	rej := func(r switchyardv1.RejectReason, status ...int32) *switchyardv1.AuditRecord {
		rj := &switchyardv1.WebhookRejected{Source: "shop", Reason: r, StatusCode: 401}
		if len(status) > 0 {
			rj.StatusCode = status[0]
		}
		return &switchyardv1.AuditRecord{Detail: &switchyardv1.AuditRecord_WebhookRejected{WebhookRejected: rj}}
	}
	tests := []struct {
		rec        *switchyardv1.AuditRecord
		kind, name string
	}{
		{attempt(t0, 200, switchyardv1.Outcome_OUTCOME_DELIVERED, 0), KindDestination, "erp"},
		{deadLetter("x"), KindDestination, "erp"},
		{rej(switchyardv1.RejectReason_REJECT_REASON_BAD_SIGNATURE), KindSource, "shop"},
		{rej(switchyardv1.RejectReason_REJECT_REASON_STALE_TIMESTAMP), KindSource, "shop"},
		{rej(switchyardv1.RejectReason_REJECT_REASON_UNAUTHORIZED), KindSource, "shop"},
		// A malformed signature header or undecodable Basic credentials
		// (401) is a signature failure; an unreadable body (400) is not.
		{rej(switchyardv1.RejectReason_REJECT_REASON_MALFORMED), KindSource, "shop"},
		{rej(switchyardv1.RejectReason_REJECT_REASON_MALFORMED, 400), "", ""},
		// An unknown source or a size limit is not a signature failure;
		// the source name of an unknown source is the sender's to choose.
		{rej(switchyardv1.RejectReason_REJECT_REASON_UNKNOWN_SOURCE), "", ""},
		{rej(switchyardv1.RejectReason_REJECT_REASON_BODY_TOO_LARGE), "", ""},
		// A suspected replay (a signed body under a fresh delivery id)
		// counts with the signature failures; an ordinary redelivery not.
		{dup(switchyardv1.DuplicateVia_DUPLICATE_VIA_BODY_HASH), KindSource, "shop"},
		{dup(switchyardv1.DuplicateVia_DUPLICATE_VIA_IDEMPOTENCY_RECORD), "", ""},
		{dup(switchyardv1.DuplicateVia_DUPLICATE_VIA_STREAM_WINDOW), "", ""},
		{&switchyardv1.AuditRecord{Service: "auditor", Detail: &switchyardv1.AuditRecord_AuditLag{AuditLag: &switchyardv1.AuditLag{}}}, KindAudit, "auditor"},
		{&switchyardv1.AuditRecord{Detail: &switchyardv1.AuditRecord_Alert{Alert: &switchyardv1.AlertNotification{}}}, "", ""},
	}
	for _, tt := range tests {
		kind, name, ok := Target(tt.rec)
		if kind != tt.kind || name != tt.name || ok != (tt.kind != "") {
			t.Errorf("Target(%v) = %q, %q, %v; want %q, %q", tt.rec, kind, name, ok, tt.kind, tt.name)
		}
	}
	if k := Key(KindDestination, "erp.x>"); k != "series.destination.erp_x_" {
		t.Errorf("Key = %q", k)
	}
}

// dup is a duplicate webhook of source shop recognised via.
func dup(via switchyardv1.DuplicateVia) *switchyardv1.AuditRecord {
	return &switchyardv1.AuditRecord{Time: timestamppb.New(t0), Detail: &switchyardv1.AuditRecord_WebhookDuplicate{WebhookDuplicate: &switchyardv1.WebhookDuplicate{
		Source: "shop", EventId: "shop:d-2", Via: via, Subject: "webhooks.shop.issues",
	}}}
}

// Suspected replays count as rejections of the source, for the
// SignatureFailures rule, and are the last failure shown.
func TestApplyCountsSuspectedReplays(t *testing.T) {
	t.Parallel()
	d := New(KindSource, "shop")
	Apply(d, dup(switchyardv1.DuplicateVia_DUPLICATE_VIA_BODY_HASH), t0)
	Apply(d, dup(switchyardv1.DuplicateVia_DUPLICATE_VIA_BODY_HASH), t0)
	Apply(d, dup(switchyardv1.DuplicateVia_DUPLICATE_VIA_IDEMPOTENCY_RECORD), t0)
	if got := Window(d, t0.Add(time.Second), time.Minute).Rejections; got != 2 {
		t.Errorf("rejections = %d, want 2 (the suspected replays only)", got)
	}
	if f := d.GetLastFailure(); f.GetEventId() != "shop:d-2" || !strings.Contains(f.GetError(), "suspected replay") {
		t.Errorf("last failure = %v", f)
	}
}

// Records from a clock ahead of the notifier's count at the notifier's now.
func TestApplyClampsFutureTimes(t *testing.T) {
	t.Parallel()
	d := New(KindDestination, "erp")
	Apply(d, attempt(t0.Add(time.Hour), 503, switchyardv1.Outcome_OUTCOME_RETRYABLE, time.Second), t0)
	if w := Window(Merge(nil, d, t0, limits), t0, 5*time.Minute); w.Attempts != 1 {
		t.Errorf("window = %+v, want the future attempt counted now", w)
	}
}

// A summary record from ingress (rejections over its audit limit) counts
// as the rejections it stands for.
func TestApplyCountsRejectionSummaries(t *testing.T) {
	t.Parallel()
	d := New(KindSource, "shop")
	for _, n := range []int64{0, 0, 40} {
		Apply(d, &switchyardv1.AuditRecord{Time: timestamppb.New(t0), Detail: &switchyardv1.AuditRecord_WebhookRejected{WebhookRejected: &switchyardv1.WebhookRejected{
			Source: "shop", Reason: switchyardv1.RejectReason_REJECT_REASON_BAD_SIGNATURE, Summarized: n,
		}}}, t0)
	}
	if got := Window(d, t0.Add(time.Second), time.Minute).Rejections; got != 42 {
		t.Errorf("rejections = %d, want 42 (two records and a summary of 40)", got)
	}
}

// The dispatcher flags credential failures that carry no 401/403 of the
// destination's own (an OAuth2 token endpoint refusing the client): they
// count like 401/403 answers, on attempts and on dead letters.
func TestAuthFailuresCountTheDispatchersFlag(t *testing.T) {
	t.Parallel()
	d := New(KindDestination, "erp")
	tokenRefused := attempt(t0, 0, switchyardv1.Outcome_OUTCOME_PERMANENT, 30*time.Millisecond)
	tokenRefused.GetDeliveryAttempt().AuthFailure = true
	tokenRefused.GetDeliveryAttempt().Error = "oauth2: token endpoint answered 401 invalid_client"
	Apply(d, tokenRefused, t0)
	Apply(d, attempt(t0, 403, switchyardv1.Outcome_OUTCOME_PERMANENT, 30*time.Millisecond), t0)
	Apply(d, attempt(t0, 500, switchyardv1.Outcome_OUTCOME_RETRYABLE, 30*time.Millisecond), t0)
	dl := deadLetter("EVENTS:9:erp")
	dl.GetDeadLettered().LastStatusCode, dl.GetDeadLettered().AuthFailure = 0, true
	dl.GetDeadLettered().LastError = "oauth2: token endpoint answered 400 invalid_grant"
	Apply(d, dl, t0)
	Apply(d, deadLetter("EVENTS:10:erp"), t0) // a 500: not about credentials

	w := Window(Merge(nil, d, t0, limits), t0, 5*time.Minute)
	if w.AuthFailures != 2 || w.AuthDeadLetters != 1 {
		t.Errorf("auth failures %d, auth dead letters %d; want 2 and 1", w.AuthFailures, w.AuthDeadLetters)
	}
	if f := d.GetLastAuthFailure(); f.GetError() != "oauth2: token endpoint answered 400 invalid_grant" || f.GetStatusCode() != 0 {
		t.Errorf("last auth failure = %v, want the token endpoint's refusal", f)
	}
}

// The breaker's state is what the latest record says, CircuitChanged or
// BacklogReport, in whatever order the records are read and merged: a lost
// CircuitChanged is mended by the reports.
func TestCircuitLatestRecordWins(t *testing.T) {
	t.Parallel()
	changed := func(at time.Time, to switchyardv1.CircuitState) *switchyardv1.AuditRecord {
		return &switchyardv1.AuditRecord{Time: timestamppb.New(at), Detail: &switchyardv1.AuditRecord_CircuitChanged{
			CircuitChanged: &switchyardv1.CircuitChanged{Destination: "erp", To: to, Reason: "5 consecutive failures"}}}
	}
	report := func(at time.Time, st switchyardv1.CircuitState) *switchyardv1.AuditRecord {
		return &switchyardv1.AuditRecord{Time: timestamppb.New(at), Detail: &switchyardv1.AuditRecord_Backlog{
			Backlog: &switchyardv1.BacklogReport{Destination: "erp", Circuit: st}}}
	}
	open, closed := switchyardv1.CircuitState_CIRCUIT_STATE_OPEN, switchyardv1.CircuitState_CIRCUIT_STATE_CLOSED
	now := t0.Add(10 * time.Minute)
	tests := []struct {
		name        string
		recs        []*switchyardv1.AuditRecord
		want        switchyardv1.CircuitState
		wantChanged time.Time
	}{
		{"the close was lost", []*switchyardv1.AuditRecord{
			changed(t0, open), report(t0.Add(30*time.Second), open), report(t0.Add(time.Minute), closed), report(t0.Add(90*time.Second), closed),
		}, closed, t0.Add(time.Minute)},
		{"the open was lost", []*switchyardv1.AuditRecord{
			report(t0, closed), report(t0.Add(30*time.Second), open), report(t0.Add(time.Minute), open),
		}, open, t0.Add(30 * time.Second)},
		{"no change record at all", []*switchyardv1.AuditRecord{report(t0, open), report(t0.Add(30*time.Second), open)}, open, t0},
		{"a report without a circuit says nothing", []*switchyardv1.AuditRecord{
			changed(t0, open), report(t0.Add(time.Minute), switchyardv1.CircuitState_CIRCUIT_STATE_UNSPECIFIED),
		}, open, t0},
		{"records agree", []*switchyardv1.AuditRecord{
			changed(t0, open), report(t0.Add(30*time.Second), open), changed(t0.Add(time.Minute), closed), report(t0.Add(2*time.Minute), closed),
		}, closed, t0.Add(time.Minute)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// Every order, one replica reading them all; and each record
			// read by its own replica, merged in that order.
			for _, order := range permutations(len(tt.recs)) {
				d := New(KindDestination, "erp")
				var s *switchyardv1.Series
				for _, i := range order {
					Apply(d, tt.recs[i], now)
					one := New(KindDestination, "erp")
					Apply(one, tt.recs[i], now)
					s = Merge(s, one, now, limits)
				}
				for _, got := range []*switchyardv1.CircuitStatus{d.GetCircuit(), s.GetCircuit()} {
					if got.GetState() != tt.want {
						t.Fatalf("order %v: state %v, want %v", order, got.GetState(), tt.want)
					}
				}
				// In time order, the beginning of the state is exact.
				if sorted(order) && !s.GetCircuit().GetChangedAt().AsTime().Equal(tt.wantChanged) {
					t.Errorf("changed at %v, want %v", s.GetCircuit().GetChangedAt().AsTime(), tt.wantChanged)
				}
			}
		})
	}
}

func permutations(n int) [][]int {
	if n == 0 {
		return [][]int{{}}
	}
	var out [][]int
	for _, p := range permutations(n - 1) {
		for i := 0; i <= len(p); i++ {
			q := append(append(append([]int{}, p[:i]...), n-1), p[i:]...)
			out = append(out, q)
		}
	}
	return out
}

func sorted(order []int) bool {
	for i := range order {
		if order[i] != i {
			return false
		}
	}
	return true
}

// A polled source's health is the same whichever replica read which round
// and in whatever order the parts are merged.
func TestPollHealthMergesInAnyOrder(t *testing.T) {
	t.Parallel()
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	round := func(min int, st switchyardv1.PollStatus) *switchyardv1.AuditRecord {
		return &switchyardv1.AuditRecord{Time: timestamppb.New(base.Add(time.Duration(min) * time.Minute)),
			Detail: &switchyardv1.AuditRecord_PollRound{PollRound: &switchyardv1.PollRound{Source: "shop-orders", Status: st, StatusCode: int32(min)}}}
	}
	ok, down := switchyardv1.PollStatus_POLL_STATUS_OK, switchyardv1.PollStatus_POLL_STATUS_TIMEOUT
	recs := []*switchyardv1.AuditRecord{round(0, down), round(1, ok), round(2, down), round(3, down),
		round(4, switchyardv1.PollStatus_POLL_STATUS_INTERRUPTED)}
	seen := base.Add(time.Hour)
	var want *switchyardv1.PollHealth
	// Each inner list is one delta (what one replica read), merged in
	// the order given.
	for _, parts := range [][][]int{
		{{0}, {1}, {2}, {3}, {4}},
		{{4}, {3}, {2}, {1}, {0}},
		{{3, 0}, {4, 2, 1}},
		{{2, 4}, {1, 0, 3}},
		{{0, 1, 2, 3, 4}},
	} {
		var state *switchyardv1.Series
		for _, part := range parts {
			d := New(KindSource, "shop-orders")
			for _, i := range part {
				Apply(d, recs[i], seen)
			}
			state = Merge(state, d, seen, Limits{})
		}
		h := state.GetPoll()
		if want == nil {
			want = h
			if h.GetFirstRoundAt().AsTime() != base || h.GetLastSuccessAt().AsTime() != base.Add(time.Minute) ||
				h.GetFailingSince().AsTime() != base.Add(2*time.Minute) || h.GetLastFailure().GetStatusCode() != 3 {
				t.Fatalf("health %v: want first 12:00, success 12:01, failing since 12:02, last failure 12:03", h)
			}
			continue
		}
		if !proto.Equal(h, want) {
			t.Errorf("parts %v: %v, want %v", parts, h, want)
		}
	}
}
