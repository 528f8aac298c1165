// Package settle decides what becomes of a message after one delivery
// attempt: acknowledge it, leave it for JetStream to redeliver on the
// destination's schedule, nak it with a delay the partner asked for, hand it
// back at once, or give it up as a dead letter. The decision is a pure
// function of the attempt's result, its delivery count and the
// destination's retry policy, so that every case can be tested without a
// server; carrying it out (ack, nak, storing the dead letter) is the
// dispatcher's.
//
// Retries are JetStream's: a retryable failure is left unacknowledged and
// the server redelivers it once the consumer's BackOff step for that
// delivery count runs out; MaxDeliver caps the attempts. A plain Nak is
// only for handing a message back at shutdown (it costs the event one step
// of its schedule, not its place).
package settle

import (
	"time"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/redelivery"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/dispatcher/internal/delivery"
)

// Kind is what to do with the message.
type Kind int

const (
	// Ack: the partner accepted the event.
	Ack Kind = iota + 1
	// Redeliver: leave the message unacknowledged; JetStream redelivers it
	// when the ack wait of this delivery (its BackOff step) runs out.
	Redeliver
	// NakWithDelay: the partner asked (Retry-After) for a longer pause
	// than the schedule's next step; nak with Action.NakDelay so that the
	// next attempt comes no sooner than it asked.
	NakWithDelay
	// DeadLetter: give the event up with Action.Reason; the message is
	// terminated once its dead letter is stored.
	DeadLetter
	// HandBack: shutdown cut the attempt off; nak at once so that another
	// replica makes the next attempt. It counts as an attempt, since the
	// server cannot know.
	HandBack
)

func (k Kind) String() string {
	switch k {
	case Ack:
		return "ack"
	case Redeliver:
		return "redeliver"
	case NakWithDelay:
		return "nak_with_delay"
	case DeadLetter:
		return "dead_letter"
	case HandBack:
		return "hand_back"
	}
	return "unknown"
}

// Policy is the part of a destination's configuration that settling
// depends on. Ordering (config.Destination.Ordered) is not part of it: an
// ordered destination's consumer has one event in flight (max_ack_pending
// 1), and a failing event holds back the next ones by being retried, not
// by being settled differently.
type Policy struct {
	// MaxAttempts is the number of deliveries before the event is
	// dead-lettered (the consumer's MaxDeliver).
	MaxAttempts int
	// Backoff is the consumer's BackOff: Backoff[n-1] is the ack wait of
	// delivery number n, the last step repeating. Never empty.
	Backoff []time.Duration
}

// PolicyFor is the settling policy of a destination whose configuration
// has had its defaults applied and been validated.
func PolicyFor(dc config.Destination) Policy {
	return Policy{MaxAttempts: dc.Retry.MaxAttempts, Backoff: redelivery.ConsumerBackoff(dc.Retry.Backoff, dc.Retry.MaxAttempts)}
}

// Step is the BackOff step that applies after delivery number attempt:
// how long JetStream waits for it before redelivering.
func (p Policy) Step(attempt int) time.Duration {
	return p.Backoff[min(max(attempt, 1)-1, len(p.Backoff)-1)]
}

// Attempt describes the delivery the result is of.
type Attempt struct {
	// Number is the delivery count, from 1 (JetStream's NumDelivered).
	Number int
	// Interrupted is set when the attempt's context ended (the shutdown
	// grace ran out) before it finished.
	Interrupted bool
}

// Action is what to do with the message, and what to record about it.
type Action struct {
	Kind Kind
	// Final is set when no further attempt follows this one (delivered,
	// permanent failure, or out of attempts): the attempt's audit record
	// says so. Unset for HandBack, which records nothing.
	Final bool
	// LastDelivery is set when this was the event's last allowed delivery:
	// a dead letter that cannot be stored now will not get another
	// delivery to be stored on.
	LastDelivery bool
	// Reason is the dead letter's reason (DeadLetter only).
	Reason switchyardv1.DeadLetterReason
	// RetryIn is when the next attempt is due (Redeliver, NakWithDelay).
	RetryIn time.Duration
	// NakDelay is the delay to nak with (NakWithDelay only); see NakDelay.
	NakDelay time.Duration
}

// Decide is what to do with a message after an attempt ended with res.
func Decide(res delivery.Result, at Attempt, p Policy) Action {
	last := at.Number >= p.MaxAttempts
	switch {
	case at.Interrupted && !res.Delivered():
		return Action{Kind: HandBack, LastDelivery: last}
	case res.Delivered():
		return Action{Kind: Ack, Final: true, LastDelivery: last}
	case !res.Retryable():
		return Action{Kind: DeadLetter, Final: true, LastDelivery: last,
			Reason: switchyardv1.DeadLetterReason_DEAD_LETTER_REASON_PERMANENT_FAILURE}
	case last:
		return Action{Kind: DeadLetter, Final: true, LastDelivery: true,
			Reason: switchyardv1.DeadLetterReason_DEAD_LETTER_REASON_MAX_ATTEMPTS}
	}
	next := p.Step(at.Number)
	if res.RetryAfter > next {
		// The destination asked for a longer pause than the schedule:
		// honour it, never retry sooner.
		return Action{Kind: NakWithDelay, RetryIn: res.RetryAfter, NakDelay: NakDelay(p.Backoff, at.Number, res.RetryAfter)}
	}
	return Action{Kind: Redeliver, RetryIn: next}
}

// NakDelay is the delay to nak delivery number attempt with so that it is
// redelivered wait from now, on a consumer with this BackOff.
//
// The server (nats-server consumer.go, processNak and checkPending) does
// not redeliver a nak'd message after the delay it was given: it sets the
// message's timestamp to now - AckWait + delay, and redelivers it once
// now - timestamp reaches the BackOff step of its delivery count. With
// AckWait = BackOff[0] that is delay + BackOff[n-1] - BackOff[0] after the
// nak, longer than asked by the growth of the schedule (a 2m Retry-After on
// the third attempt of the default schedule would wait 2m + 2m - 10s).
// Subtracting that growth gives the wait asked for.
func NakDelay(backoff []time.Duration, attempt int, wait time.Duration) time.Duration {
	step := Policy{Backoff: backoff}.Step(attempt)
	return max(wait-step+backoff[0], time.Millisecond)
}
