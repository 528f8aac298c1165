// Package redelivery is the rule by which JetStream redelivery carries out a
// destination's retry schedule: the BackOff list of the destination's
// consumer (ConsumerBackoff), and the margin each step keeps over the HTTP
// timeout (AckMargin), since a step is also the ack wait of the attempt
// before it and an attempt still running must not be redelivered.
//
// The configuration's validation (a backoff step shorter than timeout +
// AckMargin is refused), the destination consumers (pkg/topology) and the
// dispatcher's keep-alives follow the same rule, so it lives here, below
// all three.
package redelivery

import "time"

// AckMargin is how much longer than the HTTP timeout each backoff step must
// be, so that the work after a response (audit record, ack) finishes before
// JetStream considers the attempt lost.
func AckMargin(timeout time.Duration) time.Duration {
	return max(250*time.Millisecond, timeout/10)
}

// ConsumerBackoff is the BackOff list of a destination's consumer for the
// retry schedule steps and max_attempts: at most maxAttempts steps
// (JetStream refuses more), the last one repeating. D is time.Duration or
// a type based on it (config.Duration).
func ConsumerBackoff[D ~int64](steps []D, maxAttempts int) []time.Duration {
	n := max(0, min(len(steps), maxAttempts))
	out := make([]time.Duration, n)
	for i := range n {
		out[i] = time.Duration(steps[i])
	}
	return out
}
