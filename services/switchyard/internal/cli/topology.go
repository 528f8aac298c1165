package cli

import (
	"encoding/json"

	"github.com/spf13/cobra"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/topology"
	"github.com/switchyard/switchyard/services/notifier"
)

// topologyCmd prints the streams, consumers and KV buckets the services
// create for the configuration, without connecting to NATS.
func topologyCmd(load func() (config.Config, error)) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "topology",
		Short: "Print the JetStream streams, consumers and KV buckets the configuration creates (without connecting)",
		Long: "Print every stream (subjects, retention, limits, replicas), durable consumer and KV bucket the\n" +
			"services create for the configuration, and which service creates it. Nothing is connected to.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := load()
			if err != nil {
				return err
			}
			plan := topology.ForConfig(cfg, notifier.Senders(cfg.Alerts))
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				enc.SetEscapeHTML(false)
				return enc.Encode(plan)
			}
			return plan.WriteText(cmd.OutOrStdout())
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JetStream's configurations as JSON")
	return cmd
}
