// Package rules holds the alert rules: each reads a series (see package
// series) at a moment and says whether its firing threshold is crossed,
// whether its resolve condition holds, and what on-call should read about
// it. Rules are pure functions of the series, the configuration and the
// time, so tests drive them with any clock.
package rules

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/switchyard/switchyard/pkg/config"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/notifier/internal/series"
)

// Rule names: the rule label of an alert.
const (
	DeliveryDeadLettered = "DeliveryDeadLettered"
	PartnerDown          = "PartnerDown"
	PartnerErrorRateHigh = "PartnerErrorRateHigh"
	PartnerLatencyHigh   = "PartnerLatencyHigh"
	CredentialsFailing   = "CredentialsFailing"
	SignatureFailures    = "SignatureFailures"
	BacklogGrowing       = "BacklogGrowing"
	AuditLag             = "AuditLag"
	MalformedPayloads    = "MalformedPayloads"
)

// Names are every rule.
var Names = []string{DeliveryDeadLettered, PartnerDown, PartnerErrorRateHigh, PartnerLatencyHigh,
	CredentialsFailing, SignatureFailures, BacklogGrowing, AuditLag, MalformedPayloads}

// Severities.
const (
	Warning  = "warning"
	Critical = "critical"
)

// SeverityRank orders severities.
func SeverityRank(s string) int {
	switch s {
	case Critical:
		return 2
	case Warning:
		return 1
	}
	return 0
}

// Field is one label/value pair of a message.
type Field struct{ Label, Value string }

// Condition is what one rule sees for one destination, source or service at
// one moment.
type Condition struct {
	Rule   string
	Labels map[string]string
	// Firing: the firing threshold is crossed.
	Firing bool
	// Clear: the resolve condition holds. A rule with hysteresis can be
	// neither firing nor clear.
	Clear bool
	// ClearSince is when the resolve condition began, when the data says
	// (the last dead letter, the breaker closing); zero means "since the
	// first evaluation that saw it clear".
	ClearSince time.Time
	// ResolveAfter is how long the condition must stay clear.
	ResolveAfter time.Duration
	// FirstSeen is when the condition began, if the data says.
	FirstSeen time.Time
	Severity  string
	// Count is the number the message leads with (dead letters in the
	// run, failures in the window).
	Count int64
	// Digest: a higher Count is news worth a message (dead letters).
	Digest bool
	// DigestSummary titles a digest, given the new count and the total.
	DigestSummary func(more, total int64) string
	// Baseline is the latency baseline, frozen in the alert when it fires.
	Baseline time.Duration
	// Summary is one line for the title.
	Summary string
	Fields  []Field
	// LinkPath is the query API path (with query) of the event or
	// destination, relative to the public base URL.
	LinkPath, LinkText string
}

// Config is what the rules read from the configuration.
type Config struct {
	Alerts config.Alerts
	// Timeouts are the destinations' HTTP timeouts.
	Timeouts map[string]time.Duration
	// DownAfter is, per polled source, how long without a successful poll
	// round PartnerDown waits (WithSources); a source not in it is not
	// polled, and PartnerDown is off for it.
	DownAfter map[string]time.Duration
}

// NewConfig builds a Config from the configuration file's sections.
func NewConfig(alerts config.Alerts, dests []config.Destination) Config {
	c := Config{Alerts: alerts.WithDefaults(), Timeouts: map[string]time.Duration{}}
	for _, d := range dests {
		c.Timeouts[d.Name] = d.Timeout.D()
	}
	return c
}

// WithSources adds what the rules need to know of the sources: the polled
// ones, and how long each may go without a successful round.
func (c Config) WithSources(sources []config.Source) Config {
	c.DownAfter = map[string]time.Duration{}
	for _, s := range sources {
		if s.Poll == nil {
			continue
		}
		after := c.Alerts.ForSource(s.Name).SourceDown.After.D()
		if after == 0 {
			after = s.Poll.DownAfter()
		}
		c.DownAfter[s.Name] = after
	}
	return c
}

