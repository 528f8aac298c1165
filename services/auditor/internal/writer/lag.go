package writer

import (
	"context"
	"log/slog"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/switchyard/switchyard/pkg/natsx"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
)

// Lag is the writer's backlog at one moment.
type Lag struct {
	// PendingRecords and PendingEvents wait in AUDIT (and DEAD_LETTERS)
	// and EVENTS (not yet delivered to the writer, or delivered and not yet
	// acknowledged).
	PendingRecords uint64
	PendingEvents  uint64
	// OldestAge is how long the oldest item being written has waited.
	OldestAge time.Duration
	// FailingSince is when writes started failing; zero while they work.
	FailingSince time.Time
	LastError    string
}

// Behind reports whether the lag is worth telling on-call about.
func (l Lag) Behind(now time.Time, threshold time.Duration) bool {
	return (!l.FailingSince.IsZero() && now.Sub(l.FailingSince) >= threshold) || l.OldestAge >= threshold
}

// Lag measures the backlog now.
func (w *Writer) Lag(ctx context.Context) (Lag, error) {
	var l Lag
	for _, s := range streams {
		cons, err := w.js.Consumer(ctx, s.stream, s.consumer)
		if err != nil {
			return l, err
		}
		info, err := cons.Info(ctx)
		if err != nil {
			return l, err
		}
		n := info.NumPending + uint64(max(info.NumAckPending, 0))
		w.m.pending.WithLabelValues(s.stream).Set(float64(n))
		if s.stream == natsx.StreamEvents {
			l.PendingEvents += n
		} else {
			l.PendingRecords += n
		}
	}
	now := w.cfg.Now()
	w.mu.Lock()
	l.FailingSince, l.LastError = w.failingSince, w.lastError
	for _, t := range w.oldest {
		l.OldestAge = max(l.OldestAge, now.Sub(t))
	}
	w.mu.Unlock()
	if w.cfg.StoreState != nil {
		// A store that cannot be opened fails every write, whether or not
		// there is anything to write.
		if since, err := w.cfg.StoreState(); !since.IsZero() {
			if l.FailingSince.IsZero() || since.Before(l.FailingSince) {
				l.FailingSince = since
			}
			if err != nil {
				l.LastError = err.Error()
			}
		}
	}
	if l.FailingSince.IsZero() {
		l.LastError = ""
		w.m.failing.Set(0)
	} else {
		w.m.failing.Set(now.Sub(l.FailingSince).Seconds())
	}
	w.m.oldest.Set(l.OldestAge.Seconds())
	return l, nil
}

// monitor measures the lag every LagInterval. While the writer is behind
// it sends an AuditLag record each time (the notifier's AuditLag rule fires
// on them); when it has caught up (writes work and nothing waits long) it
// sends one with caught_up set.
func (w *Writer) monitor(ctx context.Context) {
	tick := time.NewTicker(w.cfg.LagInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		l, err := w.Lag(ctx)
		if err != nil {
			if ctx.Err() == nil {
				w.cfg.Logger.WarnContext(ctx, "could not measure the audit writer's lag", slog.Any("error", err))
			}
			continue
		}
		w.report(ctx, l)
	}
}

func (w *Writer) report(ctx context.Context, l Lag) {
	now := w.cfg.Now()
	behind := l.Behind(now, w.cfg.LagThreshold)
	w.mu.Lock()
	was := w.behind
	w.behind = behind
	w.mu.Unlock()
	if behind {
		w.m.behind.Set(1)
	} else {
		w.m.behind.Set(0)
	}
	if !behind && !was {
		return
	}
	lag := &switchyardv1.AuditLag{
		PendingRecords: l.PendingRecords,
		PendingEvents:  l.PendingEvents,
		OldestAge:      durationpb.New(l.OldestAge),
		LastError:      l.LastError,
		CaughtUp:       !behind,
	}
	if !l.FailingSince.IsZero() {
		lag.FailingSince = timestamppb.New(l.FailingSince)
	}
	attrs := []any{slog.Uint64("pending_records", l.PendingRecords), slog.Uint64("pending_events", l.PendingEvents),
		slog.Duration("oldest_age", l.OldestAge), slog.String("last_error", l.LastError)}
	if behind {
		w.cfg.Logger.WarnContext(ctx, "audit writer is behind", attrs...)
	} else {
		w.cfg.Logger.InfoContext(ctx, "audit writer caught up", attrs...)
	}
	if w.cfg.Audit == nil {
		return
	}
	rec := &switchyardv1.AuditRecord{Detail: &switchyardv1.AuditRecord_AuditLag{AuditLag: lag}}
	if err := w.cfg.Audit.Emit(ctx, rec); err != nil {
		w.cfg.Logger.WarnContext(ctx, "AuditLag record not sent", slog.Any("error", err))
		if !behind {
			// Send the caught_up again next time: the notifier must not be
			// left with a firing AuditLag.
			w.mu.Lock()
			w.behind = true
			w.mu.Unlock()
		}
		return
	}
	w.m.lagEmits.Inc()
}
