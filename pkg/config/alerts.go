package config

import (
	"net/url"
	"reflect"
	"slices"
	"time"
)

// Alerts configures the notifier: where alerts go, how they are grouped,
// and the rules with their thresholds. Rules holds the defaults;
// Destinations and Sources override them per destination or source, field
// by field (an unset field inherits).
type Alerts struct {
	// SlackWebhookURL is a Slack incoming webhook. Empty: alerts go to the
	// log (unless WebhookURL is set).
	SlackWebhookURL Secret `yaml:"slack_webhook_url"`
	// WebhookURL receives every alert as a JSON POST whose dedup_key is the
	// alert's fingerprint, for PagerDuty or Opsgenie bridges. It is a secret
	// because such URLs usually carry a token.
	WebhookURL Secret `yaml:"webhook_url"`
	// PublicBaseURL is the query API's address as people reach it (e.g.
	// https://switchyard.example.com); alerts link to the event or the
	// destination there. Empty: no links.
	PublicBaseURL string `yaml:"public_base_url"`
	// GroupWait is how long a new alert waits before its first message, so
	// that what arrives together is sent together (and an inhibiting
	// PartnerDown can fire first). Default 30s.
	GroupWait Duration `yaml:"group_wait"`
	// GroupInterval is the least time between two messages about a firing
	// alert that has news (more dead letters, a higher severity). Default
	// 5m.
	GroupInterval Duration `yaml:"group_interval"`
	// RepeatInterval re-sends a firing alert with no news this often.
	// Default 4h.
	RepeatInterval Duration `yaml:"repeat_interval"`
	// EvaluationInterval is how often every rule is evaluated (rules are
	// also evaluated as records arrive). Default 5s.
	EvaluationInterval Duration `yaml:"evaluation_interval"`
	// RateLimit bounds the messages per second to each webhook (Slack and
	// the generic one). Default 1 per second, burst 3.
	RateLimit AlertRateLimit `yaml:"rate_limit"`
	// Rules are the rule settings for every destination and source.
	Rules AlertRules `yaml:"rules"`
	// Destinations overrides the destination rules for one destination,
	// by name.
	Destinations map[string]DestinationAlertRules `yaml:"destinations"`
	// Sources overrides the source rules for one source, by name.
	Sources map[string]SourceAlertRules `yaml:"sources"`
}

// AlertRateLimit is a token bucket.
type AlertRateLimit struct {
	// PerSecond is the sustained rate. Default 1.
	PerSecond float64 `yaml:"per_second"`
	// Burst is how many may go at once. Default 3.
	Burst int `yaml:"burst"`
}

// AlertRules holds every rule.
type AlertRules struct {
	DestinationAlertRules `yaml:",inline"`
	SourceAlertRules      `yaml:",inline"`
	// AuditLag fires when the audit writer is behind.
	AuditLag AuditLagRule `yaml:"audit_lag"`
}

// DestinationAlertRules are the rules evaluated per destination.
type DestinationAlertRules struct {
	DeadLettered DeadLetteredRule `yaml:"dead_lettered"`
	PartnerDown  PartnerDownRule  `yaml:"partner_down"`
	ErrorRate    ErrorRateRule    `yaml:"error_rate"`
	Latency      LatencyRule      `yaml:"latency"`
	Credentials  CredentialsRule  `yaml:"credentials"`
	Backlog      BacklogRule      `yaml:"backlog"`
}

// SourceAlertRules are the rules evaluated per source.
type SourceAlertRules struct {
	SignatureFailures SignatureFailuresRule `yaml:"signature_failures"`
	SourceDown        SourceDownRule        `yaml:"source_down"`
	MalformedPayloads MalformedPayloadsRule `yaml:"malformed_payloads"`
}

// MalformedPayloadsRule fires on the first payload of a source (or
// publish API key) that breaks its contract, and then sends digests of the
// ones after it; it resolves once valid payloads flow again, or after
// QuietAfter without a malformed one.
type MalformedPayloadsRule struct {
	Disabled bool `yaml:"disabled"`
	// ResolveAfter: how long after valid payloads flow again. Default 1m.
	ResolveAfter Duration `yaml:"resolve_after"`
	// QuietAfter resolves it after this long without a malformed payload,
	// valid ones seen or not. Default 1h.
	QuietAfter Duration `yaml:"quiet_after"`
}

