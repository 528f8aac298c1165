package engine

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/notifier/internal/alerting"
	"github.com/switchyard/switchyard/services/notifier/internal/rules"
	"github.com/switchyard/switchyard/services/notifier/internal/series"
)

// republishGrace is how long a message may wait to be published by the
// replica that made it before another replica publishes it.
const republishGrace = 30 * time.Second

// seriesIdle is how long a series with no alert is kept after its last
// record.
const seriesIdle = 24 * time.Hour

// evaluateLoop evaluates every rule each evaluation interval (rule time)
// and after every flush.
func (e *Engine) evaluateLoop(ctx context.Context) error {
	tick := e.clock.NewTicker(e.cfg.Rules.Alerts.EvaluationInterval.D())
	defer tick.Stop()
	for {
		e.evaluate(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.Chan():
		case <-e.dirty:
		}
	}
}

// evaluate is one pass over every series and alert.
func (e *Engine) evaluate(ctx context.Context) {
	e.started.Add(1)
	defer e.finished.Add(1)
	now := e.clock.Now()
	all, alerts := e.store.snapshot()
	prior := func(rule string, labels map[string]string) *switchyardv1.Alert {
		return e.store.alert(alerting.Fingerprint(rule, labels))
	}
	var conds []rules.Condition
	covered := map[string]bool{}
	for _, s := range all {
		for _, c := range rules.Evaluate(e.cfg.Rules, s, prior, now) {
			conds = append(conds, c)
			covered[alerting.Fingerprint(c.Rule, c.Labels)] = true
		}
	}
	for _, a := range alerts {
		if !covered[a.GetFingerprint()] {
			conds = append(conds, rules.Cleared(e.cfg.Rules, a))
		}
	}
	// PartnerDown first: while it fires it mutes its destination's other
	// alerts, and they should see it in the same pass.
	sort.SliceStable(conds, func(i, j int) bool {
		return conds[i].Rule == rules.PartnerDown && conds[j].Rule != rules.PartnerDown
	})
	for _, c := range conds {
		if ctx.Err() != nil {
			return
		}
		if err := e.process(ctx, c, now); err != nil {
			e.log.WarnContext(ctx, "alert not evaluated; will retry", slog.String("rule", c.Rule), slog.Any("labels", c.Labels), slog.Any("error", err))
		}
	}
	e.tidy(ctx, all, now)
}

// made is a message decided in an alert update, to publish once the update
// is stored.
type made struct {
	sender string
	seq    uint64
	data   []byte
}

// process applies one condition to its alert and makes the messages due.
func (e *Engine) process(ctx context.Context, c rules.Condition, now time.Time) error {
	fp := alerting.Fingerprint(c.Rule, c.Labels)
	cur := e.store.alert(fp)
	if cur == nil && !c.Firing {
		return nil
	}
	var out []made
	a, wrote, err := update(ctx, e.store, alerting.Key(fp), func(a *switchyardv1.Alert) (*switchyardv1.Alert, bool) {
		out = out[:0]
		a, changed := alerting.Step(a, c, now)
		if a == nil {
			return nil, false
		}
		if e.muted(a, now) {
			return a, changed
		}
		for _, s := range e.cfg.Senders {
			kind := alerting.Next(a, s.Name(), c, now, e.settings)
			if kind == "" {
				continue
			}
			before := a.GetSenders()[s.Name()].GetHandledCount()
			p := alerting.MakePending(a, s.Name(), kind, c.Count, now)
			p.Notification, _ = proto.Marshal(e.render(a, c, p, before))
			out = append(out, made{sender: s.Name(), seq: p.Sequence, data: p.Notification})
			changed = true
		}
		return a, changed
	})
	if err != nil {
		return err
	}
	if wrote {
		for _, m := range out {
			if err := e.publish(ctx, a, m); err != nil {
				e.log.WarnContext(ctx, "alert message not published; another pass will", slog.String("fingerprint", fp), slog.Any("error", err))
			}
		}
	}
	return nil
}

