// Package cli is the switchyard command line.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/contracts"
	"github.com/switchyard/switchyard/pkg/version"
	"github.com/switchyard/switchyard/services/auditor"
	"github.com/switchyard/switchyard/services/switchyard/internal/app"
)

// ErrUnknownCommand is returned for a subcommand that does not exist: a
// typo in a script fails instead of printing the help and exiting 0.
var ErrUnknownCommand = errors.New("unknown command")

// ErrUnknownSource is returned by send-webhook for a --source the
// configuration does not name.
var ErrUnknownSource = errors.New("no source")

// DefaultConfig is the configuration file used when --config is not given.
const DefaultConfig = "deployments/demo.yaml"

// Execute runs the command line.
func Execute(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	root := &cobra.Command{
		Use:           "switchyard",
		Short:         "Switchyard: the integration gateway that does not fail silently",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	var cfgPath string
	root.PersistentFlags().StringVarP(&cfgPath, "config", "c", DefaultConfig, "configuration file")
	load := func() (config.Config, error) { return config.Load(cfgPath, os.LookupEnv) }

	root.AddCommand(&cobra.Command{
		Use:   "run",
		Short: "Run all services in one process (embedded NATS; embedded audit store unless database_url is set)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := load()
			if err != nil {
				return err
			}
			return app.Run(cmd.Context(), cfg, stderr)
		},
	})
	root.AddCommand(&cobra.Command{
		Use:   "check-config",
		Short: "Validate the configuration file and exit",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := load()
			if err != nil {
				return err
			}
			// The contracts' schema files, as ingress compiles them at start.
			if _, err := contracts.Compile(cfg); err != nil {
				return fmt.Errorf("config %s: %w", cfgPath, err)
			}
			cmd.Printf("%s is valid: %d sources, %d destinations\n", cfgPath, len(cfg.Sources), len(cfg.Destinations))
			return nil
		},
	})
	root.AddCommand(&cobra.Command{
		Use:   "migrate",
		Short: "Apply the audit store's schema migrations and exit",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := load()
			if err != nil {
				return err
			}
			if err := auditor.Migrate(cmd.Context(), auditor.FromConfig(cfg, nil, nil)); err != nil {
				return err
			}
			cmd.Println("audit store schema is up to date")
			return nil
		},
	})
	root.AddCommand(sendWebhookCmd(load))
	root.AddCommand(transformCmd(load, func() string { return cfgPath }))
	root.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run:   func(cmd *cobra.Command, _ []string) { cmd.Println("switchyard", version.String()) },
	})
	root.AddCommand(silencesCmd(load))
	root.AddCommand(destinationsCmd(load))
	root.AddCommand(sourcesCmd(load))
	root.AddCommand(topologyCmd(load))
	root.AddCommand(quarantineCmd(load))
	root.AddCommand(auditCmds(load)...)
	return root.ExecuteContext(ctx)
}
