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
	"github.com/switchyard/switchyard/pkg/telemetry"
	"github.com/switchyard/switchyard/pkg/topology"
	"github.com/switchyard/switchyard/services/auditor/internal/api"
	"github.com/switchyard/switchyard/services/auditor/internal/store"
	"github.com/switchyard/switchyard/services/auditor/internal/ui"
	"github.com/switchyard/switchyard/services/auditor/internal/writer"
)

// Config is what the auditor is built from: the sections of the
// configuration file it reads, and what the process injects.
type Config struct {
	// Auditor is the file's auditor section: the API's listen address and
	// admin token, the write batch, retention, the lag threshold.
	Auditor config.Auditor
	// DatabaseURL selects Postgres (database_url); empty selects the
	// embedded SQLite store under DataDir.
	DatabaseURL config.Secret
	// DataDir holds the SQLite file (audit.db) when DatabaseURL is empty
	// (data_dir); then it is required.
	DataDir string
	// Destinations are the configured destinations: an event routed to one
	// gets a pending delivery, and /v1/destinations lists them all.
	Destinations []config.Destination
	// Sources are the webhook sources (sources), which the console's
	// overview lists even before they sent anything.
	Sources []config.Source
	// Topology declares the silences bucket and gives EVENTS' duplicate
	// window, within which the same replay asked for twice is sent once
	// (nats.*).
	Topology topology.Topology
	// Logger is required.
	Logger *slog.Logger
	// Registerer receives the metrics; nil means none.
	Registerer prometheus.Registerer
	// Now is the clock; nil is time.Now.
	Now func() time.Time
	// Tracing makes each replay a new trace linked to the original one;
	// nil is off (svcboot.Env.Tracing).
	Tracing *telemetry.Tracing
	// Tuning holds timings that are not in the configuration file.
	// FromConfig leaves it zero: the auditor's own values.
	Tuning Tuning
}

// Tuning holds the auditor's internal timings; tests shorten them. A zero
// field takes the auditor's own value.
type Tuning struct {
	// LagInterval is how often the writer measures its lag (and sends
	// AuditLag while behind).
	LagInterval time.Duration
	// BulkReplayBudget bounds the time one bulk replay request spends, so
	// that its answer fits the API server's write timeout; the rest is left
	// for the next request.
	BulkReplayBudget time.Duration
}

// FromConfig is the auditor's part of a loaded configuration.
func FromConfig(c config.Config, log *slog.Logger, reg prometheus.Registerer) Config {
	return Config{
		Auditor:      c.Auditor,
		DatabaseURL:  c.DatabaseURL,
		DataDir:      c.DataDir,
		Destinations: c.Destinations,
		Sources:      c.Sources,
		Topology:     topology.FromConfig(c),
		Logger:       log,
		Registerer:   reg,
	}
}