// DeadLetteredRule (DeliveryDeadLettered) fires on any dead letter.
type DeadLetteredRule struct {
	// Disabled turns the rule off.
	Disabled bool `yaml:"disabled"`
	// ResolveAfter resolves the alert after this long without a new dead
	// letter. Default 30m.
	ResolveAfter Duration `yaml:"resolve_after"`
}

// PartnerDownRule fires while the destination's circuit breaker is open.
type PartnerDownRule struct {
	Disabled bool `yaml:"disabled"`
	// ResolveAfter resolves the alert once the breaker has been closed this
	// long. Default 2m.
	ResolveAfter Duration `yaml:"resolve_after"`
}

// ErrorRateRule (PartnerErrorRateHigh) watches the share of attempts that
// failed in a retryable way.
type ErrorRateRule struct {
	Disabled bool `yaml:"disabled"`
	// Window is the rolling window. Default 5m.
	Window Duration `yaml:"window"`
	// MinAttempts is the fewest attempts in the window for the ratio to
	// count. Default 20.
	MinAttempts int `yaml:"min_attempts"`
	// Warning is the ratio that fires a warning. Default 0.25.
	Warning float64 `yaml:"warning"`
	// Critical is the ratio that makes it critical. Default 0.5.
	Critical float64 `yaml:"critical"`
	// ResolveBelow is the ratio the window must stay under for
	// ResolveAfter. Default 0.125.
	ResolveBelow float64 `yaml:"resolve_below"`
	// ResolveAfter: default 10m.
	ResolveAfter Duration `yaml:"resolve_after"`
}

// LatencyRule (PartnerLatencyHigh) watches the p95 attempt duration.
type LatencyRule struct {
	Disabled bool `yaml:"disabled"`
	// Window is the rolling window of the p95. Default 5m.
	Window Duration `yaml:"window"`
	// MinAttempts is the fewest attempts in the window (and in the
	// baseline) for a p95 to count. Default 20.
	MinAttempts int `yaml:"min_attempts"`
	// BaselineWindow is how far back the trailing baseline (the p95 before
	// the current window) looks. Default 1h.
	BaselineWindow Duration `yaml:"baseline_window"`
	// Factor: the alert fires above Factor x baseline... Default 2.
	Factor float64 `yaml:"factor"`
	// ...but never below Floor. Default 1s.
	Floor Duration `yaml:"floor"`
	// TimeoutRatio also fires it above this share of the destination's
	// timeout. Default 0.8.
	TimeoutRatio float64 `yaml:"timeout_ratio"`
	// ResolveFactor: resolved under ResolveFactor x baseline (and under
	// Floor x ResolveFactor/Factor) for ResolveAfter. Default 1.5.
	ResolveFactor float64 `yaml:"resolve_factor"`
	// ResolveAfter: default 10m.
	ResolveAfter Duration `yaml:"resolve_after"`
}

// CredentialsRule (CredentialsFailing) fires on 401/403 answers: MinFailures
// of them in the window, or any delivery dead-lettered on one (a quiet
// partner may send no other).
type CredentialsRule struct {
	Disabled bool `yaml:"disabled"`
	// Window is the rolling window. Default 5m.
	Window Duration `yaml:"window"`
	// MinFailures is how many 401/403 answers in the window fire it; above
	// 1 so that the one 401 that precedes a routine token refresh does
	// not page. Default 3.
	MinFailures int `yaml:"min_failures"`
	// ResolveAfter: default 10m.
	ResolveAfter Duration `yaml:"resolve_after"`
}

// BacklogRule (BacklogGrowing) reads the dispatcher's backlog reports.
type BacklogRule struct {
	Disabled bool `yaml:"disabled"`
	// Pending fires it at this many events delivered but unfinished; 0 uses
	// PendingRatio of the consumer's max_ack_pending. Default 0.
	Pending int64 `yaml:"pending"`
	// PendingRatio of max_ack_pending. Default 0.8.
	PendingRatio float64 `yaml:"pending_ratio"`
	// OldestAge fires it when the oldest unfinished event is older.
	// Default 1h (the default retry schedule alone spans 43 minutes).
	OldestAge Duration `yaml:"oldest_age"`
	// ResolveAfter: default 5m.
	ResolveAfter Duration `yaml:"resolve_after"`
}

