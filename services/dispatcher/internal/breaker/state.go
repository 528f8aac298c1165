package breaker

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/switchyard/switchyard/pkg/config"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
)

// Circuit is the shared state of one destination's breaker, stored as JSON
// in the breakers KV bucket under the destination's name. Every replica
// applies its results to it with a compare-and-set on the entry's revision,
// so the state is the sum of what all replicas saw, whichever saw what.
type Circuit struct {
	State switchyardv1.CircuitState `json:"state"`
	// Consecutive is the retryable failures since the last answer that
	// showed the partner up, across replicas.
	Consecutive int `json:"consecutive"`
	// Buckets count outcomes over the window, oldest first.
	Buckets []Slot `json:"buckets,omitempty"`
	// Opens counts the openings since the last close; the cooldown doubles
	// with each.
	Opens     int       `json:"opens,omitempty"`
	OpenUntil time.Time `json:"open_until,omitzero"`
	// Prober is the replica allowed to make the half-open probe, until
	// ProbeUntil (then another may take over).
	Prober     string    `json:"prober,omitempty"`
	ProbeUntil time.Time `json:"probe_until,omitzero"`
	LastError  string    `json:"last_error,omitempty"`
	// Reason says why the state last changed.
	Reason string `json:"reason,omitempty"`
	// Change is the transition into the current state. Any replica can
	// record it again from here (CircuitChanged, same id), so that one
	// lost audit record does not leave the audit log and the notifier
	// believing the old state.
	Change *Change `json:"change,omitempty"`
}

// Change describes a transition as its CircuitChanged record does.
type Change struct {
	From switchyardv1.CircuitState `json:"from"`
	At   time.Time                 `json:"at"`
	// Consecutive, Ratio and Attempts are the failure counts that led to
	// it; LastError the last failure then.
	Consecutive int     `json:"consecutive,omitempty"`
	Ratio       float64 `json:"ratio,omitempty"`
	Attempts    int     `json:"attempts,omitempty"`
	LastError   string  `json:"last_error,omitempty"`
}

// Slot counts attempts that started in [Start, Start+width): one slot
// of the window.
type Slot struct {
	Start int64 `json:"s"` // unix milliseconds
	OK    int   `json:"ok"`
	Fail  int   `json:"fail"`
}

// tally is what one replica observed since it last wrote to the circuit.
type tally struct {
	ok, fail int
	// sawOK: an answer showed the partner up; trailing counts the
	// failures after the last such answer.
	sawOK    bool
	trailing int
	// probe is the outcome of this replica's half-open probe, if it made
	// one: true for up.
	probe     *bool
	lastError string
}

func (t *tally) empty() bool { return t.ok == 0 && t.fail == 0 && t.probe == nil }

// add counts one attempt: failed means a retryable failure.
func (t *tally) add(failed bool, errText string, probe bool) {
	if failed {
		t.fail++
		t.trailing++
		t.lastError = errText
	} else {
		t.ok++
		t.sawOK = true
		t.trailing = 0
	}
	if probe {
		up := !failed
		t.probe = &up
	}
}

// Policy is a destination's breaker configuration.
type Policy struct {
	config.Breaker
}

func (p Policy) bucketWidth() time.Duration { return max(p.Window.D()/10, 100*time.Millisecond) }

// cooldown after the n-th opening since the last close.
func (p Policy) cooldown(opens int) time.Duration {
	d := p.Cooldown.D()
	for i := 1; i < opens && d < p.MaxCooldown.D(); i++ {
		d *= 2
	}
	return min(d, p.MaxCooldown.D())
}

// Decode reads a circuit as the bucket stores it. A circuit never written
// is closed.
func Decode(data []byte) (Circuit, error) {
	var c Circuit
	if err := json.Unmarshal(data, &c); err != nil {
		return Circuit{}, err
	}
	c.normalize()
	return c, nil
}

func (c *Circuit) normalize() {
	if c.State == switchyardv1.CircuitState_CIRCUIT_STATE_UNSPECIFIED {
		c.State = switchyardv1.CircuitState_CIRCUIT_STATE_CLOSED
	}
}

// ratio is the failure ratio and attempt count over the window.
func (c *Circuit) ratio(p Policy, now time.Time) (float64, int) {
	from := now.Add(-p.Window.D()).UnixMilli()
	var ok, fail int
	for _, b := range c.Buckets {
		if b.Start+p.bucketWidth().Milliseconds() > from {
			ok += b.OK
			fail += b.Fail
		}
	}
	if ok+fail == 0 {
		return 0, 0
	}
	return float64(fail) / float64(ok+fail), ok + fail
}

