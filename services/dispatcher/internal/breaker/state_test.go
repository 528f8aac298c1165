package breaker

import (
	"testing"
	"time"

	"github.com/switchyard/switchyard/pkg/config"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
)

var (
	closed   = switchyardv1.CircuitState_CIRCUIT_STATE_CLOSED
	open     = switchyardv1.CircuitState_CIRCUIT_STATE_OPEN
	halfOpen = switchyardv1.CircuitState_CIRCUIT_STATE_HALF_OPEN
)

func testPolicy() Policy {
	return Policy{config.Breaker{
		ConsecutiveFailures: 5, FailureRatio: 0.5, MinRequests: 20,
		Window: config.Duration(time.Minute), Cooldown: config.Duration(10 * time.Second), MaxCooldown: config.Duration(35 * time.Second),
	}}
}

// outcomes builds a tally from a string: f a retryable failure, o any other
// answer.
func outcomes(s string) tally {
	var t tally
	for _, c := range s {
		t.add(c == 'f', "HTTP 503", false)
	}
	return t
}

func TestCircuitOpensOnConsecutiveFailuresAcrossWriters(t *testing.T) {
	t.Parallel()
	p := testPolicy()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var c Circuit
	// Two replicas each saw two failures: four in a row, not yet five.
	for _, s := range []string{"ff", "ff"} {
		if tr := c.apply(outcomes(s), p, now); tr != "" || c.State != closed {
			t.Fatalf("opened early: %q %v", tr, c.State)
		}
	}
	if c.Consecutive != 4 {
		t.Fatalf("consecutive = %d, want 4", c.Consecutive)
	}
	// A replica that saw a success and then one failure resets the run.
	c.apply(outcomes("ffof"), p, now)
	if c.Consecutive != 1 || c.State != closed {
		t.Fatalf("after a success: consecutive %d state %v, want 1 closed", c.Consecutive, c.State)
	}
	tr := c.apply(outcomes("ffff"), p, now)
	if c.State != open || tr == "" || !c.OpenUntil.Equal(now.Add(10*time.Second)) || c.LastError != "HTTP 503" {
		t.Fatalf("after five in a row: %+v (%q)", c, tr)
	}
}

func TestCircuitOpensOnFailureRatio(t *testing.T) {
	t.Parallel()
	p := testPolicy()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var c Circuit
	// 9 failures out of 19, never 5 in a row: under the minimum requests.
	c.apply(outcomes("ffffoffffooooooofoo"), p, now)
	if c.State != closed {
		t.Fatalf("opened under min_requests: %+v", c)
	}
	// The 20th attempt, a failure: 10 of 20 failed.
	if tr := c.apply(outcomes("f"), p, now.Add(time.Second)); c.State != open || tr == "" {
		t.Fatalf("did not open at 50%% of 20: %+v", c)
	}

	// Outside the window old outcomes no longer count.
	var d Circuit
	d.apply(outcomes("ffffoffffooooooofoo"), p, now)
	d.apply(outcomes("o"), p, now.Add(2*time.Minute))
	if ratio, n := d.ratio(p, now.Add(2*time.Minute)); n != 1 || ratio != 0 {
		t.Errorf("ratio over the window = %v of %d, want 0 of 1", ratio, n)
	}
}

func TestCircuitHalfOpenProbe(t *testing.T) {
	t.Parallel()
	p := testPolicy()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var c Circuit
	c.apply(outcomes("fffff"), p, now)
	if c.State != open {
		t.Fatal("not open")
	}
	if tr := c.HalfOpen("a", now.Add(9*time.Second), time.Second); tr != "" || c.State != open {
		t.Fatalf("half-open before the cooldown: %+v", c)
	}
	if tr := c.HalfOpen("a", now.Add(10*time.Second), time.Second); tr == "" || c.State != halfOpen || !c.MayProbe("a", now.Add(10*time.Second)) {
		t.Fatalf("not half-open after the cooldown: %+v", c)
	}
	if c.MayProbe("b", now.Add(10*time.Second)) {
		t.Error("a second replica may probe")
	}
	// Replica a stops renewing; b takes the probe over.
	c.HalfOpen("b", now.Add(10500*time.Millisecond), time.Second)
	if c.Prober != "a" {
		t.Error("probe taken over before the lease ran out")
	}
	c.HalfOpen("b", now.Add(12*time.Second), time.Second)
	if c.Prober != "b" || c.State != halfOpen {
		t.Errorf("probe not taken over after the lease: %+v", c)
	}
	// Outcomes of attempts that were not the probe decide nothing.
	if c.apply(outcomes("oooo"), p, now.Add(12*time.Second)); c.State != halfOpen {
		t.Errorf("a non-probe success closed the breaker: %+v", c)
	}
	// A failed probe opens again for twice the cooldown.
	var failed tally
	failed.add(true, "timeout", true)
	c.apply(failed, p, now.Add(12*time.Second))
	if c.State != open || c.Opens != 2 || !c.OpenUntil.Equal(now.Add(32*time.Second)) {
		t.Fatalf("after a failed probe: %+v", c)
	}
	// The cooldown doubles up to max_cooldown.
	c.HalfOpen("b", now.Add(32*time.Second), time.Second)
	c.apply(failed, p, now.Add(33*time.Second))
	if !c.OpenUntil.Equal(now.Add(33*time.Second + 35*time.Second)) {
		t.Errorf("third cooldown until %v, want capped at 35s", c.OpenUntil)
	}
	// A successful probe closes and forgets the failures.
	c.HalfOpen("b", c.OpenUntil, time.Second)
	var ok tally
	ok.add(false, "", true)
	c.apply(ok, p, c.OpenUntil)
	if c.State != closed || c.Consecutive != 0 || c.Opens != 0 || len(c.Buckets) != 0 {
		t.Errorf("after a successful probe: %+v", c)
	}
}

func TestTallyMerge(t *testing.T) {
	t.Parallel()
	later := outcomes("fo")
	later.merge(outcomes("ff"))
	if later.ok != 1 || later.fail != 3 || !later.sawOK || later.trailing != 0 {
		t.Errorf("merge = %+v", later)
	}
	failsOnly := outcomes("f")
	failsOnly.merge(outcomes("of"))
	if failsOnly.trailing != 2 || !failsOnly.sawOK {
		t.Errorf("merge = %+v, want trailing 2", failsOnly)
	}
}
