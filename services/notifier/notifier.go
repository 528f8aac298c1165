// Package notifier tells on-call about integrations that fail, once, with
// what they need to act, and tells them when it recovers: a small
// Alertmanager inside Switchyard. It evaluates alert rules over the audit
// records (dead letters, error rate, latency, breaker state, credentials,
// signature failures, backlog, audit lag), keeps each alert's state in NATS
// KV so that restarts and replicas never page twice, and sends to Slack, a
// generic JSON webhook, or the log.
//
// Every process builds it the same way: New(js, emitter, FromConfig(cfg,
// log, registry)).
package notifier

import (
	"context"
	"errors"
	"log/slog"

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

// Config is what the notifier is built from: the sections of the
// configuration file it reads, and what the process injects.
type Config struct {
	// Alerts is the file's alerts section: senders, grouping, rules. An
	// empty Slack URL sends to the log.
	Alerts config.Alerts
	// Destinations give the rules each destination's timeout (the latency
	// rule fires above a share of it) and name what alerts.destinations
	// may override (destinations).
	Destinations []config.Destination
	// Sources tell the rules which sources are polled and how often
	// (PartnerDown on a polled source).
	Sources []config.Source
	// Topology sizes the notifier's buckets and stream (nats.replicas).
	Topology topology.Topology
	// Logger is required.
	Logger *slog.Logger
	// Registerer receives the metrics; nil means none.
	Registerer prometheus.Registerer
	// Clock is the rules' time; nil is the real clock. Tests drive a fake
	// one.
	Clock clockwork.Clock
}

// FromConfig is the notifier's part of a loaded configuration.
func FromConfig(cfg config.Config, log *slog.Logger, reg prometheus.Registerer) Config {
	return Config{
		Alerts:       cfg.Alerts,
		Destinations: cfg.Destinations,
		Sources:      cfg.Sources,
		Topology:     topology.FromConfig(cfg),
		Logger:       log,
		Registerer:   reg,
	}
}

// WithDefaults returns c with every unset setting at the configuration
// file's default (config.Config.WithDefaults, the one place they are
// written).
func (c Config) WithDefaults() Config {
	d := config.Config{Alerts: c.Alerts, Destinations: c.Destinations, Sources: c.Sources}.WithDefaults()
	c.Alerts, c.Destinations, c.Sources = d.Alerts, d.Destinations, d.Sources
	if c.Clock == nil {
		c.Clock = clockwork.NewRealClock()
	}
	return c
}

// Validate checks what the service needs besides a valid configuration
// file (config.Load checks the file's rules, the one place they are
// written): the injected logger, a usable topology.
func (c Config) Validate() error {
	if c.Logger == nil {
		return errors.New("notifier: Config.Logger is required")
	}
	if err := c.Topology.Validate(); err != nil {
		return err
	}
	return nil
}

// Notifier is the running notifier.
type Notifier struct{ engine *engine.Engine }

// New returns a notifier reading AUDIT through js and recording its alerts
// through audit; Run starts it.
func New(js jetstream.JetStream, audit *auditlog.Emitter, cfg Config) (*Notifier, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	e, err := engine.New(js, audit, engine.Config{
		Rules:      rules.NewConfig(cfg.Alerts, cfg.Destinations).WithSources(cfg.Sources),
		Senders:    senders(cfg.Alerts, cfg.Logger),
		Topology:   cfg.Topology,
		Logger:     cfg.Logger,
		Registerer: cfg.Registerer,
		Clock:      cfg.Clock,
	})
	if err != nil {
		return nil, err
	}
	return &Notifier{engine: e}, nil
}

// Sender names.
const (
	SenderSlack   = "slack"
	SenderConsole = "console"
	SenderWebhook = "webhook"
)

// Senders names the senders the alerts section asks for: Slack when its
// URL is set (else the log, "console"), and the generic webhook when its
// URL is set. Each has its consumer on NOTIFICATIONS
// (topology.SenderConsumer).
func Senders(a config.Alerts) []string {
	var out []string
	if a.SlackWebhookURL != "" {
		out = append(out, SenderSlack)
	} else {
		out = append(out, SenderConsole)
	}
	if a.WebhookURL != "" {
		out = append(out, SenderWebhook)
	}
	return out
}

// senders builds the senders Senders names.
func senders(a config.Alerts, log *slog.Logger) []sender.Sender {
	pace := sender.Pacing{PerSecond: a.RateLimit.PerSecond, Burst: a.RateLimit.Burst}
	var out []sender.Sender
	for _, name := range Senders(a) {
		switch name {
		case SenderSlack:
			out = append(out, sender.NewSlack(a.SlackWebhookURL.Reveal(), pace))
		case SenderConsole:
			out = append(out, sender.Console{Log: log})
		case SenderWebhook:
			out = append(out, sender.NewWebhook(a.WebhookURL.Reveal(), pace))
		}
	}
	return out
}

// Run sends alerts until ctx is done.
func (n *Notifier) Run(ctx context.Context) error { return n.engine.Run(ctx) }
