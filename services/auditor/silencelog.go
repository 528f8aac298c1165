package auditor

import (
	"context"
	"log/slog"
	"time"

	"github.com/switchyard/switchyard/pkg/silences"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
)

// recordSilences puts every silence change in the audit log: it follows
// the silences bucket (the silence as stored is the truth, whoever wrote
// it) and publishes the SilenceChanged records each silence stands for
// (silences.Changes) to AUDIT, retrying until they are stored. Their ids
// come from the silence, so a silence seen again (after a restart, a
// reconnect, or by a second auditor) is deduplicated by JetStream and by
// the store. It returns when ctx is done.
func (a *Auditor) recordSilences(ctx context.Context) {
	log := a.cfg.Logger.With(slog.String("component", "silence log"))
	follow := func(sil *switchyardv1.Silence) {
		for _, rec := range silences.Changes(sil) {
			a.emitUntilStored(ctx, log, rec)
		}
	}
	for wait := time.Second; ; wait = min(2*wait, 30*time.Second) {
		st, err := silences.Open(ctx, a.js, a.cfg.Topology)
		if err == nil {
			err = st.Follow(ctx, log, follow) // goes on in the background until ctx is done
		}
		if err == nil || ctx.Err() != nil {
			return
		}
		log.WarnContext(ctx, "cannot watch the silences bucket yet; silence changes wait there until it can",
			slog.Any("error", err), slog.Duration("retry_in", wait))
		if !sleepCtx(ctx, wait) {
			return
		}
	}
}

// emitUntilStored publishes rec, retrying with backoff until JetStream
// stores it or ctx is done.
func (a *Auditor) emitUntilStored(ctx context.Context, log *slog.Logger, rec *switchyardv1.AuditRecord) {
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 10*time.Second) {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := a.audit.Emit(pctx, rec)
		cancel()
		if err == nil || ctx.Err() != nil {
			return
		}
		log.WarnContext(ctx, "cannot record a silence change yet; retrying", slog.String("record", rec.GetId()),
			slog.Any("error", err), slog.Duration("retry_in", wait))
		if !sleepCtx(ctx, wait) {
			return
		}
	}
}

// sleepCtx waits d, or until ctx is done (false).
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
