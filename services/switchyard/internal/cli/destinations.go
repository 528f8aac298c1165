package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/destinations"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/svcboot"
	"github.com/switchyard/switchyard/services/dispatcher"
)

// destinationsCmd groups the operator commands about destinations'
// JetStream consumers.
func destinationsCmd(load func() (config.Config, error)) *cobra.Command {
	cmd := group("destinations", "Manage the destinations' JetStream consumers")
	var yes bool
	prune := &cobra.Command{
		Use:   "prune",
		Short: "Remove the consumers of destinations that are not in the configuration",
		Long: `A dispatcher never removes a destination's consumer by itself: during a rolling deploy
a replica with an older configuration would remove the consumer that a newer one delivers
through, and give up its pending events and retries. Once a destination is gone from every
replica's configuration, this command removes its consumer and circuit breaker state.

Without --yes it only lists them, with the events that removing them gives up. It connects
to nats.url (or, for the all-in-one, nats.embedded_listen while it runs).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := load()
			if err != nil {
				return err
			}
			nc, err := connectNATS(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			defer nc.Close()
			js, err := jetstream.New(nc)
			if err != nil {
				return fmt.Errorf("JetStream: %w", err)
			}
			return pruneDestinations(cmd, js, cfg.Destinations, yes)
		},
	}
	prune.Flags().BoolVar(&yes, "yes", false, "delete them (their waiting events are given up)")
	cmd.AddCommand(prune)
	return cmd
}

func pruneDestinations(cmd *cobra.Command, js jetstream.JetStream, configured []config.Destination, yes bool) error {
	ctx := cmd.Context()
	out := cmd.OutOrStdout()
	orphans, err := destinations.Unconfigured(ctx, js, configured)
	if err != nil {
		return err
	}
	if len(orphans) == 0 {
		fmt.Fprintln(out, "every destination consumer belongs to a configured destination; nothing to prune")
		return nil
	}
	rows := make([][]string, len(orphans))
	var waiting uint64
	for i, o := range orphans {
		rows[i] = []string{o.Destination, o.Consumer, strconv.FormatUint(o.NumPending, 10), strconv.Itoa(o.NumAckPending)}
		waiting += o.NumPending + uint64(o.NumAckPending)
	}
	if err := table(out, "DESTINATION\tCONSUMER\tPENDING\tIN FLIGHT OR AWAITING RETRY", rows); err != nil {
		return err
	}
	if !yes {
		fmt.Fprintf(out, "\nnot in the configuration: %d consumer(s), %d event(s) waiting. Make sure no dispatcher replica is still\n"+
			"configured with them, then run again with --yes to delete them (the waiting events are given up).\n", len(orphans), waiting)
		return nil
	}
	var failed []string
	for _, o := range orphans {
		if err := dispatcher.Prune(ctx, js, o.Destination); err != nil {
			fmt.Fprintf(out, "%s: %v\n", o.Destination, err)
			failed = append(failed, o.Destination)
			continue
		}
		fmt.Fprintf(out, "deleted %s (%d event(s) given up)\n", o.Consumer, o.NumPending+uint64(o.NumAckPending))
	}
	if len(failed) > 0 {
		return fmt.Errorf("not pruned: %s", strings.Join(failed, ", "))
	}
	return nil
}

// errNoNATS says how to give the command a server to talk to.
var errNoNATS = errors.New("this command talks to NATS: set nats.url, or nats.embedded_listen and keep `switchyard run` running")

// connectNATS connects to the configuration's NATS server: nats.url, or
// the all-in-one's embedded server on nats.embedded_listen.
func connectNATS(ctx context.Context, cfg config.Config) (*nats.Conn, error) {
	url, auth := cfg.NATS.URL, svcboot.ExternalAuth(cfg.NATS)
	if url == "" {
		listen := cfg.NATS.EmbeddedListen
		if listen == "" {
			return nil, errNoNATS
		}
		if strings.HasPrefix(listen, ":") || strings.HasPrefix(listen, "0.0.0.0:") {
			listen = "127.0.0.1:" + listen[strings.LastIndex(listen, ":")+1:]
		}
		url = "nats://" + listen
		var err error
		if auth, err = svcboot.EmbeddedAuth(cfg, false); err != nil {
			return nil, err
		}
	}
	return natsx.Connect(ctx, url, natsx.ConnectOptions{
		Name: "switchyard-cli", Auth: auth, Logger: slog.New(slog.DiscardHandler),
	})
}