// Limits says how much history a series needs for its rules.
func (c Config) Limits(kind, name string) series.Limits {
	switch kind {
	case series.KindDestination:
		r := c.Alerts.ForDestination(name)
		return series.Limits{
			Window:         max(r.ErrorRate.Window.D(), r.Latency.Window.D(), r.Credentials.Window.D()),
			BaselineWindow: r.Latency.BaselineWindow.D(),
			RunGap:         r.DeadLettered.ResolveAfter.D(),
		}
	case series.KindSource:
		r := c.Alerts.ForSource(name)
		return series.Limits{Window: r.SignatureFailures.Window.D(), MalformedGap: r.MalformedPayloads.QuietAfter.D()}
	}
	return series.Limits{}
}

// Prior gives a rule the alert it raised before, if any: the latency rule
// keeps the baseline it fired with.
type Prior func(rule string, labels map[string]string) *switchyardv1.Alert

// Evaluate runs every rule that applies to s.
func Evaluate(c Config, s *switchyardv1.Series, prior Prior, now time.Time) []Condition {
	switch s.GetKind() {
	case series.KindDestination:
		r := c.Alerts.ForDestination(s.GetName())
		timeout, ok := c.Timeouts[s.GetName()]
		if !ok {
			timeout = config.DefaultTimeout.D()
		}
		return []Condition{
			deadLettered(r.DeadLettered, s, now),
			partnerDown(r.PartnerDown, s),
			errorRate(r.ErrorRate, s, now),
			latency(r.Latency, timeout, s, prior, now),
			credentials(r.Credentials, s, now),
			backlog(r.Backlog, s),
		}
	case series.KindSource:
		r := c.Alerts.ForSource(s.GetName())
		after, polled := c.DownAfter[s.GetName()]
		return []Condition{signatureFailures(r.SignatureFailures, s, now), sourceDown(r.SourceDown, after, polled, s, now),
			malformedPayloads(r.MalformedPayloads, s, now)}
	case series.KindAudit:
		return []Condition{auditLag(c.Alerts.Rules.AuditLag, s)}
	}
	return nil
}

// Cleared is the condition of an alert whose series is gone (or whose rule
// was turned off): it resolves after the rule's resolve time.
func Cleared(c Config, a *switchyardv1.Alert) Condition {
	if src, ok := a.GetLabels()["source"]; ok && a.GetRule() == PartnerDown {
		after := c.Alerts.ForSource(src).SourceDown.ResolveAfter
		return Condition{Rule: a.GetRule(), Labels: a.GetLabels(), Clear: true, ResolveAfter: after.D(), Severity: a.GetSeverity()}
	}
	d := c.Alerts.ForDestination(a.GetLabels()["destination"])
	after := map[string]config.Duration{
		DeliveryDeadLettered: d.DeadLettered.ResolveAfter,
		PartnerDown:          d.PartnerDown.ResolveAfter,
		PartnerErrorRateHigh: d.ErrorRate.ResolveAfter,
		PartnerLatencyHigh:   d.Latency.ResolveAfter,
		CredentialsFailing:   d.Credentials.ResolveAfter,
		BacklogGrowing:       d.Backlog.ResolveAfter,
		SignatureFailures:    c.Alerts.ForSource(a.GetLabels()["source"]).SignatureFailures.ResolveAfter,
		AuditLag:             c.Alerts.Rules.AuditLag.ResolveAfter,
		MalformedPayloads:    c.Alerts.ForSource(a.GetLabels()["source"]).MalformedPayloads.ResolveAfter,
	}[a.GetRule()]
	return Condition{Rule: a.GetRule(), Labels: a.GetLabels(), Clear: true, ResolveAfter: after.D(), Severity: a.GetSeverity()}
}

func destLabels(s *switchyardv1.Series) map[string]string {
	return map[string]string{"destination": s.GetName()}
}

func off(rule string, labels map[string]string, resolveAfter config.Duration) Condition {
	return Condition{Rule: rule, Labels: labels, Clear: true, ResolveAfter: resolveAfter.D()}
}

// DeliveriesPath is the query API listing of a destination's deliveries.
func DeliveriesPath(destination, status string) string {
	q := url.Values{"destination": {destination}}
	if status != "" {
		q.Set("status", status)
	}
	return "/v1/deliveries?" + q.Encode()
}

// EventPath is the query API page of one event.
func EventPath(id string) string { return "/v1/events/" + url.PathEscape(id) }