// apply adds a replica's tally and makes the transitions it causes. It
// returns a description of the transition, or "" when the state stayed.
func (c *Circuit) apply(t tally, p Policy, now time.Time) string {
	c.normalize()
	// Counts.
	width := p.bucketWidth().Milliseconds()
	start := now.UnixMilli() / width * width
	if n := len(c.Buckets); n > 0 && c.Buckets[n-1].Start == start {
		c.Buckets[n-1].OK += t.ok
		c.Buckets[n-1].Fail += t.fail
	} else if t.ok+t.fail > 0 {
		c.Buckets = append(c.Buckets, Slot{Start: start, OK: t.ok, Fail: t.fail})
	}
	keepFrom := now.Add(-p.Window.D()).UnixMilli() - width
	for len(c.Buckets) > 0 && c.Buckets[0].Start < keepFrom {
		c.Buckets = c.Buckets[1:]
	}
	if t.sawOK {
		c.Consecutive = t.trailing
	} else {
		c.Consecutive += t.fail
	}
	if t.lastError != "" {
		c.LastError = t.lastError
	}

	switch c.State {
	case switchyardv1.CircuitState_CIRCUIT_STATE_CLOSED:
		ratio, n := c.ratio(p, now)
		switch {
		case c.Consecutive >= p.ConsecutiveFailures:
			c.Open(p, now, fmt.Sprintf("%d retryable failures in a row", c.Consecutive))
			return c.Reason
		case n >= p.MinRequests && ratio >= p.FailureRatio:
			c.Open(p, now, fmt.Sprintf("%.0f%% of %d attempts in %s failed", ratio*100, n, p.Window))
			return c.Reason
		}
	case switchyardv1.CircuitState_CIRCUIT_STATE_HALF_OPEN:
		// Only the probe decides; attempts that were already running when
		// the breaker opened say nothing about the partner now.
		if t.probe != nil {
			if *t.probe {
				c.Close("the probe attempt succeeded")
			} else {
				c.Open(p, now, "the probe attempt failed")
			}
			return c.Reason
		}
	}
	return ""
}

// Open opens the circuit for the cooldown of its next opening.
func (c *Circuit) Open(p Policy, now time.Time, reason string) {
	c.State = switchyardv1.CircuitState_CIRCUIT_STATE_OPEN
	c.Opens++
	c.OpenUntil = now.Add(p.cooldown(c.Opens))
	c.Prober, c.ProbeUntil = "", time.Time{}
	c.Reason = reason
}

// Close closes the circuit and forgets the failures (not the last error).
func (c *Circuit) Close(reason string) {
	last := c.LastError
	*c = Circuit{State: switchyardv1.CircuitState_CIRCUIT_STATE_CLOSED, Reason: reason, LastError: last}
}

// HalfOpen lets replica me probe, when the cooldown is over or the replica
// that was probing stopped renewing its lease.
func (c *Circuit) HalfOpen(me string, now time.Time, lease time.Duration) string {
	c.normalize()
	switch {
	case c.State == switchyardv1.CircuitState_CIRCUIT_STATE_OPEN && !now.Before(c.OpenUntil):
		c.State = switchyardv1.CircuitState_CIRCUIT_STATE_HALF_OPEN
		c.Prober, c.ProbeUntil = me, now.Add(lease)
		c.Reason = "cooldown over; one probe attempt"
		return c.Reason
	case c.State == switchyardv1.CircuitState_CIRCUIT_STATE_HALF_OPEN && c.Prober != me && now.After(c.ProbeUntil):
		// Not a state change: another replica takes the probe over.
		c.Prober, c.ProbeUntil = me, now.Add(lease)
	case c.State == switchyardv1.CircuitState_CIRCUIT_STATE_HALF_OPEN && c.Prober == me:
		c.ProbeUntil = now.Add(lease)
	}
	return ""
}

// MayProbe reports whether replica me holds the probe.
func (c *Circuit) MayProbe(me string, now time.Time) bool {
	return c.State == switchyardv1.CircuitState_CIRCUIT_STATE_HALF_OPEN && c.Prober == me && now.Before(c.ProbeUntil)
}