// SignatureFailuresRule fires on a spike of webhooks refused for their
// signature or timestamp (a wrong secret after a rotation, or an attack).
type SignatureFailuresRule struct {
	Disabled bool `yaml:"disabled"`
	// Window is the rolling window. Default 5m.
	Window Duration `yaml:"window"`
	// MinRejections in the window fire it. Default 10.
	MinRejections int `yaml:"min_rejections"`
	// ResolveAfter: default 10m.
	ResolveAfter Duration `yaml:"resolve_after"`
}

// SourceDownRule is PartnerDown for a polled source (labelled with the
// source): no poll round has succeeded for After, because the partner's API
// fails, refuses Switchyard's credentials or answers what cannot be read,
// or because no replica polls it.
type SourceDownRule struct {
	Disabled bool `yaml:"disabled"`
	// After: how long without a successful round. Default 10 times the
	// source's poll interval, at least 5m.
	After Duration `yaml:"after"`
	// ResolveAfter resolves the alert once the latest round succeeded this
	// long ago with no failure since. Default 2m, as for a destination.
	ResolveAfter Duration `yaml:"resolve_after"`
}

// AuditLagRule fires while the audit writer is behind.
type AuditLagRule struct {
	Disabled bool `yaml:"disabled"`
	// OldestAge fires it when the oldest unwritten record is older.
	// Default 5m.
	OldestAge Duration `yaml:"oldest_age"`
	// Pending fires it at this many unwritten records. Default 100000.
	Pending int64 `yaml:"pending"`
	// ResolveAfter: default 2m.
	ResolveAfter Duration `yaml:"resolve_after"`
}

// DefaultAlertRules are the rule defaults.
func DefaultAlertRules() AlertRules {
	return AlertRules{
		DestinationAlertRules: DestinationAlertRules{
			DeadLettered: DeadLetteredRule{ResolveAfter: Duration(30 * time.Minute)},
			PartnerDown:  PartnerDownRule{ResolveAfter: Duration(2 * time.Minute)},
			ErrorRate: ErrorRateRule{Window: Duration(5 * time.Minute), MinAttempts: 20, Warning: 0.25, Critical: 0.5,
				ResolveBelow: 0.125, ResolveAfter: Duration(10 * time.Minute)},
			Latency: LatencyRule{Window: Duration(5 * time.Minute), MinAttempts: 20, BaselineWindow: Duration(time.Hour),
				Factor: 2, Floor: Duration(time.Second), TimeoutRatio: 0.8, ResolveFactor: 1.5, ResolveAfter: Duration(10 * time.Minute)},
			Credentials: CredentialsRule{Window: Duration(5 * time.Minute), MinFailures: 3, ResolveAfter: Duration(10 * time.Minute)},
			Backlog:     BacklogRule{PendingRatio: 0.8, OldestAge: Duration(time.Hour), ResolveAfter: Duration(5 * time.Minute)},
		},
		SourceAlertRules: SourceAlertRules{
			SignatureFailures: SignatureFailuresRule{Window: Duration(5 * time.Minute), MinRejections: 10, ResolveAfter: Duration(10 * time.Minute)},
			SourceDown:        SourceDownRule{ResolveAfter: Duration(2 * time.Minute)},
			MalformedPayloads: MalformedPayloadsRule{ResolveAfter: Duration(time.Minute), QuietAfter: Duration(time.Hour)},
		},
		AuditLag: AuditLagRule{OldestAge: Duration(5 * time.Minute), Pending: 100000, ResolveAfter: Duration(2 * time.Minute)},
	}
}

// WithDefaults returns a copy with every unset field at its default.
func (a Alerts) WithDefaults() Alerts {
	setDefault(&a.GroupWait, Duration(30*time.Second))
	setDefault(&a.GroupInterval, Duration(5*time.Minute))
	setDefault(&a.RepeatInterval, Duration(4*time.Hour))
	setDefault(&a.EvaluationInterval, Duration(5*time.Second))
	setDefault(&a.RateLimit.PerSecond, 1)
	setDefault(&a.RateLimit.Burst, 3)
	inherit(&a.Rules, DefaultAlertRules())
	return a
}

