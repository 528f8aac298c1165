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
		return dispatcher.New(env.JS, auditlog.NewEmitter(env.JS, "dispatcher"), dispatcher.FromConfig(env.Config, log, env.Registry))
	})
}