func deadLettered(r config.DeadLetteredRule, s *switchyardv1.Series, now time.Time) Condition {
	labels := destLabels(s)
	run := s.GetDeadLetters()
	if r.Disabled || run == nil || run.LastAt == nil {
		return off(DeliveryDeadLettered, labels, r.ResolveAfter)
	}
	last := run.LastAt.AsTime()
	inRun := now.Sub(last) < r.ResolveAfter.D()
	n := run.Total - run.RunStartTotal
	c := Condition{
		Rule: DeliveryDeadLettered, Labels: labels,
		Firing: inRun, Clear: !inRun, ClearSince: last, ResolveAfter: r.ResolveAfter.D(),
		FirstSeen: run.GetRunStartedAt().AsTime(), Severity: Critical, Count: n, Digest: true,
		DigestSummary: func(more, total int64) string {
			noun := "deliveries"
			if more == 1 {
				noun = "delivery"
			}
			return fmt.Sprintf("%d more %s dead-lettered on %s (%d in all)", more, noun, s.GetName(), total)
		},
		Summary: fmt.Sprintf("%s dead-lettered on %s", plural(n, "delivery", "deliveries"), s.GetName()),
		Fields: []Field{
			{"Destination", s.GetName()},
			{"Dead letters", strconv.FormatInt(n, 10)},
			{"Last event", "`" + run.GetLastEventId() + "`"},
			{"Last error", failureText(run.GetLastStatusCode(), run.GetLastError())},
			{"Reason", strings.ToLower(strings.TrimPrefix(run.GetLastReason(), "DEAD_LETTER_REASON_"))},
		},
		LinkPath: DeliveriesPath(s.GetName(), "dead_lettered"), LinkText: "Dead letters of " + s.GetName(),
	}
	if tid := run.GetLastTraceId(); isTraceID(tid) {
		// From the alert to the trace of the last failed delivery.
		c.Fields = append(c.Fields, Field{"Trace", "`" + tid + "`"})
	}
	if n == 1 && run.GetLastEventId() != "" {
		c.LinkPath, c.LinkText = EventPath(run.GetLastEventId()), "The event in the audit log"
	}
	return c
}

func partnerDown(r config.PartnerDownRule, s *switchyardv1.Series) Condition {
	labels := destLabels(s)
	cs := s.GetCircuit()
	if r.Disabled || cs == nil {
		return off(PartnerDown, labels, r.ResolveAfter)
	}
	open := cs.GetState() == switchyardv1.CircuitState_CIRCUIT_STATE_OPEN || cs.GetState() == switchyardv1.CircuitState_CIRCUIT_STATE_HALF_OPEN
	closed := cs.GetState() == switchyardv1.CircuitState_CIRCUIT_STATE_CLOSED
	state := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(cs.GetState().String(), "CIRCUIT_STATE_"), "_", "-"))
	reason := orNone(cs.GetReason())
	if cs.GetReason() == "" && cs.GetLastError() == "" {
		// Known from the dispatcher's backlog reports only: its
		// CircuitChanged record was lost.
		reason = "(not recorded: the state comes from the dispatcher's backlog reports)"
	}
	c := Condition{
		Rule: PartnerDown, Labels: labels, Firing: open, Clear: closed, ResolveAfter: r.ResolveAfter.D(),
		Severity: Critical, Summary: s.GetName() + " is down: its circuit breaker is " + state,
		Fields: []Field{
			{"Destination", s.GetName()},
			{"Breaker", state + " since " + FormatTime(cs.GetChangedAt().AsTime())},
			{"Reason", reason},
			{"Last error", orNone(cs.GetLastError())},
		},
		LinkPath: DeliveriesPath(s.GetName(), ""), LinkText: "Deliveries to " + s.GetName(),
	}
	if open {
		c.FirstSeen = cs.GetChangedAt().AsTime()
	}
	if closed {
		c.ClearSince = cs.GetChangedAt().AsTime()
	}
	return c
}

// PollRecordsPath is the query API listing of a polled source's rounds.
func PollRecordsPath(source string) string {
	return "/v1/records?" + url.Values{"kind": {"poll"}, "key": {source}}.Encode()
}

