package settle_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/mapping"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/dispatcher/internal/delivery"
	"github.com/switchyard/switchyard/services/dispatcher/internal/settle"
)

const (
	delivered   = switchyardv1.Outcome_OUTCOME_DELIVERED
	retryable   = switchyardv1.Outcome_OUTCOME_RETRYABLE
	permanent   = switchyardv1.Outcome_OUTCOME_PERMANENT
	unspecified = switchyardv1.Outcome_OUTCOME_UNSPECIFIED

	maxAttempts = switchyardv1.DeadLetterReason_DEAD_LETTER_REASON_MAX_ATTEMPTS
	permFailure = switchyardv1.DeadLetterReason_DEAD_LETTER_REASON_PERMANENT_FAILURE
)

// policies are the settling policies of two destinations that differ only
// in ordering: four attempts on a 10s, 30s, 2m schedule (the last step
// repeats for the fourth).
func policies(t *testing.T) map[string]settle.Policy {
	t.Helper()
	out := map[string]settle.Policy{}
	for _, ordered := range []bool{false, true} {
		dc := config.Destination{
			Name: "erp", URL: "https://erp.example/hooks", Subjects: []string{"events.>"}, Ordered: ordered,
			Retry: config.Retry{MaxAttempts: 4, Backoff: []config.Duration{
				config.Duration(10 * time.Second), config.Duration(30 * time.Second), config.Duration(2 * time.Minute)}},
		}
		all := config.Config{Destinations: []config.Destination{dc}}.WithDefaults()
		if err := all.Validate(); err != nil {
			t.Fatal(err)
		}
		out[fmt.Sprintf("ordered=%v", ordered)] = settle.PolicyFor(all.Destinations[0])
	}
	return out
}

