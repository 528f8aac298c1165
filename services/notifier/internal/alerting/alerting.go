// Package alerting is the alert lifecycle, as pure functions over the alert
// state kept in KV: an alert starts firing when its rule's condition does,
// resolves once the condition has stayed clear for the rule's resolve time,
// and for each sender the lifecycle decides which message is due (the first
// after the group wait, a digest of news at most every group interval, a
// repeat while firing, a resolved message only after a firing one was
// accepted). One message per sender is in flight at a time.
package alerting

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/notifier/internal/rules"
)

// Message kinds.
const (
	// KindFiring is the first message of an episode.
	KindFiring = "firing"
	// KindUpdate is a digest: news (more dead letters, a higher severity)
	// since the last message.
	KindUpdate = "update"
	// KindRepeat reminds that the alert still fires.
	KindRepeat = "repeat"
	// KindResolved says it recovered.
	KindResolved = "resolved"
)

// KeyPrefix starts every alert key in the state bucket.
const KeyPrefix = "alert."

// Key is the KV key of an alert.
func Key(fingerprint string) string { return KeyPrefix + fingerprint }

// Settings time the messages.
type Settings struct {
	GroupWait, GroupInterval, RepeatInterval time.Duration
	// Retention keeps a resolved, settled alert this long before it is
	// deleted.
	Retention time.Duration
}

// Fingerprint identifies an alert: a hash of its rule and labels. It is the
// dedup key senders pass on.
func Fingerprint(rule string, labels map[string]string) string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	// Length-prefixed, so that no label value can imitate another label.
	var b strings.Builder
	part := func(s string) {
		b.WriteString(strconv.Itoa(len(s)))
		b.WriteByte(':')
		b.WriteString(s)
	}
	part(rule)
	for _, k := range keys {
		part(k)
		part(labels[k])
	}
	sum := sha256.Sum256([]byte(b.String()))
	return hex.EncodeToString(sum[:12])
}

// Firing reports whether a is firing.
func Firing(a *switchyardv1.Alert) bool {
	return a.GetState() == switchyardv1.AlertState_ALERT_STATE_FIRING
}

// Step applies a condition to an alert (nil when there is none yet) and
// returns the alert, changed in place or new, and whether anything changed.
func Step(a *switchyardv1.Alert, c rules.Condition, now time.Time) (*switchyardv1.Alert, bool) {
	if !Firing(a) {
		if !c.Firing {
			return a, false
		}
		if a == nil {
			a = &switchyardv1.Alert{Fingerprint: Fingerprint(c.Rule, c.Labels), Rule: c.Rule, Labels: c.Labels}
		}
		first := now
		if !c.FirstSeen.IsZero() && c.FirstSeen.Before(now) {
			first = c.FirstSeen
		}
		a.State = switchyardv1.AlertState_ALERT_STATE_FIRING
		a.Episode++
		a.Severity = c.Severity
		a.FirstSeen = timestamppb.New(first)
		a.FiredAt = timestamppb.New(now)
		a.ClearSince, a.ResolvedAt = nil, nil
		a.BaselineSeconds = c.Baseline.Seconds()
		return a, true
	}
	changed := false
	if rules.SeverityRank(c.Severity) > rules.SeverityRank(a.Severity) {
		a.Severity = c.Severity
		changed = true
	}
	if !c.Clear {
		if a.ClearSince != nil {
			a.ClearSince = nil
			changed = true
		}
		return a, changed
	}
	since := c.ClearSince
	if since.IsZero() {
		since = now
		if a.ClearSince != nil {
			since = a.ClearSince.AsTime()
		}
	}
	if a.ClearSince == nil || !a.ClearSince.AsTime().Equal(since) {
		a.ClearSince = timestamppb.New(since)
		changed = true
	}
	if now.Sub(since) >= c.ResolveAfter {
		a.State = switchyardv1.AlertState_ALERT_STATE_RESOLVED
		a.ResolvedAt = timestamppb.New(now)
		changed = true
	}
	return a, changed
}

