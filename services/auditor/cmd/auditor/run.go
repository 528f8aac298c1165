package main

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"os"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/svcboot"
	"github.com/switchyard/switchyard/services/auditor"
)

// ErrNeedDatabaseURL is returned when the separately run auditor has no
// database_url and was not told to use the embedded store.
var ErrNeedDatabaseURL = errors.New("database_url is required when the auditor runs on its own: " +
	"set it to the Postgres every auditor shares (an embedded SQLite store per auditor would split the audit log " +
	"between them, as they share one consumer), or pass -embedded-store to keep the log in data_dir/audit.db on purpose")

func run(ctx context.Context, args []string) error {
	var embedded bool
	return svcboot.MainWith(ctx, "auditor", args, os.Stderr, svcboot.MainOptions{
		Flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&embedded, "embedded-store", false,
				"without database_url, keep the audit log in an SQLite file under data_dir (one auditor only)")
		},
		Check: func(cfg config.Config) error {
			if cfg.DatabaseURL == "" && !embedded {
				return ErrNeedDatabaseURL
			}
			return nil
		},
	}, func(ctx context.Context, env *svcboot.Env) (svcboot.Service, error) {
		log := env.Log.With(slog.String("service", "auditor"))
		c := auditor.FromConfig(env.Config, log, env.Registry)
		var err error
		if c.Tracing, err = env.Tracing("auditor"); err != nil {
			return nil, err
		}
		aud, err := auditor.New(env.JS, auditlog.NewEmitter(env.JS, "auditor"), c)
		if err != nil {
			return nil, err
		}
		env.AddReadyCheck("audit store", aud.Ready)
		return aud, nil
	})
}
