package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/natsx"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/notifier/internal/series"
)

// ingest reads AUDIT through the notifier's durable consumer in batches:
// it adds each batch to per-series deltas in memory, merges every delta
// into its series in KV (one compare-and-set per series per batch, not per
// record), then acknowledges the batch. Records are the rules' input: once
// merged they are safe in KV and go; the alert messages they lead to have
// their own stream.
func (e *Engine) ingest(ctx context.Context) error {
	cons, err := e.js.Consumer(ctx, natsx.StreamAudit, natsx.ConsumerNotifier)
	if err != nil {
		return fmt.Errorf("notifier: open consumer: %w", err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(2 * e.cfg.BatchSize))
	if err != nil {
		return fmt.Errorf("notifier: consume: %w", err)
	}
	for {
		first, err := it.Next(jetstream.NextContext(ctx))
		if errors.Is(err, jetstream.ErrNoHeartbeat) && ctx.Err() == nil {
			// The server's heartbeats stopped for a while (the consumer's
			// leader changed, or the connection moved to another server):
			// the iterator pulls again by itself.
			e.log.WarnContext(ctx, "missed heartbeats reading AUDIT; reading on", slog.Any("error", err))
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				handBack(it)
				return nil
			}
			it.Stop()
			return fmt.Errorf("notifier: read AUDIT: %w", err)
		}
		msgs := []jetstream.Msg{first}
		deadline := time.Now().Add(e.cfg.FlushInterval)
		for len(msgs) < e.cfg.BatchSize {
			wait := time.Until(deadline)
			if wait <= 0 {
				break
			}
			m, err := it.Next(jetstream.NextMaxWait(wait))
			if err != nil {
				break
			}
			msgs = append(msgs, m)
		}
		if !e.flush(ctx, msgs) {
			handBack(it, msgs...)
			return nil
		}
	}
}

// handBack gives unfinished messages, and those the iterator has buffered,
// back to the server at shutdown, so that another replica (or the next
// process) gets them at once instead of after the ack wait. A record handed
// back after part of its batch was merged is counted twice: shutdowns are
// rare and the rules are thresholds, so that is the better trade than
// losing it.
func handBack(it jetstream.MessagesContext, msgs ...jetstream.Msg) {
	for _, m := range msgs {
		_ = m.Nak()
	}
	it.Drain()
	for {
		m, err := it.Next(jetstream.NextMaxWait(time.Second))
		if err != nil {
			it.Stop()
			return
		}
		_ = m.Nak()
	}
}

// flush merges a batch into KV and acknowledges it. It returns false only
// when ctx ended first.
func (e *Engine) flush(ctx context.Context, msgs []jetstream.Msg) bool {
	now := e.clock.Now()
	deltas := map[string]*switchyardv1.Series{}
	good := msgs[:0:0]
	for _, m := range msgs {
		rec, err := auditlog.Decode(m.Data())
		if err != nil {
			e.log.ErrorContext(ctx, "undecodable audit record terminated", slog.String("subject", m.Subject()), slog.Any("error", err))
			_ = m.TermWithReason("undecodable")
			continue
		}
		good = append(good, m)
		kind, _ := auditlog.Kind(rec)
		e.m.records.WithLabelValues(kind).Inc()
		sk, name, ok := series.Target(rec)
		if !ok {
			continue
		}
		key := series.Key(sk, name)
		d := deltas[key]
		if d == nil {
			d = series.New(sk, name)
			deltas[key] = d
		}
		series.Apply(d, rec, now)
	}
	keys := make([]string, 0, len(deltas))
	for k := range deltas {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	wait := 100 * time.Millisecond
	lastProgress := time.Now()
	for len(keys) > 0 {
		key := keys[0]
		d := deltas[key]
		lim := e.cfg.Rules.Limits(d.Kind, d.Name)
		_, _, err := update(ctx, e.store, key, func(cur *switchyardv1.Series) (*switchyardv1.Series, bool) {
			return series.Merge(cur, d, now, lim), true
		})
		if err == nil {
			keys = keys[1:]
			continue
		}
		if ctx.Err() != nil {
			return false
		}
		e.log.WarnContext(ctx, "rule state not written; will retry", slog.String("key", key), slog.Duration("retry_in", wait), slog.Any("error", err))
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return false
		}
		wait = min(wait*2, 5*time.Second)
		// Keep the records from being redelivered while KV is away.
		if time.Since(lastProgress) > 10*time.Second {
			for _, m := range good {
				_ = m.InProgress()
			}
			lastProgress = time.Now()
		}
	}
	for _, m := range good {
		_ = m.Ack()
	}
	e.m.flushes.Inc()
	if len(deltas) > 0 {
		e.poke()
	}
	return true
}
