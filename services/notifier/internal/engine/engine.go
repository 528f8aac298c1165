// Package engine runs the notifier: it folds the AUDIT stream into per
// destination and source aggregates in KV (acknowledging records as soon as
// they are folded in), evaluates the alert rules over them, keeps each
// alert's lifecycle in KV with compare-and-set writes, and hands the
// messages it decides on to the NOTIFICATIONS stream, from which one loop
// per sender delivers them and acknowledges each only once it was accepted
// or given up.
//
// Every step is safe with several replicas: aggregates add up, alert
// transitions and message decisions are compare-and-set on the alert's
// revision (so exactly one replica makes each message), and a message is
// one JetStream work-queue entry that one replica at a time holds.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/silences"
	"github.com/switchyard/switchyard/pkg/topology"
	"github.com/switchyard/switchyard/services/notifier/internal/alerting"
	"github.com/switchyard/switchyard/services/notifier/internal/rules"
	"github.com/switchyard/switchyard/services/notifier/internal/sender"
)

// Config configures the engine.
type Config struct {
	// Rules are the thresholds, windows and grouping (the alerts section)
	// and the destinations' timeouts. Required.
	Rules rules.Config
	// Senders deliver the messages; names must differ. At least one.
	Senders []sender.Sender
	// Topology sizes the state bucket, the silences bucket and the
	// NOTIFICATIONS stream (nats.replicas); zero fields take the
	// configuration's defaults.
	Topology topology.Topology
	// Logger is required.
	Logger *slog.Logger
	// Registerer receives the metrics; nil means none.
	Registerer prometheus.Registerer
	// Clock is the rules' time: windows, group wait and intervals, resolve
	// times. Default the real clock; tests drive a fake one.
	Clock clockwork.Clock
	// FlushInterval is how long audit records are gathered before their
	// aggregates are written to KV and they are acknowledged. Default
	// 250ms.
	FlushInterval time.Duration
	// BatchSize is the most records in one flush. Default 2000.
	BatchSize int
	// RetryWait is the first wait after a failed send that named none;
	// it doubles with each failure up to MaxRetryWait. Default 1s.
	RetryWait time.Duration
	// MaxRetryWait bounds the wait between retries. Default 5m.
	MaxRetryWait time.Duration
	// Retention keeps a resolved alert with nothing left to send this long
	// before its state is deleted. Default 24h.
	Retention time.Duration
	// AuditorCheckInterval is how often (rule time) the auditor's consumer
	// on AUDIT is read for the AuditLag rule. Default 15s; negative turns
	// it off.
	AuditorCheckInterval time.Duration
}

// WithDefaults fills unset fields.
func (c Config) WithDefaults() Config {
	if c.Clock == nil {
		c.Clock = clockwork.NewRealClock()
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = 250 * time.Millisecond
	}
	if c.BatchSize == 0 {
		c.BatchSize = 2000
	}
	if c.RetryWait == 0 {
		c.RetryWait = time.Second
	}
	if c.MaxRetryWait == 0 {
		c.MaxRetryWait = 5 * time.Minute
	}
	if c.Retention == 0 {
		c.Retention = 24 * time.Hour
	}
	if c.AuditorCheckInterval == 0 {
		c.AuditorCheckInterval = 15 * time.Second
	}
	c.Rules.Alerts = c.Rules.Alerts.WithDefaults()
	if c.Rules.Timeouts == nil {
		c.Rules.Timeouts = map[string]time.Duration{}
	}
	return c
}

// Engine evaluates records and sends alerts.
type Engine struct {
	js       jetstream.JetStream
	audit    *auditlog.Emitter
	cfg      Config
	log      *slog.Logger
	clock    clockwork.Clock
	settings alerting.Settings
	m        *metrics
	// names are the senders' names.
	names []string

	store    *store
	silenced *silences.Set
	// dirty wakes the evaluator after a flush.
	dirty chan struct{}
	// started and finished count evaluation passes, so that a test driving
	// the clock knows when a pass that began after its last step is over.
	started, finished atomic.Int64

	// Only the evaluation loop uses what follows.
	notifications, audits jetstream.Stream
	// lookedFor says when each published message still pending was last
	// found in NOTIFICATIONS, by Nats-Msg-Id.
	lookedFor map[string]time.Time
	// auditorChecked is when the auditor's consumer was last read.
	auditorChecked time.Time
}

// New returns an engine. Run prepares its KV bucket and stream.
func New(js jetstream.JetStream, audit *auditlog.Emitter, cfg Config) (*Engine, error) {
	cfg = cfg.WithDefaults()
	if cfg.Logger == nil {
		return nil, errors.New("notifier: Config.Logger is required")
	}
	if len(cfg.Senders) == 0 {
		return nil, errors.New("notifier: Config.Senders needs at least one sender")
	}
	names := make([]string, 0, len(cfg.Senders))
	for _, s := range cfg.Senders {
		if slices.Contains(names, s.Name()) {
			return nil, fmt.Errorf("notifier: two senders are called %q", s.Name())
		}
		names = append(names, s.Name())
	}
	a := cfg.Rules.Alerts
	return &Engine{
		js: js, audit: audit.WithClock(cfg.Clock.Now), cfg: cfg, log: cfg.Logger, clock: cfg.Clock,
		settings: alerting.Settings{
			GroupWait: a.GroupWait.D(), GroupInterval: a.GroupInterval.D(), RepeatInterval: a.RepeatInterval.D(),
			Retention: cfg.Retention,
		},
		m: newMetrics(cfg.Registerer, names), names: names,
		dirty: make(chan struct{}, 1),
	}, nil
}

// Run consumes, evaluates and sends until ctx is done.
func (e *Engine) Run(ctx context.Context) error {
	if err := e.prepare(ctx); err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return e.ingest(gctx) })
	g.Go(func() error { return e.evaluateLoop(gctx) })
	for _, s := range e.cfg.Senders {
		g.Go(func() error { return e.deliver(gctx, s) })
	}
	err := g.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// prepare declares the state bucket, the NOTIFICATIONS stream and the
// senders' consumers, and loads the state and the silences.
func (e *Engine) prepare(ctx context.Context) error {
	st, err := openStore(ctx, e.js, e.cfg.Topology.NotifierState().Config, e.m)
	if err != nil {
		return err
	}
	if err := st.watch(ctx, e.log); err != nil {
		return err
	}
	e.store = st
	sil, err := silences.Open(ctx, e.js, e.cfg.Topology)
	if err != nil {
		return fmt.Errorf("notifier: %w", err)
	}
	if e.silenced, err = sil.Watch(ctx, e.log); err != nil {
		return fmt.Errorf("notifier: %w", err)
	}
	if e.notifications, err = e.js.CreateOrUpdateStream(ctx, e.cfg.Topology.Notifications().Config); err != nil {
		return fmt.Errorf("notifier: create or update stream %s: %w", topology.StreamNotifications, err)
	}
	for _, s := range e.cfg.Senders {
		c := e.cfg.Topology.SenderConsumer(s.Name())
		if _, err := e.js.CreateOrUpdateConsumer(ctx, c.Stream, c.Config); err != nil {
			return fmt.Errorf("notifier: create or update consumer for %s: %w", s.Name(), err)
		}
	}
	return nil
}

// poke asks for an evaluation pass now.
func (e *Engine) poke() {
	select {
	case e.dirty <- struct{}{}:
	default:
	}
}

func (e *Engine) senderNames() []string { return e.names }
