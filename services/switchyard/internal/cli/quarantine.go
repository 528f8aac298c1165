package cli

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/contracts"
	"github.com/switchyard/switchyard/services/ingress"
)

// ErrStillInvalid is returned when a release left payloads in QUARANTINE
// because they still break their contract.
var ErrStillInvalid = errors.New("some payloads still break their contract and stay in QUARANTINE")

// quarantineCmd groups the commands about payloads that broke their
// contract. They read and change QUARANTINE directly over NATS.
func quarantineCmd(load func() (config.Config, error)) *cobra.Command {
	cmd := group("quarantine", "List, show and release the payloads that broke their contract (QUARANTINE)")
	js := func(cmd *cobra.Command) (config.Config, jetstream.JetStream, func(), error) {
		cfg, err := load()
		if err != nil {
			return config.Config{}, nil, nil, err
		}
		nc, err := connectNATS(cmd.Context(), cfg)
		if err != nil {
			return config.Config{}, nil, nil, err
		}
		js, err := jetstream.New(nc)
		if err != nil {
			nc.Close()
			return config.Config{}, nil, nil, fmt.Errorf("JetStream: %w", err)
		}
		return cfg, js, nc.Close, nil
	}

	var owner string
	var limit int
	list := &cobra.Command{
		Use:     "list",
		Short:   "List the quarantined payloads, oldest first",
		Example: "  switchyard quarantine list\n  switchyard quarantine list --source shop",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, js, done, err := js(cmd)
			if err != nil {
				return err
			}
			defer done()
			qs, err := ingress.ListQuarantined(cmd.Context(), js, owner, limit)
			if err != nil {
				return err
			}
			if len(qs) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "nothing in quarantine")
				return nil
			}
			rows := make([][]string, len(qs))
			for i, q := range qs {
				rows[i] = []string{strconv.FormatUint(q.Seq, 10), when(&q.ReceivedAt), q.Owner().String(), dash(q.EventType), q.EventID,
					strconv.Itoa(len(q.Body)), oneLine(firstViolation(q.Violations), 60)}
			}
			return table(cmd.OutOrStdout(), "SEQ\tRECEIVED\tFROM\tTYPE\tEVENT ID\tBYTES\tVIOLATION", rows)
		},
	}
	list.Flags().StringVar(&owner, "source", "", "only this source's (or publish API key's) payloads")
	list.Flags().IntVar(&limit, "limit", 1000, "list at most this many")

	show := &cobra.Command{
		Use:     "show SEQ",
		Short:   "Show one quarantined payload: its event, violations, headers and body",
		Example: "  switchyard quarantine show 42",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			seq, err := parseSeq(args[0])
			if err != nil {
				return err
			}
			_, js, done, err := js(cmd)
			if err != nil {
				return err
			}
			defer done()
			q, err := ingress.GetQuarantined(cmd.Context(), js, seq)
			if err != nil {
				return err
			}
			showQuarantined(cmd.OutOrStdout(), q)
			return nil
		},
	}

	var all bool
	release := &cobra.Command{
		Use:   "release [SEQ...] [--source NAME | --all]",
		Short: "Check quarantined payloads against the current contracts and publish the valid ones as normal events",
		Long: `After a fix (a corrected schema in the configuration, or a corrected transformation),
release checks each payload again against the contracts of the configuration file given
with --config, and publishes those it keeps to EVENTS on the subject they would have had,
with their original event ids: destinations receive them as any other event. A released
payload is removed from QUARANTINE and the release is recorded in the audit log. One that
still breaks its contract stays, and the command says why and fails.

An event that EVENTS holds already (the partner sent a corrected copy under the same id)
is not published again, only removed from QUARANTINE. Releasing twice is safe.`,
		Example: "  switchyard quarantine release 42 43\n  switchyard quarantine release --source shop\n  switchyard quarantine release --all",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 && owner == "" && !all {
				return errors.New("name the payloads to release: their SEQ numbers, --source NAME, or --all")
			}
			if len(args) > 0 && (owner != "" || all) {
				return errors.New("give either SEQ numbers or --source/--all, not both")
			}
			var seqs []uint64
			for _, a := range args {
				seq, err := parseSeq(a)
				if err != nil {
					return err
				}
				seqs = append(seqs, seq)
			}
			cfg, js, done, err := js(cmd)
			if err != nil {
				return err
			}
			defer done()
			r, err := ingress.NewReleaser(cmd.Context(), js, cfg, cmp.Or(operator(), "cli"))
			if err != nil {
				return err
			}
			var qs []ingress.Quarantined
			if len(seqs) > 0 {
				for _, seq := range seqs {
					q, err := ingress.GetQuarantined(cmd.Context(), js, seq)
					if err != nil {
						return err
					}
					qs = append(qs, q)
				}
			} else if qs, err = ingress.ListQuarantined(cmd.Context(), js, owner, 0); err != nil {
				return err
			}
			return releaseAll(cmd, r, qs)
		},
	}
	release.Flags().StringVar(&owner, "source", "", "release every payload of this source (or publish API key)")
	release.Flags().BoolVar(&all, "all", false, "release every quarantined payload")

	cmd.AddCommand(list, show, release)
	return cmd
}

