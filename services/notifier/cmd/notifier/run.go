package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/svcboot"
	"github.com/switchyard/switchyard/pkg/topology"
	"github.com/switchyard/switchyard/services/notifier"
)

func run(ctx context.Context, args []string) error {
	return svcboot.Main(ctx, "notifier", args, os.Stderr, func(ctx context.Context, env *svcboot.Env) (svcboot.Service, error) {
		return notifier.New(env.JS, auditlog.NewEmitter(env.JS, "notifier"), notifier.Config{
			Alerts:       env.Config.Alerts,
			Destinations: env.Config.Destinations,
			Topology:     topology.FromConfig(env.Config),
			Logger:       env.Log.With(slog.String("service", "notifier")),
			Registerer:   env.Registry,
		})
	})
}
