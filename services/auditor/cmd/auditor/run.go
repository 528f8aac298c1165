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
		return auditor.New(ctx, env.JS, auditor.FromConfig(cfg, env.Log.With(slog.String("service", "auditor")), env.Registry))
	})
}
