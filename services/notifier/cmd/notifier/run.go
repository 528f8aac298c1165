package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/svcboot"
	"github.com/switchyard/switchyard/services/notifier"
)

func run(ctx context.Context, args []string) error {
	return svcboot.Main(ctx, "notifier", args, os.Stderr, func(ctx context.Context, env *svcboot.Env) (svcboot.Service, error) {
		log := env.Log.With(slog.String("service", "notifier"))
		return notifier.New(env.JS, auditlog.NewEmitter(env.JS, "notifier"), notifier.FromConfig(env.Config, log, env.Registry))
	})
}
