// Package auditor keeps Switchyard's audit log: it writes every audit record
// and every stored event to Postgres (or the embedded SQLite store), serves
// the query and replay API, and applies retention.
package auditor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/httpserve"
	"github.com/switchyard/switchyard/pkg/netaddr"
	"github.com/switchyard/switchyard/pkg/subjects"
	"github.com/switchyard/switchyard/pkg/topology"
	"github.com/switchyard/switchyard/services/auditor/internal/api"
	"github.com/switchyard/switchyard/services/auditor/internal/store"
	"github.com/switchyard/switchyard/services/auditor/internal/ui"
	"github.com/switchyard/switchyard/services/auditor/internal/writer"
)

// Config configures the auditor.
type Config struct {
	// DatabaseURL selects Postgres; empty selects SQLite under DataDir.
	DatabaseURL string
	// DataDir holds the SQLite file (audit.db) when DatabaseURL is empty.
	DataDir string
	// Listen is the query API address. Default 127.0.0.1:8081. Without
	// AdminToken it must be a loopback address.
	Listen string
	// AdminToken is the bearer token the API requires; empty: none, and
	// the API listens on loopback only.
	AdminToken string
	// BatchSize is the most items written per transaction. Default 500.
	BatchSize int
	// Destinations are the configured destinations: an event routed to one
	// gets a pending delivery, and /v1/destinations lists them all.
	Destinations []config.Destination
	// Sources are the configured webhook source names, which the console's
	// overview lists even before they sent anything.
	Sources []string
	// PayloadRetention is how long event bodies are kept. Default 30 days.
	PayloadRetention time.Duration
	// RecordRetention is how long rows are kept. Default 90 days.
	RecordRetention time.Duration
	// RetentionInterval is the time between retention runs. Default 1h.
	RetentionInterval time.Duration
	// RetentionBatch is the most rows one retention statement changes.
	// Default 1000.
	RetentionBatch int
	// LagThreshold: the writer reports itself behind after this long.
	// Default 30s.
	LagThreshold time.Duration
	// LagInterval is how often the writer measures its lag (and sends
	// AuditLag while behind). Default 10s.
	LagInterval time.Duration
	// Topology declares the silences bucket (nats.replicas); zero fields
	// take the configuration's defaults.
	Topology topology.Topology
	// DuplicateWindow is EVENTS' Nats-Msg-Id window (nats.duplicate_window):
	// the same replay asked for twice within it is sent once. Default 2m.
	DuplicateWindow time.Duration
	// BulkReplayBudget bounds the time one bulk replay request spends, so
	// that its answer fits the API server's write timeout; the rest is left
	// for the next request. Default 20s.
	BulkReplayBudget time.Duration
	// Logger is required.
	Logger *slog.Logger
	// Registerer receives the metrics; nil means none.
	Registerer prometheus.Registerer
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// FromConfig is the auditor's part of the configuration file.
func FromConfig(c config.Config, log *slog.Logger, reg prometheus.Registerer) Config {
	a := c.Auditor
	return Config{
		DatabaseURL:       c.DatabaseURL.Reveal(),
		DataDir:           c.DataDir,
		Listen:            a.Listen,
		AdminToken:        a.AdminToken.Reveal(),
		BatchSize:         a.BatchSize,
		Destinations:      c.Destinations,
		Sources:           sourceNames(c.Sources),
		PayloadRetention:  a.Retention.Payloads.D(),
		RecordRetention:   a.Retention.Records.D(),
		RetentionInterval: a.Retention.Interval.D(),
		RetentionBatch:    a.Retention.BatchSize,
		LagThreshold:      a.LagThreshold.D(),
		Topology:          topology.FromConfig(c),
		DuplicateWindow:   c.NATS.DuplicateWindow.D(),
		Logger:            log,
		Registerer:        reg,
	}
}

func sourceNames(sources []config.Source) []string {
	out := make([]string, len(sources))
	for i, s := range sources {
		out[i] = s.Name
	}
	return out
}

// WithDefaults fills unset fields.
func (c Config) WithDefaults() Config {
	if c.Listen == "" {
		c.Listen = config.DefaultAuditorListen
	}
	if c.PayloadRetention == 0 {
		c.PayloadRetention = config.DefaultPayloadRetention.D()
	}
	if c.RecordRetention == 0 {
		c.RecordRetention = config.DefaultRecordRetention.D()
	}
	if c.RetentionInterval == 0 {
		c.RetentionInterval = time.Hour
	}
	if c.RetentionBatch == 0 {
		c.RetentionBatch = 1000
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// ErrOpenAPIWithoutToken is returned when the API would listen beyond
// loopback without an admin token.
var ErrOpenAPIWithoutToken = errors.New("the audit API would be reachable from other hosts without a token: set auditor.admin_token, or listen on 127.0.0.1")

// Validate checks the configuration.
func (c Config) Validate() error {
	if c.Logger == nil {
		return errors.New("auditor: Config.Logger is required")
	}
	if c.AdminToken == "" {
		host, _, err := net.SplitHostPort(c.Listen)
		if err != nil {
			return fmt.Errorf("auditor: listen address %q: %w", c.Listen, err)
		}
		if !netaddr.IsLoopback(host) {
			return fmt.Errorf("auditor: listen %s: %w", c.Listen, ErrOpenAPIWithoutToken)
		}
	}
	return nil
}

// Auditor is the running audit service.
type Auditor struct {
	cfg    Config
	js     jetstream.JetStream
	audit  *auditlog.Emitter
	store  *openingStore
	writer *writer.Writer
	// api serves the query API and, under /ui/, the console.
	api http.Handler
}

// OpenStore opens and migrates the configured store, once: the `migrate`
// command's way. The auditor itself opens Postgres in the background and
// retries (see New).
func OpenStore(ctx context.Context, databaseURL, dataDir string) (store.Store, error) {
	var st store.Store
	var err error
	if databaseURL != "" {
		st, err = store.OpenPostgres(ctx, databaseURL)
	} else {
		st, err = openSQLite(ctx, dataDir)
	}
	if err != nil {
		return nil, err
	}
	if err := st.Migrate(ctx); err != nil {
		st.Close()
		return nil, err
	}
	return st, nil
}

// ErrNoDataDir is returned when the embedded store has no directory.
var ErrNoDataDir = errors.New("the embedded audit store (no database_url) needs data_dir")

// openSQLite opens the embedded store's file under dataDir, creating the
// directory if needed.
func openSQLite(ctx context.Context, dataDir string) (store.Store, error) {
	if dataDir == "" {
		return nil, ErrNoDataDir
	}
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		return nil, fmt.Errorf("create data_dir for the embedded audit store: %w", err)
	}
	st, err := store.OpenSQLite(ctx, filepath.Join(dataDir, "audit.db"))
	if err != nil {
		return nil, fmt.Errorf("embedded audit store: %w", err)
	}
	return st, nil
}

// Router returns the function naming the destinations a subject is routed
// to, as the dispatcher's consumer filters route it.
func Router(dests []config.Destination) func(subject string) []string {
	return func(subject string) []string {
		var out []string
		for _, d := range dests {
			for _, filter := range d.Subjects {
				// A literal subject overlaps a filter exactly when it matches.
				if subjects.Overlap(subject, filter) {
					out = append(out, d.Name)
					break
				}
			}
		}
		return out
	}
}

// New prepares the store, the writer and the API. The embedded store
// (SQLite) is opened at once, and an error is returned if it cannot be.
// Postgres is connected to and migrated in the background, retried with
// backoff until it works, so that an auditor started while Postgres is down
// runs anyway: the writer waits (records stay in JetStream) and reports its
// lag, the API answers 503 saying why, and Ready reports it. A malformed
// database URL is an error at once.
func New(ctx context.Context, js jetstream.JetStream, cfg Config) (*Auditor, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var st *openingStore
	if cfg.DatabaseURL == "" {
		sq, err := openSQLite(ctx, cfg.DataDir)
		if err == nil {
			if err = sq.Migrate(ctx); err != nil {
				sq.Close()
			}
		}
		if err != nil {
			return nil, err
		}
		st = opened(sq)
	} else {
		if err := store.CheckPostgresURL(cfg.DatabaseURL); err != nil {
			return nil, err
		}
		st = openInBackground(func(ctx context.Context) (store.Store, error) {
			return OpenStore(ctx, cfg.DatabaseURL, "")
		}, cfg.Now, cfg.Logger)
	}
	emitter := auditlog.NewEmitter(js, "auditor").WithClock(cfg.Now)
	w, err := writer.New(js, st, writer.Config{
		BatchSize:    cfg.BatchSize,
		Route:        Router(cfg.Destinations),
		LagInterval:  cfg.LagInterval,
		LagThreshold: cfg.LagThreshold,
		Audit:        emitter,
		StoreState:   st.state,
		Logger:       cfg.Logger,
		Registerer:   cfg.Registerer,
		Now:          cfg.Now,
	})
	if err != nil {
		st.Close()
		return nil, err
	}
	names := make([]string, len(cfg.Destinations))
	for i, d := range cfg.Destinations {
		names[i] = d.Name
	}
	ops := api.NewOps(api.Config{
		Store: st, JS: js, Audit: emitter, AdminToken: cfg.AdminToken, Destinations: names, Topology: cfg.Topology, DuplicateWindow: cfg.DuplicateWindow,
		BulkReplayBudget: cfg.BulkReplayBudget, Logger: cfg.Logger, Now: cfg.Now,
	})
	console, err := ui.New(ui.Config{Store: st, Ops: ops, AdminToken: cfg.AdminToken, Destinations: names, Sources: cfg.Sources,
		Logger: cfg.Logger.With(slog.String("component", "console")), Now: cfg.Now})
	if err != nil {
		st.Close()
		return nil, err
	}
	return &Auditor{cfg: cfg, js: js, audit: emitter, store: st, writer: w, api: ui.Mount(ops.Handler(), console)}, nil
}

// Ready returns nil once the audit store is open and migrated, and else
// why it is not (for the process's /readyz).
func (a *Auditor) Ready(context.Context) error { return a.store.notReady() }

// Handler returns the query API and the console (/ui/), for tests and
// embedding.
func (a *Auditor) Handler() http.Handler { return a.api }

// RunWriter consumes and writes until ctx is done, without serving the API.
func (a *Auditor) RunWriter(ctx context.Context) error { return a.writer.Run(ctx) }

// Run writes, applies retention and serves the API until ctx is done, then
// closes the store.
func (a *Auditor) Run(ctx context.Context) error {
	defer a.store.Close()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.writer.Run(gctx) })
	g.Go(func() error { a.runRetention(gctx); return nil })
	g.Go(func() error { a.recordSilences(gctx); return nil })
	g.Go(func() error { return httpserve.Run(gctx, "auditor", a.cfg.Listen, a.api, a.cfg.Logger) })
	return g.Wait()
}