// The decision for every outcome class, on the first, a middle, a
// past-the-schedule, the last and a past-the-last delivery (MaxAttempts
// lowered since the event was first delivered), with no Retry-After and
// with one shorter than, equal to and longer than the next step, for an
// attempt that finished and one cut off by shutdown, on an ordered
// destination and on one that is not: ordering does not change settling.
func TestDecide(t *testing.T) {
	t.Parallel()
	const (
		s10 = 10 * time.Second
		s30 = 30 * time.Second
		m2  = 2 * time.Minute
	)
	// anyRetryAfter is every Retry-After the rows that ignore it are
	// checked with.
	anyRetryAfter := []time.Duration{0, 5 * time.Second, s10, time.Minute, 5 * time.Minute}
	for _, tt := range []struct {
		name        string
		outcome     switchyardv1.Outcome
		attempt     int
		retryAfter  []time.Duration // nil: anyRetryAfter
		interrupted bool
		want        settle.Action
	}{
		// Delivered: acknowledged, whatever else; a 2xx that arrived as
		// the shutdown grace ran out is still delivered.
		{name: "delivered first", outcome: delivered, attempt: 1, want: settle.Action{Kind: settle.Ack, Final: true}},
		{name: "delivered middle", outcome: delivered, attempt: 2, want: settle.Action{Kind: settle.Ack, Final: true}},
		{name: "delivered last", outcome: delivered, attempt: 4, want: settle.Action{Kind: settle.Ack, Final: true, LastDelivery: true}},
		{name: "delivered first interrupted", outcome: delivered, attempt: 1, interrupted: true, want: settle.Action{Kind: settle.Ack, Final: true}},
		{name: "delivered last interrupted", outcome: delivered, attempt: 4, interrupted: true,
			want: settle.Action{Kind: settle.Ack, Final: true, LastDelivery: true}},

		// Permanent failure: dead-lettered at once, on any delivery.
		{name: "permanent first", outcome: permanent, attempt: 1, want: settle.Action{Kind: settle.DeadLetter, Final: true, Reason: permFailure}},
		{name: "permanent middle", outcome: permanent, attempt: 2, want: settle.Action{Kind: settle.DeadLetter, Final: true, Reason: permFailure}},
		{name: "permanent last", outcome: permanent, attempt: 4,
			want: settle.Action{Kind: settle.DeadLetter, Final: true, LastDelivery: true, Reason: permFailure}},
		{name: "permanent past last", outcome: permanent, attempt: 5,
			want: settle.Action{Kind: settle.DeadLetter, Final: true, LastDelivery: true, Reason: permFailure}},
		// A result without an outcome is not retryable: permanent.
		{name: "no outcome first", outcome: unspecified, attempt: 1, want: settle.Action{Kind: settle.DeadLetter, Final: true, Reason: permFailure}},

		// Retryable, with attempts left: redelivered on the schedule,
		// unless the partner asked for longer.
		{name: "retryable first", outcome: retryable, attempt: 1, retryAfter: []time.Duration{0},
			want: settle.Action{Kind: settle.Redeliver, RetryIn: s10}},
		{name: "retryable first retry-after shorter", outcome: retryable, attempt: 1, retryAfter: []time.Duration{5 * time.Second},
			want: settle.Action{Kind: settle.Redeliver, RetryIn: s10}},
		{name: "retryable first retry-after equal", outcome: retryable, attempt: 1, retryAfter: []time.Duration{s10},
			want: settle.Action{Kind: settle.Redeliver, RetryIn: s10}},
		{name: "retryable first retry-after longer", outcome: retryable, attempt: 1, retryAfter: []time.Duration{time.Minute},
			want: settle.Action{Kind: settle.NakWithDelay, RetryIn: time.Minute, NakDelay: time.Minute}},
		{name: "retryable middle", outcome: retryable, attempt: 2, retryAfter: []time.Duration{0},
			want: settle.Action{Kind: settle.Redeliver, RetryIn: s30}},
		{name: "retryable middle retry-after shorter", outcome: retryable, attempt: 2, retryAfter: []time.Duration{20 * time.Second},
			want: settle.Action{Kind: settle.Redeliver, RetryIn: s30}},
		{name: "retryable middle retry-after equal", outcome: retryable, attempt: 2, retryAfter: []time.Duration{s30},
			want: settle.Action{Kind: settle.Redeliver, RetryIn: s30}},
		// The nak delay takes off the schedule's growth the server adds
		// (30s - 10s): the next attempt comes a minute after the answer.
		{name: "retryable middle retry-after longer", outcome: retryable, attempt: 2, retryAfter: []time.Duration{time.Minute},
			want: settle.Action{Kind: settle.NakWithDelay, RetryIn: time.Minute, NakDelay: 40 * time.Second}},
		// The third delivery's step is the schedule's last (2m).
		{name: "retryable end of schedule", outcome: retryable, attempt: 3, retryAfter: []time.Duration{0},
			want: settle.Action{Kind: settle.Redeliver, RetryIn: m2}},
		{name: "retryable end of schedule retry-after shorter", outcome: retryable, attempt: 3, retryAfter: []time.Duration{time.Minute},
			want: settle.Action{Kind: settle.Redeliver, RetryIn: m2}},
		{name: "retryable end of schedule retry-after longer", outcome: retryable, attempt: 3, retryAfter: []time.Duration{5 * time.Minute},
			want: settle.Action{Kind: settle.NakWithDelay, RetryIn: 5 * time.Minute, NakDelay: 5*time.Minute - m2 + s10}},

		// Retryable on the last delivery: out of attempts, whatever the
		// partner asked for.
		{name: "retryable last", outcome: retryable, attempt: 4,
			want: settle.Action{Kind: settle.DeadLetter, Final: true, LastDelivery: true, Reason: maxAttempts}},
		{name: "retryable past last", outcome: retryable, attempt: 5,
			want: settle.Action{Kind: settle.DeadLetter, Final: true, LastDelivery: true, Reason: maxAttempts}},

		// Cut off by shutdown without a 2xx: handed back at once, nothing
		// recorded (Final unset), on any delivery.
		{name: "retryable first interrupted", outcome: retryable, attempt: 1, interrupted: true, want: settle.Action{Kind: settle.HandBack}},
		{name: "retryable middle interrupted", outcome: retryable, attempt: 2, interrupted: true, want: settle.Action{Kind: settle.HandBack}},
		{name: "retryable last interrupted", outcome: retryable, attempt: 4, interrupted: true,
			want: settle.Action{Kind: settle.HandBack, LastDelivery: true}},
		{name: "permanent first interrupted", outcome: permanent, attempt: 1, interrupted: true, want: settle.Action{Kind: settle.HandBack}},
		{name: "permanent last interrupted", outcome: permanent, attempt: 4, interrupted: true,
			want: settle.Action{Kind: settle.HandBack, LastDelivery: true}},
	} {
		retryAfters := tt.retryAfter
		if retryAfters == nil {
			retryAfters = anyRetryAfter
		}
		for pname, p := range policies(t) {
			for _, ra := range retryAfters {
				t.Run(fmt.Sprintf("%s/%s/retry-after=%v", tt.name, pname, ra), func(t *testing.T) {
					res := delivery.Result{Outcome: tt.outcome, RetryAfter: ra, StatusCode: 503, Err: errors.New("HTTP 503")}
					got := settle.Decide(res, settle.Attempt{Number: tt.attempt, Interrupted: tt.interrupted}, p)
					if got != tt.want {
						t.Errorf("Decide(%v, attempt %d, interrupted %v, Retry-After %v) = %+v, want %+v",
							tt.outcome, tt.attempt, tt.interrupted, ra, got, tt.want)
					}
				})
			}
		}
	}
}