// Next returns the kind of message due to sender now, or "" for none. The
// caller checks silences and inhibitions first: a muted alert gets none,
// and catches up when the mute ends.
func Next(a *switchyardv1.Alert, sender string, c rules.Condition, now time.Time, s Settings) string {
	v := a.GetSenders()[sender]
	if v.GetPending() != nil {
		return ""
	}
	// An earlier episode whose page went out late (the receiver was down
	// while it fired, resolved and fired again) is told resolved first,
	// whether the alert fires again or has resolved again since, so that
	// every episode paged is resolved once.
	if v.GetEpisode() != 0 && v.GetEpisode() != a.GetEpisode() && v.GetFiringDelivered() && !v.GetResolvedHandled() {
		return KindResolved
	}
	if !Firing(a) {
		if a.GetState() == switchyardv1.AlertState_ALERT_STATE_RESOLVED && v.GetEpisode() == a.GetEpisode() && v.GetFiringDelivered() && !v.GetResolvedHandled() {
			return KindResolved
		}
		return ""
	}
	// A first message or a reminder only while the condition itself still
	// fires: an alert waiting out its resolve time ("erp fails 0%") is not
	// news to anyone who was not told it fired.
	if v.GetEpisode() != a.GetEpisode() {
		if c.Firing && now.Sub(a.GetFiredAt().AsTime()) >= s.GroupWait {
			return KindFiring
		}
		return ""
	}
	since := now.Sub(v.GetHandledAt().AsTime())
	news := (c.Digest && c.Count > v.GetHandledCount()) || rules.SeverityRank(a.GetSeverity()) > rules.SeverityRank(v.GetHandledSeverity())
	switch {
	case news && since >= s.GroupInterval:
		return KindUpdate
	case c.Firing && since >= s.RepeatInterval:
		return KindRepeat
	}
	return ""
}

// MakePending records a message for sender as in flight and returns it
// with its sequence number. A resolved message belongs to the episode the
// sender was paged for, which is the alert's current one unless it fired
// again since (Late).
func MakePending(a *switchyardv1.Alert, sender, kind string, count int64, now time.Time) *switchyardv1.PendingNotification {
	a.LastSequence++
	p := &switchyardv1.PendingNotification{
		Sequence: a.LastSequence, Kind: kind, CreatedAt: timestamppb.New(now),
		Count: count, Severity: a.GetSeverity(), Episode: a.GetEpisode(),
	}
	if a.Senders == nil {
		a.Senders = map[string]*switchyardv1.SenderView{}
	}
	v := a.Senders[sender]
	if v == nil {
		v = &switchyardv1.SenderView{}
		a.Senders[sender] = v
	}
	if kind == KindResolved && v.GetEpisode() != 0 {
		p.Episode = v.GetEpisode()
	}
	v.Pending = p
	return p
}

// Late reports whether message p is about an earlier episode than alert
// a's current one: the resolved message of an episode that ended while
// its page waited for the receiver, the alert firing again since.
func Late(a *switchyardv1.Alert, p *switchyardv1.PendingNotification) bool {
	return p.GetEpisode() != 0 && p.GetEpisode() < a.GetEpisode()
}

// Pending returns sender's in-flight message with sequence seq, or nil if
// that is not the one in flight (it was handled already, or superseded).
func Pending(a *switchyardv1.Alert, sender string, seq uint64) *switchyardv1.PendingNotification {
	p := a.GetSenders()[sender].GetPending()
	if p.GetSequence() != seq || seq == 0 {
		return nil
	}
	return p
}

// Done records that sender's message seq was accepted (delivered) or given
// up. It reports false if that message is not the one in flight.
func Done(a *switchyardv1.Alert, sender string, seq uint64, delivered bool, now time.Time) bool {
	p := Pending(a, sender, seq)
	if p == nil {
		return false
	}
	v := a.Senders[sender]
	v.Pending = nil
	v.LastDoneSequence = seq
	v.HandledAt = timestamppb.New(now)
	v.HandledCount = p.Count
	v.HandledSeverity = p.Severity
	if p.Kind == KindResolved {
		v.ResolvedHandled = true
		return true
	}
	if v.Episode != p.Episode {
		v.Episode = p.Episode
		v.FiringDelivered = false
		v.ResolvedHandled = false
	}
	v.FiringDelivered = v.FiringDelivered || delivered
	return true
}

// Settled reports whether a resolved alert has nothing left to tell any of
// senders, and has been resolved for the retention: it can be deleted.
func Settled(a *switchyardv1.Alert, senders []string, now time.Time, s Settings) bool {
	if a.GetState() != switchyardv1.AlertState_ALERT_STATE_RESOLVED || now.Sub(a.GetResolvedAt().AsTime()) < s.Retention {
		return false
	}
	for _, name := range senders {
		v := a.GetSenders()[name]
		if v.GetPending() != nil {
			return false
		}
		if v.GetEpisode() == a.GetEpisode() && v.GetFiringDelivered() && !v.GetResolvedHandled() {
			return false
		}
	}
	return true
}
