package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/pkg/config"
)

func TestAlertsWithDefaults(t *testing.T) {
	t.Parallel()
	d := func(v time.Duration) config.Duration { return config.Duration(v) }
	a := config.Alerts{}.WithDefaults()
	if a.GroupWait != d(30*time.Second) || a.GroupInterval != d(5*time.Minute) || a.RepeatInterval != d(4*time.Hour) ||
		a.EvaluationInterval != d(5*time.Second) || a.RateLimit.PerSecond != 1 || a.RateLimit.Burst != 3 {
		t.Errorf("grouping defaults = %+v", a)
	}
	r := a.Rules
	checks := []struct {
		name      string
		got, want any
	}{
		{"dead_lettered.resolve_after", r.DeadLettered.ResolveAfter, d(30 * time.Minute)},
		{"partner_down.resolve_after", r.PartnerDown.ResolveAfter, d(2 * time.Minute)},
		{"error_rate.window", r.ErrorRate.Window, d(5 * time.Minute)},
		{"error_rate.min_attempts", r.ErrorRate.MinAttempts, 20},
		{"error_rate.warning", r.ErrorRate.Warning, 0.25},
		{"error_rate.critical", r.ErrorRate.Critical, 0.5},
		{"error_rate.resolve_below", r.ErrorRate.ResolveBelow, 0.125},
		{"error_rate.resolve_after", r.ErrorRate.ResolveAfter, d(10 * time.Minute)},
		{"latency.window", r.Latency.Window, d(5 * time.Minute)},
		{"latency.factor", r.Latency.Factor, 2.0},
		{"latency.floor", r.Latency.Floor, d(time.Second)},
		{"latency.timeout_ratio", r.Latency.TimeoutRatio, 0.8},
		{"latency.resolve_factor", r.Latency.ResolveFactor, 1.5},
		{"latency.resolve_after", r.Latency.ResolveAfter, d(10 * time.Minute)},
		{"latency.baseline_window", r.Latency.BaselineWindow, d(time.Hour)},
		{"credentials.min_failures", r.Credentials.MinFailures, 3},
		{"backlog.pending_ratio", r.Backlog.PendingRatio, 0.8},
		{"backlog.oldest_age", r.Backlog.OldestAge, d(time.Hour)},
		{"signature_failures.min_rejections", r.SignatureFailures.MinRejections, 10},
		{"audit_lag.oldest_age", r.AuditLag.OldestAge, d(5 * time.Minute)},
		{"audit_lag.pending", r.AuditLag.Pending, int64(100000)},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("rules.%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestAlertOverridesInheritFieldByField(t *testing.T) {
	t.Parallel()
	c, err := config.Parse([]byte(minimalYAML+`
alerts:
  group_wait: 10s
  rules:
    error_rate: {warning: 0.3, critical: 0.6}
  destinations:
    crm:
      error_rate: {warning: 0.15}
      latency: {floor: 2s, disabled: true}
  sources:
    shop:
      signature_failures: {min_rejections: 50}
`), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	crm := c.Alerts.ForDestination("crm")
	if crm.ErrorRate.Warning != 0.15 || crm.ErrorRate.Critical != 0.6 || crm.ErrorRate.MinAttempts != 20 {
		t.Errorf("crm error_rate = %+v, want warning from the override, critical from rules, min_attempts default", crm.ErrorRate)
	}
	if !crm.Latency.Disabled || crm.Latency.Floor != config.Duration(2*time.Second) || crm.Latency.Factor != 2 {
		t.Errorf("crm latency = %+v", crm.Latency)
	}
	other := c.Alerts.ForDestination("other")
	if other.ErrorRate.Warning != 0.3 || other.Latency.Disabled {
		t.Errorf("a destination without overrides = %+v", other)
	}
	if got := c.Alerts.ForSource("shop").SignatureFailures; got.MinRejections != 50 || got.Window != config.Duration(5*time.Minute) {
		t.Errorf("shop signature_failures = %+v", got)
	}
	if c.Alerts.GroupWait != config.Duration(10*time.Second) {
		t.Errorf("group_wait = %s", c.Alerts.GroupWait)
	}
}

func TestAlertsValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		yaml    string
		field   string
		problem string
	}{
		{name: "valid", yaml: `alerts: {webhook_url: "https://events.pagerduty.example/bridge?token=x", public_base_url: "https://switchyard.example.com/audit"}`},
		{name: "webhook url", yaml: `alerts: {webhook_url: "not a url TOKEN123"}`, field: "alerts.webhook_url", problem: "http(s) URL"},
		{name: "public base url with query", yaml: `alerts: {public_base_url: "https://x.example?a=1"}`, field: "alerts.public_base_url", problem: "without query"},
		{name: "repeat below group interval", yaml: `alerts: {group_interval: 10m, repeat_interval: 5m}`, field: "alerts.repeat_interval", problem: "at least alerts.group_interval"},
		{name: "negative group wait", yaml: `alerts: {group_wait: -1s}`, field: "alerts.group_wait", problem: "positive"},
		{name: "critical under warning", yaml: `alerts: {rules: {error_rate: {warning: 0.5, critical: 0.3}}}`, field: "alerts.rules.error_rate.critical", problem: "at least warning"},
		{name: "ratio above one", yaml: `alerts: {rules: {error_rate: {warning: 25}}}`, field: "alerts.rules.error_rate.warning", problem: "0.25 is 25%"},
		{name: "window too short", yaml: `alerts: {rules: {latency: {window: 1s}}}`, field: "alerts.rules.latency.window", problem: "between 10s and 1h"},
		{name: "resolve factor above factor", yaml: `alerts: {rules: {latency: {factor: 1.2}}}`, field: "alerts.rules.latency.resolve_factor", problem: "between 1 and factor"},
		{name: "unknown destination", yaml: `alerts: {destinations: {ERP: {error_rate: {warning: 0.1}}}}`, field: "alerts.destinations.ERP", problem: `no destination is called "ERP"`},
		{name: "unknown source", yaml: `alerts: {sources: {nope: {}}}`, field: "alerts.sources.nope", problem: "no source"},
		{name: "bad override", yaml: `alerts: {destinations: {crm: {error_rate: {resolve_below: 0.9}}}}`, field: "alerts.destinations.crm.error_rate.resolve_below", problem: "must not exceed warning"},
		{name: "rate limit", yaml: `alerts: {rate_limit: {per_second: -1}}`, field: "alerts.rate_limit.per_second", problem: "positive"},
		{name: "audit lag pending", yaml: `alerts: {rules: {audit_lag: {pending: -5}}}`, field: "alerts.rules.audit_lag.pending", problem: "at least 1"},
		{name: "unknown key", yaml: `alerts: {rules: {error_rate: {threshold: 0.3}}}`, field: "", problem: "threshold"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := config.Parse([]byte(minimalYAML+tt.yaml), noEnv)
			if tt.problem == "" {
				if err != nil {
					t.Fatalf("Parse = %v, want nil", err)
				}
				return
			}
			checkErr(t, err, config.ErrInvalid, tt.field, tt.problem)
			// What the error says is under test: never the secret URL.
			if strings.Contains(err.Error(), "TOKEN123") {
				t.Errorf("error %q reveals the secret webhook URL", err)
			}
		})
	}
}