// ForDestination returns the destination rules for name: its overrides on
// top of Rules.
func (a Alerts) ForDestination(name string) DestinationAlertRules {
	r := a.Destinations[name]
	inherit(&r, a.Rules.DestinationAlertRules)
	return r
}

// ForSource returns the source rules for name.
func (a Alerts) ForSource(name string) SourceAlertRules {
	r := a.Sources[name]
	inherit(&r, a.Rules.SourceAlertRules)
	return r
}

// inherit sets every zero scalar field of *dst, recursively through
// structs, to the same field of base. Disabled flags are or-ed by the same
// rule: true in either place wins.
func inherit[T any](dst *T, base T) {
	inheritValue(reflect.ValueOf(dst).Elem(), reflect.ValueOf(base))
}

func inheritValue(dst, base reflect.Value) {
	if dst.Kind() == reflect.Struct {
		for i := range dst.NumField() {
			inheritValue(dst.Field(i), base.Field(i))
		}
		return
	}
	if dst.IsZero() {
		dst.Set(base)
	}
}

func (a Alerts) validate(p *problems, c Config) {
	if a.SlackWebhookURL != "" {
		if u, err := url.Parse(a.SlackWebhookURL.Reveal()); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			p.add("alerts.slack_webhook_url", "must be an http(s) URL (the value is not shown because it is a secret)")
		}
	}
	if a.WebhookURL != "" {
		if u, err := url.Parse(a.WebhookURL.Reveal()); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			p.add("alerts.webhook_url", "must be an http(s) URL (the value is not shown because it is a secret)")
		}
	}
	if a.PublicBaseURL != "" {
		if u, err := url.Parse(a.PublicBaseURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			p.add("alerts.public_base_url", "must be an http(s) URL without query or fragment, such as https://switchyard.example.com, not %q", a.PublicBaseURL)
		}
	}
	positive(p, "alerts.group_wait", a.GroupWait, 0)
	positive(p, "alerts.group_interval", a.GroupInterval, time.Second)
	positive(p, "alerts.repeat_interval", a.RepeatInterval, time.Minute)
	positive(p, "alerts.evaluation_interval", a.EvaluationInterval, 100*time.Millisecond)
	if a.RepeatInterval < a.GroupInterval {
		p.add("alerts.repeat_interval", "(%s) must be at least alerts.group_interval (%s)", a.RepeatInterval, a.GroupInterval)
	}
	if a.RateLimit.PerSecond <= 0 {
		p.add("alerts.rate_limit.per_second", "must be positive, not %g", a.RateLimit.PerSecond)
	}
	if a.RateLimit.Burst < 1 {
		p.add("alerts.rate_limit.burst", "must be at least 1, not %d", a.RateLimit.Burst)
	}
	a.Rules.DestinationAlertRules.validate(p, "alerts.rules")
	a.Rules.SourceAlertRules.validate(p, "alerts.rules")
	lag := a.Rules.AuditLag
	positive(p, "alerts.rules.audit_lag.oldest_age", lag.OldestAge, time.Second)
	positive(p, "alerts.rules.audit_lag.resolve_after", lag.ResolveAfter, 0)
	if lag.Pending < 1 {
		p.add("alerts.rules.audit_lag.pending", "must be at least 1, not %d", lag.Pending)
	}

	for _, name := range sortedKeys(a.Destinations) {
		f := "alerts.destinations." + name
		if !slices.ContainsFunc(c.Destinations, func(d Destination) bool { return d.Name == name }) {
			p.add(f, "no destination is called %q", name)
			continue
		}
		a.ForDestination(name).validate(p, f)
	}
	for _, name := range sortedKeys(a.Sources) {
		f := "alerts.sources." + name
		if _, ok := c.Source(name); !ok {
			p.add(f, "no source is called %q", name)
			continue
		}
		a.ForSource(name).validate(p, f)
	}
}

