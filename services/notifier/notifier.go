// Package notifier tells on-call about integrations that fail: it reads the
// audit records and sends alerts to Slack (or the log).
package notifier

import (
	"context"
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/services/notifier/internal/engine"
	"github.com/switchyard/switchyard/services/notifier/internal/sender"
)

// Config configures the notifier.
type Config struct {
	// SlackWebhookURL is a Slack incoming webhook; empty sends alerts to the
	// log.
	SlackWebhookURL string
	// Logger is required.
	Logger *slog.Logger
}

// Notifier is the running notifier.
type Notifier struct{ engine *engine.Engine }

// New returns a notifier reading AUDIT through js.
func New(js jetstream.JetStream, audit *auditlog.Emitter, cfg Config) (*Notifier, error) {
	var s sender.Sender = sender.Console{Log: cfg.Logger}
	if cfg.SlackWebhookURL != "" {
		s = sender.NewSlack(cfg.SlackWebhookURL)
	}
	e, err := engine.New(js, audit, engine.Config{Sender: s, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	return &Notifier{engine: e}, nil
}

// Run sends alerts until ctx is done.
func (n *Notifier) Run(ctx context.Context) error { return n.engine.Run(ctx) }