// sourceDown is PartnerDown for a polled source: no round has succeeded
// for after (since the first round the notifier saw, if none ever did). It
// fires as well when no round is recorded at all, for no replica may be
// polling. It resolves once the latest round succeeded, resolve_after ago.
func sourceDown(r config.SourceDownRule, after time.Duration, polled bool, s *switchyardv1.Series, now time.Time) Condition {
	labels := map[string]string{"source": s.GetName()}
	h := s.GetPoll()
	if r.Disabled || !polled || h == nil {
		return off(PartnerDown, labels, r.ResolveAfter)
	}
	since := h.GetFirstRoundAt().AsTime()
	success := "never"
	if h.LastSuccessAt != nil {
		since = h.LastSuccessAt.AsTime()
		success = FormatTime(since)
	}
	lastRound := since
	if f := h.GetLastFailure(); f != nil && f.GetAt().AsTime().After(lastRound) {
		lastRound = f.GetAt().AsTime()
	}
	down := now.Sub(since) >= after
	latestOK := h.LastSuccessAt != nil && !lastRound.After(since)
	summary := fmt.Sprintf("%s: lost connection to the partner API, no successful poll for %s", s.GetName(), FormatDuration(now.Sub(since)))
	if now.Sub(lastRound) >= after {
		summary = fmt.Sprintf("%s: no poll round for %s: no replica polls it (is ingress running?)", s.GetName(), FormatDuration(now.Sub(lastRound)))
	}
	lastFail := "(none)"
	if f := h.GetLastFailure(); f != nil {
		status := strings.ToLower(strings.TrimPrefix(h.GetLastFailureStatus().String(), "POLL_STATUS_"))
		lastFail = status + ": " + failureText(f.GetStatusCode(), f.GetError()) + " at " + FormatTime(f.GetAt().AsTime())
	}
	c := Condition{
		Rule: PartnerDown, Labels: labels, Firing: down, Clear: latestOK && !down, ClearSince: since,
		ResolveAfter: r.ResolveAfter.D(), Severity: Critical, Summary: summary,
		Fields: []Field{
			{"Source", s.GetName() + " (polled)"},
			{"Last successful round", success},
			{"Last failed round", lastFail},
			{"Fires after", FormatDuration(after) + " without a successful round"},
		},
		LinkPath: PollRecordsPath(s.GetName()), LinkText: "Poll rounds of " + s.GetName(),
	}
	c.FirstSeen = since
	if fs := h.GetFailingSince(); fs != nil {
		c.FirstSeen = fs.AsTime()
	}
	return c
}

func errorRate(r config.ErrorRateRule, s *switchyardv1.Series, now time.Time) Condition {
	labels := destLabels(s)
	if r.Disabled {
		return off(PartnerErrorRateHigh, labels, r.ResolveAfter)
	}
	t := series.Window(s, now, r.Window.D())
	enough := t.Attempts >= int64(r.MinAttempts)
	var ratio float64
	if t.Attempts > 0 {
		ratio = float64(t.Retryable) / float64(t.Attempts)
	}
	sev := Warning
	if ratio >= r.Critical {
		sev = Critical
	}
	c := Condition{
		Rule: PartnerErrorRateHigh, Labels: labels,
		Firing: enough && ratio >= r.Warning, Clear: !enough || ratio < r.ResolveBelow, ResolveAfter: r.ResolveAfter.D(),
		Severity: sev, Count: t.Retryable,
		Summary: fmt.Sprintf("%s fails %s of deliveries", s.GetName(), percent(ratio)),
		Fields: []Field{
			{"Destination", s.GetName()},
			{"Failure ratio", fmt.Sprintf("%s (%d of %d attempts in %s)", percent(ratio), t.Retryable, t.Attempts, r.Window)},
			{"Thresholds", fmt.Sprintf("warning %s, critical %s; resolves under %s", percent(r.Warning), percent(r.Critical), percent(r.ResolveBelow))},
			{"Last error", lastFailure(s.GetLastFailure())},
		},
		LinkPath: DeliveriesPath(s.GetName(), ""), LinkText: "Deliveries to " + s.GetName(),
	}
	return c
}

