// Package notifier tells on-call about integrations that fail, once, with
// what they need to act, and tells them when it recovers: a small
// Alertmanager inside Switchyard. It evaluates alert rules over the audit
// records (dead letters, error rate, latency, breaker state, credentials,
// signature failures, backlog, audit lag), keeps each alert's state in NATS
// KV so that restarts and replicas never page twice, and sends to Slack, a
// generic JSON webhook, or the log.
package notifier

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/topology"
	"github.com/switchyard/switchyard/services/notifier/internal/engine"
	"github.com/switchyard/switchyard/services/notifier/internal/rules"
	"github.com/switchyard/switchyard/services/notifier/internal/sender"
)

// Config configures the notifier.
type Config struct {
	// Alerts is the alerts section: senders, grouping, rules. Unset
	// fields take their defaults; an empty Slack URL sends to the log.
	Alerts config.Alerts
	// Destinations give the rules each destination's timeout (the latency
	// rule fires above 80% of it).
	Destinations []config.Destination
	// Topology sizes the notifier's buckets and stream (nats.replicas).
	Topology topology.Topology
	// Logger is required.
	Logger *slog.Logger
	// Registerer receives the metrics; nil means none.
	Registerer prometheus.Registerer
	// Clock is the rules' time; nil is the real clock. Tests drive a fake
	// one.
	Clock clockwork.Clock
	// FlushInterval is how long audit records are gathered before they are
	// folded into the rule state and acknowledged. Default 250ms.
	FlushInterval time.Duration
	// RetryWait is the first wait after a failed send that named none.
	// Default 1s.
	RetryWait time.Duration
}

// Notifier is the running notifier.
type Notifier struct{ engine *engine.Engine }

// New returns a notifier reading AUDIT through js.
func New(js jetstream.JetStream, audit *auditlog.Emitter, cfg Config) (*Notifier, error) {
	if cfg.Logger == nil {
		return nil, errors.New("notifier: Config.Logger is required")
	}
	alerts := cfg.Alerts.WithDefaults()
	e, err := engine.New(js, audit, engine.Config{
		Rules:         rules.NewConfig(alerts, cfg.Destinations),
		Senders:       Senders(alerts, cfg.Logger),
		Topology:      cfg.Topology,
		Logger:        cfg.Logger,
		Registerer:    cfg.Registerer,
		Clock:         cfg.Clock,
		FlushInterval: cfg.FlushInterval,
		RetryWait:     cfg.RetryWait,
	})
	if err != nil {
		return nil, err
	}
	return &Notifier{engine: e}, nil
}

// Senders builds the senders the alerts section asks for: Slack when its
// URL is set (else the log), and the generic webhook when its URL is set.
func Senders(a config.Alerts, log *slog.Logger) []sender.Sender {
	pace := sender.Pacing{PerSecond: a.RateLimit.PerSecond, Burst: a.RateLimit.Burst}
	var out []sender.Sender
	if a.SlackWebhookURL != "" {
		out = append(out, sender.NewSlack(a.SlackWebhookURL.Reveal(), pace))
	} else {
		out = append(out, sender.Console{Log: log})
	}
	if a.WebhookURL != "" {
		out = append(out, sender.NewWebhook(a.WebhookURL.Reveal(), pace))
	}
	return out
}

// Run sends alerts until ctx is done.
func (n *Notifier) Run(ctx context.Context) error { return n.engine.Run(ctx) }
