package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/switchyard/switchyard/pkg/svcboot"
	"github.com/switchyard/switchyard/services/auditor"
)

func run(ctx context.Context, args []string) error {
	return svcboot.Main(ctx, "auditor", args, os.Stderr, func(ctx context.Context, env *svcboot.Env) (svcboot.Service, error) {
		cfg := env.Config
		return auditor.New(ctx, env.JS, auditor.Config{
			DatabaseURL: cfg.DatabaseURL.Reveal(),
			DataDir:     cfg.DataDir,
			Listen:      cfg.Auditor.Listen,
			BatchSize:   cfg.Auditor.BatchSize,
			Logger:      env.Log.With(slog.String("service", "auditor")),
			Registerer:  env.Registry,
		})
	})
}
