package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/svcboot"
	"github.com/switchyard/switchyard/services/ingress"
)

func run(ctx context.Context, args []string) error {
	return svcboot.Main(ctx, "ingress", args, os.Stderr, func(ctx context.Context, env *svcboot.Env) (svcboot.Service, error) {
		cfg := env.Config
		return ingress.New(env.JS, auditlog.NewEmitter(env.JS, "ingress"), ingress.Config{
			Listen:         cfg.Ingress.Listen,
			Sources:        cfg.Sources,
			ReadTimeout:    cfg.Ingress.ReadTimeout.D(),
			PublishTimeout: cfg.Ingress.PublishTimeout.D(),
			Logger:         env.Log.With(slog.String("service", "ingress")),
			Registerer:     env.Registry,
		})
	})
}
