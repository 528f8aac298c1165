package runner

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
)

// finishDeadLetter stores the dead letter and its audit copy, then
// terminates the message. The message is terminated only once both are
// stored: otherwise it is left unacknowledged, and this replica remembers
// the dead letter, so that the redelivery stores what is missing instead of
// sending the event again (a redelivery to another replica makes one more
// attempt first). On the event's last delivery there is no redelivery:
// this replica keeps the message alive and retries for up to
// lastDeliveryRetry (it shuts down sooner, or the store stays away:
// the worker is needed, and the reconciler takes over), since the
// reconciler knows neither the partner's answer nor its error. Both
// copies are idempotent by id, so storing one twice changes nothing.
func (dest *destination) finishDeadLetter(ctx context.Context, msg jetstream.Msg, dl *switchyardv1.DeadLetter, last bool, alive *pulse, log *slog.Logger) {
	// Owed from now on: a redelivery while this is still being stored
	// (its ack wait ran out meanwhile) must not send the event again.
	dest.owed.put(dl.StreamSeq, dl)
	_, err := dest.d.deadLetters.Write(ctx, dl, msg.Headers(), msg.Data())
	giveUp := time.Now().Add(lastDeliveryRetry)
	for wait := 250 * time.Millisecond; err != nil && last && time.Now().Add(wait).Before(giveUp); wait = min(2*wait, 5*time.Second) {
		log.WarnContext(ctx, "dead letter not stored yet on the event's last delivery; keeping the event and retrying",
			slog.String("dead_letter_id", dl.Id), slog.Duration("retry_in", wait), slog.Any("error", err))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
		if ctx.Err() != nil {
			break // shutting down: the reconciler takes over
		}
		_, err = dest.d.deadLetters.Write(ctx, dl, msg.Headers(), msg.Data())
	}
	alive.stop()
	if err != nil {
		then := "so that its redelivery stores it"
		if last {
			then = "the reconciler stores it from the MAX_DELIVERIES advisory, without the partner's answer"
		}
		log.ErrorContext(ctx, "dead letter not finished; leaving the event unacknowledged: "+then,
			slog.String("dead_letter_id", dl.Id), slog.Any("error", err))
		return
	}
	dest.owed.drop(dl.StreamSeq)
	if err := msg.TermWithReason(dl.Reason.String()); err != nil {
		log.WarnContext(ctx, "terminate after dead letter failed", slog.Any("error", err))
	}
	dest.tally.deadLettered.Add(1)
	dest.d.metrics.deadLetters.WithLabelValues(dest.cfg.Name).Inc()
	if dl.AuthFailure {
		dest.d.metrics.authDeadLetters.WithLabelValues(dest.cfg.Name).Inc()
	}
	log.WarnContext(ctx, "dead-lettered",
		slog.String("reason", dl.Reason.String()), slog.Int("status", int(dl.LastStatusCode)), slog.String("error", dl.LastError),
		slog.Bool("auth_failure", dl.AuthFailure), slog.Bool("payload_omitted", dl.PayloadOmitted))
}

// lastDeliveryRetry bounds how long a worker keeps retrying the dead
// letter of an event on its last delivery before leaving it to the
// reconciler.
const lastDeliveryRetry = 30 * time.Second

// owedDeadLetters are dead letters this replica built and is storing or
// could not finish storing, by stream sequence, until they are stored. Entries the
// event never comes back for (it went to another replica) are forgotten
// after DEAD_LETTERS' duplicate window.
type owedDeadLetters struct {
	mu sync.Mutex
	m  map[uint64]owedDeadLetter
}

type owedDeadLetter struct {
	dl *switchyardv1.DeadLetter
	at time.Time
}

// owedFor is how long an owed dead letter is remembered: DEAD_LETTERS'
// duplicate window.
const owedFor = 2 * time.Hour

func (o *owedDeadLetters) put(seq uint64, dl *switchyardv1.DeadLetter) {
	o.mu.Lock()
	defer o.mu.Unlock()
	now := time.Now()
	if o.m == nil {
		o.m = map[uint64]owedDeadLetter{}
	}
	for k, v := range o.m {
		if now.Sub(v.at) > owedFor {
			delete(o.m, k)
		}
	}
	o.m[seq] = owedDeadLetter{dl: dl, at: now}
}

func (o *owedDeadLetters) get(seq uint64) *switchyardv1.DeadLetter {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.m[seq].dl
}

func (o *owedDeadLetters) drop(seq uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.m, seq)
}
