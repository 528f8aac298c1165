package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/svcboot"
	"github.com/switchyard/switchyard/services/dispatcher"
)

func run(ctx context.Context, args []string) error {
	return svcboot.Main(ctx, "dispatcher", args, os.Stderr, func(ctx context.Context, env *svcboot.Env) (svcboot.Service, error) {
		log := env.Log.With(slog.String("service", "dispatcher"))
		c := dispatcher.FromConfig(env.Config, log, env.Registry)
		var err error
		if c.Tracing, err = env.Tracing("dispatcher"); err != nil {
			return nil, err
		}
		return dispatcher.New(env.JS, auditlog.NewEmitter(env.JS, "dispatcher"), c)
	})
}
