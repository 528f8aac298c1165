// Package auditor keeps Switchyard's audit log: it writes every audit record
// and every stored event to Postgres (or the embedded SQLite store) and
// serves the query API.
package auditor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/switchyard/switchyard/pkg/httpserve"
	"github.com/switchyard/switchyard/services/auditor/internal/api"
	"github.com/switchyard/switchyard/services/auditor/internal/store"
	"github.com/switchyard/switchyard/services/auditor/internal/writer"
)

// Config configures the auditor.
type Config struct {
	// DatabaseURL selects Postgres; empty selects SQLite under DataDir.
	DatabaseURL string
	// DataDir holds the SQLite file (audit.db) when DatabaseURL is empty.
	DataDir string
	// Listen is the query API address. Default 127.0.0.1:8081.
	Listen string
	// BatchSize is the most items written per transaction. Default 500.
	BatchSize int
	// Logger is required.
	Logger *slog.Logger
	// Registerer receives the metrics; nil means none.
	Registerer prometheus.Registerer
}

// Auditor is the running audit service.
type Auditor struct {
	cfg    Config
	store  store.Store
	writer *writer.Writer
	api    *echo.Echo
}

// OpenStore opens and migrates the configured store.
func OpenStore(ctx context.Context, databaseURL, dataDir string) (store.Store, error) {
	var st store.Store
	var err error
	if databaseURL != "" {
		st, err = store.OpenPostgres(ctx, databaseURL)
	} else {
		if dataDir == "" {
			return nil, errors.New("auditor: the embedded store needs a data directory")
		}
		st, err = store.OpenSQLite(ctx, filepath.Join(dataDir, "audit.db"))
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

// New opens the store (applying migrations) and prepares the writer and API.
func New(ctx context.Context, js jetstream.JetStream, cfg Config) (*Auditor, error) {
	if cfg.Logger == nil {
		return nil, errors.New("auditor: Config.Logger is required")
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:8081"
	}
	st, err := OpenStore(ctx, cfg.DatabaseURL, cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("auditor: %w", err)
	}
	w, err := writer.New(js, st, writer.Config{BatchSize: cfg.BatchSize, Logger: cfg.Logger, Registerer: cfg.Registerer})
	if err != nil {
		st.Close()
		return nil, err
	}
	return &Auditor{cfg: cfg, store: st, writer: w, api: api.WithSilences(api.New(st), js)}, nil
}

// Handler returns the query API, for tests and embedding.
func (a *Auditor) Handler() http.Handler { return a.api }

// RunWriter consumes and writes until ctx is done, without serving the API.
func (a *Auditor) RunWriter(ctx context.Context) error { return a.writer.Run(ctx) }

// Run writes and serves the API until ctx is done, then closes the store.
func (a *Auditor) Run(ctx context.Context) error {
	defer a.store.Close()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.writer.Run(gctx) })
	g.Go(func() error { return httpserve.Run(gctx, "auditor", a.cfg.Listen, a.api, a.cfg.Logger) })
	return g.Wait()
}

// Close releases the store; call it when only RunWriter was used.
func (a *Auditor) Close() error { return a.store.Close() }
