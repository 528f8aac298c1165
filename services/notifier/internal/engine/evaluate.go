package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/publish"
	"github.com/switchyard/switchyard/pkg/topology"
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
	if every := e.cfg.AuditorCheckInterval; every > 0 && now.Sub(e.auditorChecked) >= every {
		e.auditorChecked = now
		e.observeAuditor(ctx, now)
	}
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

// notifySubject is the NOTIFICATIONS subject of an alert's messages to a
// sender.
func notifySubject(fp, sender string) string { return "notify." + sender + "." + fp }

// notifyID is the Nats-Msg-Id of one message.
func notifyID(fp, sender string, seq uint64) string { return fmt.Sprintf("%s.%s.%d", fp, sender, seq) }

// publish stores a message in NOTIFICATIONS, then records that it did. The
// state keeps the message's body, so that it can be made again if the
// stream loses it.
func (e *Engine) publish(ctx context.Context, a *switchyardv1.Alert, m made) error {
	fp := a.GetFingerprint()
	msg := nats.NewMsg(notifySubject(fp, m.sender))
	msg.Header.Set(nats.MsgIdHdr, notifyID(fp, m.sender, m.seq))
	msg.Data = m.data
	if _, err := publish.Msg(ctx, e.js, msg); err != nil {
		return fmt.Errorf("publish to %s: %w", topology.StreamNotifications, err)
	}
	_, _, err := update(ctx, e.store, alerting.Key(fp), func(a *switchyardv1.Alert) (*switchyardv1.Alert, bool) {
		p := alerting.Pending(a, m.sender, m.seq)
		if p == nil || p.Published {
			return a, false
		}
		p.Published = true
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
	looked := map[string]time.Time{}
	for _, a := range alerts {
		if alerting.Firing(a) {
			firing[a.GetRule()]++
		}
		for k, v := range a.GetLabels() {
			inUse[k+"="+v] = true
		}
		for name, v := range a.GetSenders() {
			p := v.GetPending()
			age := now.Sub(p.GetCreatedAt().AsTime())
			switch {
			case p == nil:
			case !p.Published && age >= republishGrace && len(p.Notification) > 0:
				if err := e.publish(ctx, a, made{sender: name, seq: p.Sequence, data: p.Notification}); err != nil {
					e.log.WarnContext(ctx, "alert message not republished", slog.String("fingerprint", a.GetFingerprint()), slog.Any("error", err))
				}
			case p.Published && age >= lostAfter && slices.Contains(e.names, name):
				// Still pending long after it was published: look for it in
				// the stream, at most once per lostAfter.
				id := notifyID(a.GetFingerprint(), name, p.Sequence)
				if at, ok := e.lookedFor[id]; ok && now.Sub(at) < lostAfter {
					looked[id] = at
					continue
				}
				looked[id] = now
				e.recoverLost(ctx, a, name, p.Sequence, now)
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
	e.lookedFor = looked
	for _, rule := range rules.Names {
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

// lostAfter is how long a published message may stay pending before tidy
// looks for it in NOTIFICATIONS: the senders' ack wait, past which a
// message that is there has been delivered at least once.
const lostAfter = topology.SenderAckWait

// recoverLost makes a sender's pending message of an alert again if
// NOTIFICATIONS no longer holds it (its max age passed while the receiver
// was down, the stream was purged, or an older notifier acknowledged it
// without recording its outcome): otherwise it would stay pending for good,
// and no other message about the alert would ever go to that sender. The
// message is made again under a new sequence number, so that the stream's
// duplicate window cannot swallow it and a copy of the old one, should it
// turn up, is dropped as stale; the compare-and-set on the alert makes one
// replica do it. A message whose body the state does not hold (written by
// an older notifier) cannot be made again: it is given up, logged and
// audited, and the alert goes on.
func (e *Engine) recoverLost(ctx context.Context, a *switchyardv1.Alert, name string, seq uint64, now time.Time) {
	fp := a.GetFingerprint()
	log := e.log.With(slog.String("sender", name), slog.String("rule", a.GetRule()), slog.Any("labels", a.GetLabels()),
		slog.String("fingerprint", fp), slog.Uint64("sequence", seq))
	there, err := e.inStream(ctx, fp, name, seq)
	if err != nil {
		log.WarnContext(ctx, "pending alert message not looked for in the stream; will retry", slog.Any("error", err))
		return
	}
	if there {
		return
	}
	var again *made
	var gaveUp *switchyardv1.PendingNotification
	cur, wrote, err := update(ctx, e.store, alerting.Key(fp), func(cur *switchyardv1.Alert) (*switchyardv1.Alert, bool) {
		again, gaveUp = nil, nil
		p := alerting.Pending(cur, name, seq)
		if p == nil || !p.Published {
			return cur, false
		}
		var n switchyardv1.Notification
		if len(p.Notification) == 0 || proto.Unmarshal(p.Notification, &n) != nil || n.GetAlert() == nil {
			gaveUp = proto.CloneOf(p)
			return cur, alerting.Done(cur, name, seq, false, now)
		}
		cur.LastSequence++
		n.Alert.Sequence = cur.LastSequence
		data, err := proto.Marshal(&n)
		if err != nil {
			return cur, false
		}
		p.Sequence, p.Published, p.CreatedAt, p.Notification = cur.LastSequence, false, timestamppb.New(now), data
		again = &made{sender: name, seq: p.Sequence, data: data}
		return cur, true
	})
	switch {
	case err != nil:
		log.WarnContext(ctx, "lost alert message not made again; will retry", slog.Any("error", err))
	case !wrote:
	case again != nil:
		e.m.notifications.WithLabelValues(name, outcomeRecovered).Inc()
		log.WarnContext(ctx, "alert message lost from the NOTIFICATIONS stream before it was sent; sending it again", slog.Uint64("new_sequence", again.seq))
		if err := e.publish(ctx, cur, *again); err != nil {
			log.WarnContext(ctx, "alert message not published; another pass will", slog.Any("error", err))
		}
	case gaveUp != nil:
		e.m.notifications.WithLabelValues(name, outcomeGivenUp).Inc()
		const why = "the message was lost from the NOTIFICATIONS stream before it was sent, and the alert's state does not hold it to send again"
		log.ErrorContext(ctx, "alert message given up: "+why)
		state := switchyardv1.AlertState_ALERT_STATE_FIRING
		if gaveUp.GetKind() == alerting.KindResolved {
			state = switchyardv1.AlertState_ALERT_STATE_RESOLVED
		}
		e.auditAlert(ctx, log, &switchyardv1.AlertNotification{
			Fingerprint: fp, Rule: cur.GetRule(), Labels: cur.GetLabels(), State: state, Severity: gaveUp.GetSeverity(),
			Summary: describe(cur), Sender: name, Error: why, Count: gaveUp.GetCount(), Kind: gaveUp.GetKind(),
			Sequence: seq, Episode: gaveUp.GetEpisode(), FirstSeen: cur.GetFirstSeen(),
		})
	}
}

// inStream reports whether NOTIFICATIONS holds message seq of an alert to
// a sender. An alert has one message in flight per sender, so the latest
// message on its subject is that one, if it is there at all.
func (e *Engine) inStream(ctx context.Context, fp, sender string, seq uint64) (bool, error) {
	m, err := e.notifications.GetLastMsgForSubject(ctx, notifySubject(fp, sender))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read %s: %w", topology.StreamNotifications, err)
	}
	return m.Header.Get(nats.MsgIdHdr) == notifyID(fp, sender, seq), nil
}

// auditorService names the audit series of the auditor: its own AuditLag
// records carry this service name, and the notifier's reading of its
// consumer goes to the same series, so that the AuditLag rule sees both.
const auditorService = "auditor"

// observeAuditor reads how far behind the auditor's durable consumer on
// AUDIT is and stores it in the auditor's audit series: the AuditLag rule's
// second source, which needs no auditor to be running.
func (e *Engine) observeAuditor(ctx context.Context, now time.Time) {
	lag, err := e.auditorBacklog(ctx, now)
	if err != nil {
		e.log.WarnContext(ctx, "the auditor's consumer on AUDIT not read; will retry", slog.Any("error", err))
		return
	}
	e.m.auditorPending.Set(float64(lag.GetPendingRecords()))
	e.m.auditorOldestAge.Set(lag.GetOldestAge().AsDuration().Seconds())
	if lag == nil {
		return // no auditor consumer: nothing waits for an auditor
	}
	d := series.New(series.KindAudit, auditorService)
	d.AuditorConsumer, d.AuditorConsumerAt = lag, timestamppb.New(now)
	lim := e.cfg.Rules.Limits(series.KindAudit, auditorService)
	if _, _, err := update(ctx, e.store, series.Key(series.KindAudit, auditorService), func(cur *switchyardv1.Series) (*switchyardv1.Series, bool) {
		return series.Merge(cur, d, now, lim), true
	}); err != nil {
		e.log.WarnContext(ctx, "the auditor's backlog not stored; will retry", slog.Any("error", err))
	}
}

// auditorBacklog is what the auditor's consumer has not acknowledged: how
// many records, and the age of the oldest (the first record after its ack
// floor), by the record's own time. It is nil if there is no such consumer.
func (e *Engine) auditorBacklog(ctx context.Context, now time.Time) (*switchyardv1.AuditLag, error) {
	cons, err := e.js.Consumer(ctx, natsx.StreamAudit, natsx.ConsumerAuditor)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read consumer %s on %s: %w", natsx.ConsumerAuditor, natsx.StreamAudit, err)
	}
	info := cons.CachedInfo()
	lag := &switchyardv1.AuditLag{PendingRecords: info.NumPending + uint64(max(info.NumAckPending, 0))}
	if lag.PendingRecords == 0 {
		lag.CaughtUp = true
		return lag, nil
	}
	if e.audits == nil {
		if e.audits, err = e.js.Stream(ctx, natsx.StreamAudit); err != nil {
			return nil, fmt.Errorf("open stream %s: %w", natsx.StreamAudit, err)
		}
	}
	m, err := e.audits.GetMsg(ctx, info.AckFloor.Stream+1, jetstream.WithGetMsgSubject("audit.>"))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return lag, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the oldest unacknowledged record of %s: %w", natsx.StreamAudit, err)
	}
	at := m.Time
	if rec, err := auditlog.Decode(m.Data); err == nil && rec.GetTime() != nil {
		at = rec.GetTime().AsTime()
	}
	if age := now.Sub(at); age > 0 {
		lag.OldestAge = durationpb.New(age)
	}
	return lag, nil
}