func latency(r config.LatencyRule, timeout time.Duration, s *switchyardv1.Series, prior Prior, now time.Time) Condition {
	labels := destLabels(s)
	if r.Disabled {
		return off(PartnerLatencyHigh, labels, r.ResolveAfter)
	}
	t := series.Window(s, now, r.Window.D())
	p95, n := series.Quantile(t.Latency, 0.95)
	// The baseline the alert fired with stays while it fires: the slow
	// period must not raise its own bar.
	var baseline time.Duration
	if a := prior(PartnerLatencyHigh, labels); a.GetState() == switchyardv1.AlertState_ALERT_STATE_FIRING {
		baseline = time.Duration(a.GetBaselineSeconds() * float64(time.Second))
	} else if b, bn := series.Quantile(series.Baseline(s, now, r.Window.D(), r.BaselineWindow.D()), 0.95); bn >= int64(r.MinAttempts) {
		baseline = b
	}
	fireAt := max(scale(baseline, r.Factor), r.Floor.D())
	timeoutAt := scale(timeout, r.TimeoutRatio)
	clearAt := min(max(scale(baseline, r.ResolveFactor), scale(r.Floor.D(), r.ResolveFactor/r.Factor)), timeoutAt)
	enough := n >= int64(r.MinAttempts)
	baseText := "not enough history yet"
	if baseline > 0 {
		baseText = FormatDuration(baseline) + " (p95 of the " + r.BaselineWindow.String() + " before)"
	}
	return Condition{
		Rule: PartnerLatencyHigh, Labels: labels,
		Firing: enough && (p95 > fireAt || p95 > timeoutAt), Clear: !enough || p95 < clearAt, ResolveAfter: r.ResolveAfter.D(),
		Severity: Warning, Count: n, Baseline: baseline,
		Summary: fmt.Sprintf("%s is slow: p95 %s", s.GetName(), FormatDuration(p95)),
		Fields: []Field{
			{"Destination", s.GetName()},
			{"p95 latency", fmt.Sprintf("%s over %s (%d attempts)", FormatDuration(p95), r.Window, n)},
			{"Baseline", baseText},
			{"Fires above", fmt.Sprintf("%s, or %s (%s of the %s timeout)", FormatDuration(fireAt), FormatDuration(timeoutAt), percent(r.TimeoutRatio), FormatDuration(timeout))},
		},
		LinkPath: DeliveriesPath(s.GetName(), ""), LinkText: "Deliveries to " + s.GetName(),
	}
}

func credentials(r config.CredentialsRule, s *switchyardv1.Series, now time.Time) Condition {
	labels := destLabels(s)
	if r.Disabled {
		return off(CredentialsFailing, labels, r.ResolveAfter)
	}
	t := series.Window(s, now, r.Window.D())
	last := s.GetLastAuthFailure()
	c := Condition{
		Rule: CredentialsFailing, Labels: labels,
		Firing: t.AuthFailures >= int64(r.MinFailures) || t.AuthDeadLetters > 0, Clear: t.AuthFailures == 0 && t.AuthDeadLetters == 0,
		ResolveAfter: r.ResolveAfter.D(), Severity: Critical, Count: t.AuthFailures,
		Summary: s.GetName() + " refuses Switchyard's credentials",
		Fields: []Field{
			{"Destination", s.GetName()},
			{"Refused", fmt.Sprintf("%d attempts in %s (401/403, or the token endpoint refusing the client); %d dead-lettered on one", t.AuthFailures, r.Window, t.AuthDeadLetters)},
			{"Last answer", lastFailure(last)},
			{"Check", "expired or revoked credentials, or a rotated secret the partner has not taken"},
		},
		LinkPath: DeliveriesPath(s.GetName(), ""), LinkText: "Deliveries to " + s.GetName(),
	}
	if last.GetEventId() != "" {
		c.LinkPath, c.LinkText = EventPath(last.GetEventId()), "The last refused event"
	}
	return c
}