func (r DestinationAlertRules) validate(p *problems, f string) {
	positive(p, f+".dead_lettered.resolve_after", r.DeadLettered.ResolveAfter, time.Second)
	positive(p, f+".partner_down.resolve_after", r.PartnerDown.ResolveAfter, 0)

	e := r.ErrorRate
	window(p, f+".error_rate.window", e.Window)
	if e.MinAttempts < 1 {
		p.add(f+".error_rate.min_attempts", "must be at least 1, not %d", e.MinAttempts)
	}
	ratio(p, f+".error_rate.warning", e.Warning)
	ratio(p, f+".error_rate.critical", e.Critical)
	ratio(p, f+".error_rate.resolve_below", e.ResolveBelow)
	if e.Critical < e.Warning {
		p.add(f+".error_rate.critical", "(%g) must be at least warning (%g)", e.Critical, e.Warning)
	}
	if e.ResolveBelow > e.Warning {
		p.add(f+".error_rate.resolve_below", "(%g) must not exceed warning (%g)", e.ResolveBelow, e.Warning)
	}
	positive(p, f+".error_rate.resolve_after", e.ResolveAfter, 0)

	l := r.Latency
	window(p, f+".latency.window", l.Window)
	if l.MinAttempts < 1 {
		p.add(f+".latency.min_attempts", "must be at least 1, not %d", l.MinAttempts)
	}
	if l.BaselineWindow < l.Window {
		p.add(f+".latency.baseline_window", "(%s) must be at least the window (%s)", l.BaselineWindow, l.Window)
	}
	if l.BaselineWindow.D() > 24*time.Hour {
		p.add(f+".latency.baseline_window", "must be at most 24h, not %s", l.BaselineWindow)
	}
	if l.Factor <= 1 {
		p.add(f+".latency.factor", "must be above 1, not %g", l.Factor)
	}
	if l.ResolveFactor < 1 || l.ResolveFactor > l.Factor {
		p.add(f+".latency.resolve_factor", "must be between 1 and factor (%g), not %g", l.Factor, l.ResolveFactor)
	}
	positive(p, f+".latency.floor", l.Floor, time.Millisecond)
	ratio(p, f+".latency.timeout_ratio", l.TimeoutRatio)
	positive(p, f+".latency.resolve_after", l.ResolveAfter, 0)

	c := r.Credentials
	window(p, f+".credentials.window", c.Window)
	if c.MinFailures < 1 {
		p.add(f+".credentials.min_failures", "must be at least 1, not %d", c.MinFailures)
	}
	positive(p, f+".credentials.resolve_after", c.ResolveAfter, 0)

	b := r.Backlog
	if b.Pending < 0 {
		p.add(f+".backlog.pending", "must not be negative (0 uses pending_ratio)")
	}
	ratio(p, f+".backlog.pending_ratio", b.PendingRatio)
	positive(p, f+".backlog.oldest_age", b.OldestAge, time.Second)
	positive(p, f+".backlog.resolve_after", b.ResolveAfter, 0)
}

func (r SourceAlertRules) validate(p *problems, f string) {
	s := r.SignatureFailures
	window(p, f+".signature_failures.window", s.Window)
	if s.MinRejections < 1 {
		p.add(f+".signature_failures.min_rejections", "must be at least 1, not %d", s.MinRejections)
	}
	positive(p, f+".signature_failures.resolve_after", s.ResolveAfter, 0)
	if d := r.SourceDown.After; d != 0 {
		positive(p, f+".source_down.after", d, time.Second)
	}
	positive(p, f+".source_down.resolve_after", r.SourceDown.ResolveAfter, 0)
	positive(p, f+".malformed_payloads.resolve_after", r.MalformedPayloads.ResolveAfter, 0)
	positive(p, f+".malformed_payloads.quiet_after", r.MalformedPayloads.QuietAfter, time.Minute)
}

// AlertBucket is the time step of the notifier's rolling windows.
const AlertBucket = 10 * time.Second

// maxAlertWindow bounds a rolling window: each window's buckets are kept in
// the notifier's state for every destination.
const maxAlertWindow = time.Hour

func window(p *problems, field string, d Duration) {
	if d.D() < AlertBucket || d.D() > maxAlertWindow {
		p.add(field, "must be between %s and %s, not %s", AlertBucket, maxAlertWindow, d)
	}
}

func positive(p *problems, field string, d Duration, least time.Duration) {
	switch {
	case least == 0 && d.D() <= 0:
		p.add(field, "must be positive, not %s", d)
	case d.D() < least:
		p.add(field, "must be at least %s, not %s", least, d)
	}
}

func ratio(p *problems, field string, v float64) {
	if v <= 0 || v > 1 {
		p.add(field, "must be a ratio above 0 and at most 1 (0.25 is 25%%), not %g", v)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
