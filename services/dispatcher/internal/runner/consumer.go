package runner

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/pkg/destinations"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/topology"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
)

// cons is the destination's consumer handle.
func (dest *destination) cons() jetstream.Consumer {
	dest.consumerMu.RLock()
	defer dest.consumerMu.RUnlock()
	return dest.consumer
}

func (dest *destination) setConsumer(c jetstream.Consumer) {
	_, created := dest.d.inc.Get()
	dest.consumerMu.Lock()
	dest.consumer = c
	dest.streamCreated = created
	dest.consumerMu.Unlock()
	dest.noteAckFloor(c.CachedInfo())
}

// noteAckFloor remembers the consumer's ack floor from a fresh info.
func (dest *destination) noteAckFloor(info *jetstream.ConsumerInfo) {
	if info != nil {
		dest.ackFloor.Store(info.AckFloor.Stream)
	}
}

// recoverConsumer recreates the destination's consumer if it no longer
// exists (an operator or `switchyard destinations prune` removed it while
// this replica is configured with the destination), and reports whether
// the fetch loop can go on at once. The new consumer starts after the last
// ack floor this replica saw, so events handed out since are delivered
// again (duplicates the partner drops by Idempotency-Key) and none stored
// meanwhile is skipped. If EVENTS itself was recreated, it starts at the
// new stream's first event.
func (dest *destination) recoverConsumer(ctx context.Context, cause error) bool {
	dest.recoverMu.Lock()
	defer dest.recoverMu.Unlock()
	name := ConsumerName(dest.cfg.Name)
	_, err := dest.d.js.Consumer(ctx, natsx.StreamEvents, name)
	if err == nil || !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return false // it exists (a leader change, say): the usual retry
	}
	if _, err := dest.d.inc.Read(ctx, dest.d.js, dest.d.cfg.Logger); err != nil {
		dest.log.ErrorContext(ctx, "the destination's consumer is gone and EVENTS cannot be read", slog.Any("error", err))
		return false
	}
	// Not Read's answer: that says whether this call saw the
	// change first, and another destination's may have.
	_, streamCreated := dest.d.inc.Get()
	dest.consumerMu.RLock()
	recreatedStream := !streamCreated.Equal(dest.streamCreated)
	dest.consumerMu.RUnlock()
	cc := topology.DestinationConsumer(dest.cfg).Config
	from := dest.ackFloor.Load() + 1
	if recreatedStream {
		cc.DeliverPolicy = jetstream.DeliverAllPolicy
		from = 1
	} else {
		cc.DeliverPolicy, cc.OptStartSeq = jetstream.DeliverByStartSequencePolicy, from
	}
	if dest.breaker != nil {
		// Still paused while the breaker is open.
		if c, _ := dest.breaker.View(); c.State == switchyardv1.CircuitState_CIRCUIT_STATE_OPEN && c.OpenUntil.After(time.Now()) {
			cc.PauseUntil = &c.OpenUntil
		}
	}
	created, err := destinations.CreateIfMissing(ctx, dest.d.js, cc)
	if err != nil {
		dest.log.ErrorContext(ctx, "the destination's consumer is gone and could not be recreated", slog.Any("error", err))
		return false
	}
	cons, err := dest.d.js.Consumer(ctx, natsx.StreamEvents, name)
	if err != nil {
		dest.log.ErrorContext(ctx, "the destination's recreated consumer cannot be opened", slog.Any("error", err))
		return false
	}
	dest.setConsumer(cons)
	if !created {
		return true // another replica (or this one's other loop) was first
	}
	dest.log.ErrorContext(ctx, "the destination's consumer was deleted while this replica delivers to it; recreated it. "+
		"Events handed out since its last known ack floor are delivered again; pending retries restart their schedule. "+
		"Remove a destination from every replica's configuration before pruning its consumer",
		slog.String("consumer", name), slog.Uint64("from_stream_seq", from), slog.Bool("events_recreated", recreatedStream),
		slog.Any("noticed_by", cause))
	dest.d.metrics.consumerRecreated.WithLabelValues(dest.cfg.Name).Inc()
	return true
}
