// Package app wires the four Switchyard services into one process: the
// all-in-one that the quick start and small installations run, with an
// embedded NATS server and (without database_url) the embedded audit store.
// Each service is built as its own binary builds it (New with FromConfig),
// so the two cannot differ.
package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"golang.org/x/sync/errgroup"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/svcboot"
	"github.com/switchyard/switchyard/services/auditor"
	"github.com/switchyard/switchyard/services/dispatcher"
	"github.com/switchyard/switchyard/services/ingress"
	"github.com/switchyard/switchyard/services/notifier"
	"github.com/switchyard/switchyard/services/switchyard/internal/demo"
)

// Run starts every service and blocks until ctx is done or one fails.
func Run(ctx context.Context, cfg config.Config, logOut io.Writer) error {
	env, err := svcboot.Start(ctx, cfg, svcboot.Options{Name: "switchyard", AllowEmbedded: true, LogOutput: logOut})
	if err != nil {
		return err
	}
	defer env.Close()
	log := env.Log

	ac := auditor.FromConfig(cfg, serviceLog(log, "auditor"), env.Registry)
	if ac.Tracing, err = env.Tracing("auditor"); err != nil {
		return err
	}
	aud, err := auditor.New(env.JS, auditlog.NewEmitter(env.JS, "auditor"), ac)
	if err != nil {
		return err
	}
	dc := dispatcher.FromConfig(cfg, serviceLog(log, "dispatcher"), env.Registry)
	ic := ingress.FromConfig(cfg, serviceLog(log, "ingress"), env.Registry)
	// Each service its own tracer, so that a trace names the service of
	// every span, as when they run separately.
	if dc.Tracing, err = env.Tracing("dispatcher"); err == nil {
		ic.Tracing, err = env.Tracing("ingress")
	}
	if err != nil {
		aud.Close()
		return err
	}
	disp, err := dispatcher.New(env.JS, auditlog.NewEmitter(env.JS, "dispatcher"), dc)
	if err != nil {
		aud.Close()
		return err
	}
	notif, err := notifier.New(env.JS, auditlog.NewEmitter(env.JS, "notifier"), notifier.FromConfig(cfg, serviceLog(log, "notifier"), env.Registry))
	if err != nil {
		aud.Close()
		return err
	}
	ing, err := ingress.New(env.JS, auditlog.NewEmitter(env.JS, "ingress"), ic)
	if err != nil {
		aud.Close()
		return err
	}
	// Destination consumers deliver events stored after they exist: create
	// them before ingress accepts anything.
	if err := disp.Provision(ctx); err != nil {
		aud.Close()
		return err
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return aud.Run(gctx) })
	g.Go(func() error { return disp.Run(gctx) })
	g.Go(func() error { return notif.Run(gctx) })
	g.Go(func() error { return ing.Run(gctx) })
	g.Go(func() error { return env.ServeOps(gctx) })
	if cfg.Demo.Enabled {
		d := demo.New(env.JS, demo.Config{
			PartnerListen: cfg.Demo.PartnerListen,
			GenerateEvery: cfg.Demo.GenerateEvery.D(),
			Logger:        serviceLog(log, "demo"),
		})
		g.Go(func() error { return d.Run(gctx) })
	}
	log.InfoContext(ctx, "Switchyard is running",
		slog.String("ingress", cfg.Ingress.Listen), slog.String("audit_api", cfg.Auditor.Listen),
		slog.String("ops", cfg.Ops.Listen), slog.Int("sources", len(cfg.Sources)), slog.Int("destinations", len(cfg.Destinations)),
		slog.String("audit_store", storeName(cfg)))
	if err := g.Wait(); err != nil {
		return fmt.Errorf("switchyard: %w", err)
	}
	log.Info("Switchyard stopped")
	return nil
}

// serviceLog is the log of one service: the same attribute as a separately
// run service's.
func serviceLog(log *slog.Logger, name string) *slog.Logger {
	return log.With(slog.String("service", name))
}

func storeName(cfg config.Config) string {
	if cfg.DatabaseURL != "" {
		return "postgres"
	}
	return "sqlite (" + cfg.DataDir + "/audit.db)"
}