// WithDefaults returns c with every unset setting at the configuration
// file's default (config.Config.WithDefaults, the one place they are
// written). DataDir is not defaulted: without a database URL it says where
// the audit log goes, which only the caller can.
func (c Config) WithDefaults() Config {
	c.Auditor = config.Config{Auditor: c.Auditor}.WithDefaults().Auditor
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// ErrOpenAPIWithoutToken is returned when the API would listen beyond
// loopback without an admin token.
var ErrOpenAPIWithoutToken = errors.New("the audit API would be reachable from other hosts without a token: set auditor.admin_token, or listen on 127.0.0.1")

// Validate checks what the service needs besides a valid configuration
// file (config.Load checks the file's rules, the one place they are
// written): the injected logger, a usable topology, and an API that is not
// open to other hosts without a token (config.Load refuses that too; the
// auditor refuses it whoever built its configuration).
func (c Config) Validate() error {
	if c.Logger == nil {
		return errors.New("auditor: Config.Logger is required")
	}
	if c.Auditor.AdminToken == "" {
		host, _, err := net.SplitHostPort(c.Auditor.Listen)
		if err != nil {
			return fmt.Errorf("auditor: listen address %q: %w", c.Auditor.Listen, err)
		}
		if !netaddr.IsLoopback(host) {
			return fmt.Errorf("auditor: listen %s: %w", c.Auditor.Listen, ErrOpenAPIWithoutToken)
		}
	}
	if err := c.Topology.Validate(); err != nil {
		return err
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

// Migrate opens the store cfg names (DatabaseURL, else SQLite under
// DataDir), applies its schema migrations and closes it: the `migrate`
// command. The auditor itself migrates when it opens the store (New).
func Migrate(ctx context.Context, cfg Config) error {
	st, err := openStore(ctx, cfg.DatabaseURL.Reveal(), cfg.DataDir)
	if err != nil {
		return err
	}
	return st.Close()
}

// openStore opens and migrates the store, once.
func openStore(ctx context.Context, databaseURL, dataDir string) (store.Store, error) {
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

// New prepares the store, the writer and the API; Run starts them. The
// embedded store (SQLite) is opened and migrated at once, and an error is
// returned if it cannot be. Postgres is connected to and migrated in the
// background, retried with backoff until it works, so that an auditor
// started while Postgres is down runs anyway: the writer waits (records
// stay in JetStream) and reports its lag, the API answers 503 saying why,
// and Ready reports it. A malformed database URL is an error at once.
// Audit records (AuditLag, replays, silence changes) go through audit.
func New(js jetstream.JetStream, audit *auditlog.Emitter, cfg Config) (*Auditor, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if audit == nil {
		return nil, errors.New("auditor: an audit emitter is required (it records replays, silence changes and the audit lag)")
	}
	var st *openingStore
	if cfg.DatabaseURL == "" {
		// A local file: opening and migrating it is quick, and has nothing
		// to wait for that a caller could cancel.
		sq, err := openStore(context.Background(), "", cfg.DataDir)
		if err != nil {
			return nil, err
		}
		st = opened(sq)
	} else {
		databaseURL := cfg.DatabaseURL.Reveal()
		if err := store.CheckPostgresURL(databaseURL); err != nil {
			return nil, err
		}
		st = openInBackground(func(ctx context.Context) (store.Store, error) {
			return openStore(ctx, databaseURL, "")
		}, cfg.Now, cfg.Logger)
	}
	emitter := audit.WithClock(cfg.Now)
	a := cfg.Auditor
	w, err := writer.New(js, st, writer.Config{
		BatchSize:    a.BatchSize,
		Route:        Router(cfg.Destinations),
		LagInterval:  cfg.Tuning.LagInterval,
		LagThreshold: a.LagThreshold.D(),
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
	sources := make([]string, len(cfg.Sources))
	for i, s := range cfg.Sources {
		sources[i] = s.Name
	}
	ops := api.NewOps(api.Config{
		Store: st, JS: js, Audit: emitter, AdminToken: a.AdminToken.Reveal(), Destinations: names, Topology: cfg.Topology,
		BulkReplayBudget: cfg.Tuning.BulkReplayBudget, Logger: cfg.Logger, Now: cfg.Now, Tracing: cfg.Tracing,
	})
	console, err := ui.New(ui.Config{Store: st, Ops: ops, AdminToken: a.AdminToken.Reveal(), Destinations: names, Sources: sources,
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
	g.Go(func() error { return httpserve.Run(gctx, "auditor", a.cfg.Auditor.Listen, a.api, a.cfg.Logger) })
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
	tick := time.NewTicker(a.cfg.Auditor.Retention.Interval.D())
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
		n, err := a.store.DropPayloads(ctx, now.Add(-a.cfg.Auditor.Retention.Payloads.D()), now, a.cfg.Auditor.Retention.BatchSize)
		r.PayloadsDropped += n
		if err != nil {
			return r, err
		}
		if n < a.cfg.Auditor.Retention.BatchSize {
			break
		}
	}
	for {
		n, err := a.store.DeleteBefore(ctx, now.Add(-a.cfg.Auditor.Retention.Records.D()), a.cfg.Auditor.Retention.BatchSize)
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