// A nak with the delay NakDelay gives is redelivered after the wait asked
// for, on every delivery of the schedule.
func TestNakDelay(t *testing.T) {
	t.Parallel()
	backoff := []time.Duration{10 * time.Second, 30 * time.Second, 2 * time.Minute}
	for _, tt := range []struct {
		attempt int
		wait    time.Duration
		want    time.Duration
	}{
		// After the first delivery the ack wait is BackOff[0]: no growth.
		{1, time.Minute, time.Minute},
		// After the second, the server adds BackOff[1]-BackOff[0] = 20s.
		{2, time.Minute, 40 * time.Second},
		// Past the end of the schedule the last step repeats.
		{3, 5 * time.Minute, 5*time.Minute - 110*time.Second},
		{7, 5 * time.Minute, 5*time.Minute - 110*time.Second},
	} {
		got := settle.NakDelay(backoff, tt.attempt, tt.wait)
		if got != tt.want {
			t.Errorf("NakDelay(attempt %d, %v) = %v, want %v", tt.attempt, tt.wait, got, tt.want)
		}
		// What the server does with it: redeliver after delay + step - BackOff[0].
		step := backoff[min(tt.attempt-1, len(backoff)-1)]
		if actual := got + step - backoff[0]; actual != tt.wait {
			t.Errorf("attempt %d: the server would redeliver after %v, want %v", tt.attempt, actual, tt.wait)
		}
	}
}

func TestStep(t *testing.T) {
	t.Parallel()
	p := settle.Policy{MaxAttempts: 6, Backoff: []time.Duration{time.Second, 2 * time.Second}}
	for attempt, want := range map[int]time.Duration{0: time.Second, 1: time.Second, 2: 2 * time.Second, 3: 2 * time.Second, 6: 2 * time.Second} {
		if got := p.Step(attempt); got != want {
			t.Errorf("Step(%d) = %v, want %v", attempt, got, want)
		}
	}
}

// A failed filter or transformation (pkg/mapping) makes no request: the
// dispatcher hands settle a permanent result without a status, which is
// dead-lettered on the delivery it happened on, never retried.
func TestMappingFailureIsDeadLetteredAtOnce(t *testing.T) {
	t.Parallel()
	res := delivery.Result{Outcome: permanent, Err: &mapping.Error{Stage: mapping.StageTransform, Err: errors.New("cannot iterate over: string")}}
	for name, p := range policies(t) {
		for _, n := range []int{1, 2, 4} {
			got := settle.Decide(res, settle.Attempt{Number: n}, p)
			if got.Kind != settle.DeadLetter || got.Reason != permFailure || !got.Final || got.LastDelivery != (n == 4) {
				t.Errorf("%s, delivery %d: %+v", name, n, got)
			}
		}
	}
}