func releaseAll(cmd *cobra.Command, r *ingress.Releaser, qs []ingress.Quarantined) error {
	out := cmd.OutOrStdout()
	if len(qs) == 0 {
		fmt.Fprintln(out, "nothing in quarantine")
		return nil
	}
	count := map[string]int{}
	for _, q := range qs {
		res, err := r.Release(cmd.Context(), q)
		if err != nil {
			return fmt.Errorf("release #%d (%s): %w", q.Seq, q.EventID, err)
		}
		count[res.Outcome]++
		switch res.Outcome {
		case ingress.Released:
			fmt.Fprintf(out, "#%d %s: released to %s (EVENTS #%d)\n", q.Seq, q.EventID, q.EventsSubject, res.StreamSeq)
		case ingress.AlreadyStored:
			fmt.Fprintf(out, "#%d %s: already in EVENTS; removed from quarantine\n", q.Seq, q.EventID)
		case ingress.StillInvalid:
			fmt.Fprintf(out, "#%d %s: still breaks its contract, kept: %s\n", q.Seq, q.EventID, violationsLine(res.Violations))
		}
	}
	fmt.Fprintf(out, "\n%d released, %d already stored, %d still invalid\n", count[ingress.Released], count[ingress.AlreadyStored], count[ingress.StillInvalid])
	if count[ingress.StillInvalid] > 0 {
		return ErrStillInvalid
	}
	return nil
}

func showQuarantined(w io.Writer, q ingress.Quarantined) {
	fmt.Fprintf(w, "Seq:          %d\n", q.Seq)
	fmt.Fprintf(w, "Event id:     %s\n", q.EventID)
	fmt.Fprintf(w, "From:         %s\n", q.Owner())
	fmt.Fprintf(w, "Type:         %s\n", dash(q.EventType))
	fmt.Fprintf(w, "Received:     %s\n", when(&q.ReceivedAt))
	fmt.Fprintf(w, "Releases to:  %s\n", q.EventsSubject)
	fmt.Fprintf(w, "Content type: %s\n", dash(q.ContentType))
	fmt.Fprintln(w, "Violations:")
	for _, v := range q.Violations {
		fmt.Fprintf(w, "  %s\n", v)
	}
	fmt.Fprintln(w, "Headers:")
	keys := make([]string, 0, len(q.Header))
	for k := range q.Header {
		if k != contracts.HeaderViolations {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "  %s: %s\n", k, strings.Join(q.Header[k], ", "))
	}
	fmt.Fprintf(w, "Body (%d bytes):\n%s\n", len(q.Body), q.Body)
}

func firstViolation(vs []contracts.Violation) string {
	if len(vs) == 0 {
		return "-"
	}
	s := vs[0].String()
	if len(vs) > 1 {
		s = fmt.Sprintf("(%d) %s", len(vs), s)
	}
	return s
}

func violationsLine(vs []contracts.Violation) string {
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = v.String()
	}
	return strings.Join(parts, "; ")
}

func parseSeq(s string) (uint64, error) {
	seq, err := strconv.ParseUint(strings.TrimPrefix(s, "#"), 10, 64)
	if err != nil || seq == 0 {
		return 0, fmt.Errorf("%q is not a QUARANTINE sequence number (the SEQ column of quarantine list)", s)
	}
	return seq, nil
}