func backlog(r config.BacklogRule, s *switchyardv1.Series) Condition {
	labels := destLabels(s)
	b := s.GetBacklog()
	if r.Disabled || b == nil {
		return off(BacklogGrowing, labels, r.ResolveAfter)
	}
	pendingAt := r.Pending
	if pendingAt == 0 && b.GetMaxAckPending() > 0 {
		pendingAt = int64(float64(b.GetMaxAckPending()) * r.PendingRatio)
	}
	age := b.GetOldestPendingAge().AsDuration()
	over := (pendingAt > 0 && b.GetNumAckPending() >= pendingAt) || age >= r.OldestAge.D() || b.GetFull()
	sev := Warning
	if b.GetFull() {
		sev = Critical
	}
	full := "no"
	if b.GetFull() {
		full = "yes: new events wait until retries drain"
	}
	return Condition{
		Rule: BacklogGrowing, Labels: labels, Firing: over, Clear: !over, ResolveAfter: r.ResolveAfter.D(),
		Severity: sev, Count: b.GetNumAckPending(),
		Summary: fmt.Sprintf("%s has a growing backlog: %d unfinished", s.GetName(), b.GetNumAckPending()),
		Fields: []Field{
			{"Destination", s.GetName()},
			{"Unfinished (in flight or waiting to retry)", fmt.Sprintf("%d of at most %d (fires at %d)", b.GetNumAckPending(), b.GetMaxAckPending(), pendingAt)},
			{"Not yet delivered once", strconv.FormatUint(b.GetNumPending(), 10)},
			{"Oldest unfinished", fmt.Sprintf("%s (fires at %s)", FormatDuration(age), r.OldestAge)},
			{"Full", full},
		},
		LinkPath: DeliveriesPath(s.GetName(), ""), LinkText: "Deliveries to " + s.GetName(),
	}
}

func signatureFailures(r config.SignatureFailuresRule, s *switchyardv1.Series, now time.Time) Condition {
	labels := map[string]string{"source": s.GetName()}
	if r.Disabled {
		return off(SignatureFailures, labels, r.ResolveAfter)
	}
	t := series.Window(s, now, r.Window.D())
	return Condition{
		Rule: SignatureFailures, Labels: labels,
		Firing: t.Rejections >= int64(r.MinRejections), Clear: t.Rejections < int64(r.MinRejections), ResolveAfter: r.ResolveAfter.D(),
		Severity: Warning, Count: t.Rejections,
		Summary: fmt.Sprintf("%d webhooks from %s refused for their signature", t.Rejections, s.GetName()),
		Fields: []Field{
			{"Source", s.GetName()},
			{"Refused", fmt.Sprintf("%d in %s (bad or missing signature, stale timestamp, suspected replay)", t.Rejections, r.Window)},
			{"Last refusal", lastFailure(s.GetLastFailure())},
			{"Check", "a secret rotated on one side only, or someone forging requests"},
		},
		LinkPath: "/v1/rejections", LinkText: "Refused webhooks",
	}
}

// QuarantinedPath is the query API listing of the payloads of a source
// (or publish API key) that broke its contract.
func QuarantinedPath(name string) string {
	return "/v1/records?" + url.Values{"kind": {"quarantined"}, "key": {name}}.Encode()
}

// malformedPayloads fires on the first payload of a source (or publish API
// key, labelled source too) that broke its contract, and counts the run of
// them for digests; it is clear once valid payloads flowed after the last
// malformed one (resolve_after later), or quiet_after after it.
func malformedPayloads(r config.MalformedPayloadsRule, s *switchyardv1.Series, now time.Time) Condition {
	labels := map[string]string{"source": s.GetName()}
	m := s.GetMalformed()
	if r.Disabled || m == nil || m.LastAt == nil {
		return off(MalformedPayloads, labels, r.ResolveAfter)
	}
	last := m.LastAt.AsTime()
	validAgain := m.ValidAt != nil && !m.ValidAt.AsTime().Before(last)
	quietSince := last.Add(r.QuietAfter.D())
	inRun := !validAgain && now.Before(quietSince)
	clearSince := quietSince
	if validAgain {
		clearSince = m.ValidAt.AsTime()
	}
	n := m.GetTotal() - m.GetRunStartTotal()
	name := s.GetName()
	c := Condition{
		Rule: MalformedPayloads, Labels: labels,
		Firing: inRun, Clear: !inRun, ClearSince: clearSince, ResolveAfter: r.ResolveAfter.D(),
		FirstSeen: m.GetRunStartedAt().AsTime(), Severity: Warning, Count: n, Digest: true,
		DigestSummary: func(more, total int64) string {
			return fmt.Sprintf("%s from %s broke its contract (%d in all)", plural(more, "more payload", "more payloads"), name, total)
		},
		Summary: fmt.Sprintf("%s from %s broke its contract: quarantined, not delivered", plural(n, "payload", "payloads"), name),
		Fields: []Field{
			{"Source", name},
			{"Malformed", fmt.Sprintf("%d since %s", n, FormatTime(m.GetRunStartedAt().AsTime()))},
			{"Last event", "`" + m.GetLastEventId() + "`"},
			{"Last violation", orNone(m.GetLastError())},
			{"Then", "fix the schema (or ask the partner to), then `switchyard quarantine release --source " + name + "`"},
		},
		LinkPath: QuarantinedPath(name), LinkText: "Quarantined payloads of " + name,
	}
	return c
}