// muted reports whether a silence or a firing PartnerDown of the same
// destination mutes a.
func (e *Engine) muted(a *switchyardv1.Alert, now time.Time) bool {
	labels := map[string]string{"rule": a.GetRule(), "severity": a.GetSeverity()}
	for k, v := range a.GetLabels() {
		labels[k] = v
	}
	if e.silenced.Muting(labels, now) != "" {
		return true
	}
	dest := a.GetLabels()["destination"]
	if a.GetRule() == rules.PartnerDown || dest == "" {
		return false
	}
	return alerting.Firing(e.store.alert(alerting.Fingerprint(rules.PartnerDown, map[string]string{"destination": dest})))
}

// publish stores a message in NOTIFICATIONS, then records that it did.
func (e *Engine) publish(ctx context.Context, a *switchyardv1.Alert, m made) error {
	fp := a.GetFingerprint()
	msg := nats.NewMsg("notify." + m.sender + "." + fp)
	msg.Header.Set(nats.MsgIdHdr, fmt.Sprintf("%s.%s.%d", fp, m.sender, m.seq))
	msg.Data = m.data
	if _, err := e.js.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("publish to %s: %w", StreamNotifications, err)
	}
	_, _, err := update(ctx, e.store, alerting.Key(fp), func(a *switchyardv1.Alert) (*switchyardv1.Alert, bool) {
		p := alerting.Pending(a, m.sender, m.seq)
		if p == nil || p.Published {
			return a, false
		}
		p.Published = true
		p.Notification = nil // in the stream now; the state need not carry it
		return a, true
	})
	return err
}

// tidy publishes messages whose maker died before it could, deletes
// resolved alerts with nothing left to send, and series nobody needs, and
// updates the firing gauge.
func (e *Engine) tidy(ctx context.Context, all []*switchyardv1.Series, now time.Time) {
	_, alerts := e.store.snapshot()
	firing := map[string]int{}
	inUse := map[string]bool{}
	for _, a := range alerts {
		if alerting.Firing(a) {
			firing[a.GetRule()]++
		}
		for k, v := range a.GetLabels() {
			inUse[k+"="+v] = true
		}
		for name, v := range a.GetSenders() {
			p := v.GetPending()
			if p != nil && !p.Published && now.Sub(p.GetCreatedAt().AsTime()) >= republishGrace && len(p.Notification) > 0 {
				if err := e.publish(ctx, a, made{sender: name, seq: p.Sequence, data: p.Notification}); err != nil {
					e.log.WarnContext(ctx, "alert message not republished", slog.String("fingerprint", a.GetFingerprint()), slog.Any("error", err))
				}
			}
		}
		if alerting.Settled(a, e.senderNames(), now, e.settings) {
			fp := a.GetFingerprint()
			_, _, err := update(ctx, e.store, alerting.Key(fp), func(cur *switchyardv1.Alert) (*switchyardv1.Alert, bool) {
				if !alerting.Settled(cur, e.senderNames(), now, e.settings) {
					return cur, false
				}
				return nil, true
			})
			if err != nil {
				e.log.WarnContext(ctx, "resolved alert not deleted", slog.String("fingerprint", fp), slog.Any("error", err))
			}
		}
	}
	for _, rule := range []string{rules.DeliveryDeadLettered, rules.PartnerDown, rules.PartnerErrorRateHigh, rules.PartnerLatencyHigh,
		rules.CredentialsFailing, rules.SignatureFailures, rules.BacklogGrowing, rules.AuditLag} {
		e.m.firing.WithLabelValues(rule).Set(float64(firing[rule]))
	}
	for _, s := range all {
		label := map[string]string{series.KindDestination: "destination", series.KindSource: "source"}[s.GetKind()]
		if inUse[label+"="+s.GetName()] || now.Sub(s.GetUpdatedAt().AsTime()) < seriesIdle {
			continue
		}
		key := series.Key(s.GetKind(), s.GetName())
		_, _, _ = update(ctx, e.store, key, func(cur *switchyardv1.Series) (*switchyardv1.Series, bool) {
			if cur == nil || now.Sub(cur.GetUpdatedAt().AsTime()) < seriesIdle {
				return cur, false
			}
			return nil, true
		})
	}
}
