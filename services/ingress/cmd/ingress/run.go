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
		log := env.Log.With(slog.String("service", "ingress"))
		c := ingress.FromConfig(env.Config, log, env.Registry)
		var err error
		if c.Tracing, err = env.Tracing("ingress"); err != nil {
			return nil, err
		}
		return ingress.New(env.JS, auditlog.NewEmitter(env.JS, "ingress"), c)
	})
}
