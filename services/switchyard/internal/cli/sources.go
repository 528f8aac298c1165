package cli

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/services/ingress"
)

// sourcesCmd groups the operator commands about sources.
func sourcesCmd(load func() (config.Config, error)) *cobra.Command {
	cmd := group("sources", "Work with the configured sources")
	var dryRun bool
	poll := &cobra.Command{
		Use:   "poll NAME --dry-run",
		Short: "Run one round of a polled source against its real API and print what would be stored",
		Long: `Asks the partner's API for the pages after the source's cursor, as ingress's poller does,
with the source's credentials, and prints each item as the event it would be (subject, id,
body), whether it is stored already, and where the cursor would move. Nothing is stored
and the cursor does not move: the poller running in ingress is not disturbed.

With NATS reachable (nats.url, or nats.embedded_listen while the all-in-one runs) it
starts from the stored cursor and says which items are stored already; without, from the
source's cursor.initial.`,
		Example: "  switchyard sources poll demo-orders --dry-run",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !dryRun {
				return errors.New("only --dry-run is supported: ingress's poller is what polls and stores; this command shows what it would store")
			}
			cfg, err := load()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			var js jetstream.JetStream
			nc, err := connectNATS(cmd.Context(), cfg)
			if err != nil {
				fmt.Fprintf(out, "NATS not reachable (%v): starting from the source's initial cursor; whether items are stored already is unknown\n\n", err)
			} else {
				defer nc.Close()
				if js, err = jetstream.New(nc); err != nil {
					return fmt.Errorf("JetStream: %w", err)
				}
			}
			var rows [][]string
			known := true
			r, err := ingress.DryRunPoll(cmd.Context(), js, cfg, args[0], func(it ingress.DryRunItem) {
				state := "unknown"
				known = known && it.Known
				if it.Known {
					state = "new"
					if it.Stored {
						state = "stored"
					}
				}
				body := oneLine(string(it.Body), 80)
				if len(it.Violations) > 0 && !it.Stored {
					// Polling would keep it in QUARANTINE, not deliver it.
					state = "quarantine"
					body = firstViolation(it.Violations)
				}
				rows = append(rows, []string{state, it.Subject, it.EventID, strconv.Itoa(len(it.Body)), body})
			})
			if err != nil {
				return err
			}
			if len(rows) > 0 {
				if err := table(out, "STATE\tSUBJECT\tEVENT ID\tBYTES\tBODY", rows); err != nil {
					return err
				}
				fmt.Fprintln(out)
			}
			fmt.Fprintln(out, describeRound(r, known))
			if r.Status != "ok" {
				return fmt.Errorf("the round failed: %s", r.Status)
			}
			return nil
		},
	}
	poll.Flags().BoolVar(&dryRun, "dry-run", false, "store nothing and leave the cursor where it is (required)")
	cmd.AddCommand(poll)
	return cmd
}

// describeRound says what a dry round did, and what a real one would have;
// known is whether every item's state could be looked up.
func describeRound(r ingress.PollRound, known bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "round %s in %s: %d page(s), %d item(s)", r.Status, r.Took.Round(time.Millisecond), r.Pages, r.Items)
	if known {
		fmt.Fprintf(&b, ", %d not stored yet", r.New)
	}
	if r.Quarantined > 0 {
		fmt.Fprintf(&b, ", %d breaking the source's contract (would be quarantined)", r.Quarantined)
	}
	if r.Status != "ok" {
		fmt.Fprintf(&b, "\nerror: %s", r.Error)
		if r.StatusCode != 0 {
			fmt.Fprintf(&b, " (HTTP %d)", r.StatusCode)
		}
		if r.Snippet != "" {
			fmt.Fprintf(&b, "\nanswer: %s", oneLine(r.Snippet, 200))
		}
	}
	switch {
	case r.CursorAfter != r.CursorBefore:
		fmt.Fprintf(&b, "\nthe cursor would move from %q to %q", r.CursorBefore, r.CursorAfter)
	default:
		fmt.Fprintf(&b, "\nthe cursor would stay at %q", r.CursorBefore)
	}
	if !r.Exhausted && r.Status == "ok" {
		b.WriteString(" (max_pages reached: the next round goes on from there)")
	}
	b.WriteString("\ndry run: nothing was stored and the cursor was not moved")
	return b.String()
}