// Close stops opening the store and releases it; call it when only
// RunWriter was used.
func (a *Auditor) Close() error { return a.store.Close() }

func (a *Auditor) runRetention(ctx context.Context) {
	select { // nothing to do before the store is open
	case <-a.store.ready:
	case <-ctx.Done():
		return
	}
	tick := time.NewTicker(a.cfg.RetentionInterval)
	defer tick.Stop()
	for {
		if _, err := a.ApplyRetention(ctx); err != nil && ctx.Err() == nil {
			a.cfg.Logger.WarnContext(ctx, "audit retention stopped early; it runs again later", slog.Any("error", err))
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Retained says what one retention run removed.
type Retained struct {
	PayloadsDropped int
	RowsDeleted     int
}

// ApplyRetention drops the payloads and deletes the rows that are past
// their retention, in bounded batches (each its own short transaction).
func (a *Auditor) ApplyRetention(ctx context.Context) (Retained, error) {
	var r Retained
	now := a.cfg.Now()
	for {
		n, err := a.store.DropPayloads(ctx, now.Add(-a.cfg.PayloadRetention), now, a.cfg.RetentionBatch)
		r.PayloadsDropped += n
		if err != nil {
			return r, err
		}
		if n < a.cfg.RetentionBatch {
			break
		}
	}
	for {
		n, err := a.store.DeleteBefore(ctx, now.Add(-a.cfg.RecordRetention), a.cfg.RetentionBatch)
		r.RowsDeleted += n
		if err != nil {
			return r, err
		}
		if n == 0 {
			break
		}
	}
	if r.PayloadsDropped > 0 || r.RowsDeleted > 0 {
		a.cfg.Logger.InfoContext(ctx, "audit retention applied", slog.Int("payloads_dropped", r.PayloadsDropped), slog.Int("rows_deleted", r.RowsDeleted))
	}
	return r, nil
}