// auditLag reads two sources: the auditor's own reports (AuditLag records:
// what it has not written, and why), and the auditor's durable consumer on
// AUDIT as the notifier reads it, which still tells when no auditor runs to
// report anything.
func auditLag(r config.AuditLagRule, s *switchyardv1.Series) Condition {
	labels := map[string]string{}
	self, view := s.GetAuditLag(), s.GetAuditorConsumer()
	if r.Disabled || (self == nil && view == nil) {
		return off(AuditLag, labels, r.ResolveAfter)
	}
	behind := func(l *switchyardv1.AuditLag) (bool, time.Duration, int64) {
		if l == nil || l.GetCaughtUp() {
			return false, 0, 0
		}
		age, n := l.GetOldestAge().AsDuration(), int64(l.GetPendingRecords()+l.GetPendingEvents())
		return age >= r.OldestAge.D() || n >= r.Pending, age, n
	}
	selfOver, selfAge, selfN := behind(self)
	viewOver, viewAge, viewN := behind(view)
	over := selfOver || viewOver
	age, n := max(selfAge, viewAge), max(selfN, viewN)
	summary := "The audit log is behind by " + FormatDuration(age)
	if viewOver && !selfOver {
		summary += ": the auditor is not reading AUDIT (is it running?)"
	}
	consumer := "(not read yet)"
	if view != nil {
		consumer = fmt.Sprintf("%d records not yet acknowledged, the oldest %s old", view.GetPendingRecords(), FormatDuration(view.GetOldestAge().AsDuration()))
	}
	reported := "(no report)"
	if self != nil {
		reported = fmt.Sprintf("%d records and %d events unwritten, the oldest %s old", self.GetPendingRecords(), self.GetPendingEvents(), FormatDuration(selfAge))
		if self.GetCaughtUp() {
			reported = "caught up"
		}
	}
	return Condition{
		Rule: AuditLag, Labels: labels, Firing: over, Clear: !over, ResolveAfter: r.ResolveAfter.D(),
		Severity: Warning, Count: n, Summary: summary,
		Fields: []Field{
			{"Auditor reports", reported},
			{"Auditor's consumer on AUDIT", consumer},
			{"Fires at", fmt.Sprintf("%s old or %d waiting", r.OldestAge, r.Pending)},
			{"Last error", orNone(self.GetLastError())},
			{"Meanwhile", "records wait in the AUDIT stream; nothing is lost while it has room"},
		},
	}
}

func scale(d time.Duration, f float64) time.Duration { return time.Duration(float64(d) * f) }

func plural(n int64, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.FormatInt(n, 10) + " " + many
}

func percent(r float64) string {
	return strings.TrimSuffix(strconv.FormatFloat(r*100, 'f', 1, 64), ".0") + "%"
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func failureText(status int32, msg string) string {
	switch {
	case status != 0 && strings.HasPrefix(msg, "HTTP "+strconv.Itoa(int(status))):
		return msg
	case status != 0 && msg != "":
		return fmt.Sprintf("HTTP %d: %s", status, msg)
	case status != 0:
		return fmt.Sprintf("HTTP %d", status)
	}
	return orNone(msg)
}

func lastFailure(f *switchyardv1.LastFailure) string {
	if f == nil {
		return "(none)"
	}
	return failureText(f.GetStatusCode(), f.GetError()) + " at " + FormatTime(f.GetAt().AsTime())
}

// FormatTime is how messages show a time.
func FormatTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") }

// FormatDuration rounds d for people: 1.52s, 120ms, 3m20s.
func FormatDuration(d time.Duration) string {
	switch {
	case d >= time.Minute:
		return d.Round(time.Second).String()
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	default:
		return d.Round(time.Millisecond).String()
	}
}

// isTraceID reports whether s is an OpenTelemetry trace id (32 lower-case
// hex digits), the only form put into an alert.
func isTraceID(s string) bool {
	if len(s) != 32 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
