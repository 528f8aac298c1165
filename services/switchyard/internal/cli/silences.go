package cli

import (
	"fmt"
	"io"
	"net"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/services/auditor/auditapi"
)

// silencesCmd manages alert silences through the auditor's admin API.
func silencesCmd(load func() (config.Config, error)) *cobra.Command {
	af := auditFlags{load: load}
	cmd := group("silences", "List, add and expire alert silences (through the auditor's admin API)")
	cmd.Long = `A silence mutes the alerts whose labels all its matchers match, until it ends.
Labels: rule, destination, source, severity. Matchers: name=value, name!=value,
name=~regex, name!~regex (anchored).`
	af.add(cmd)

	list := &cobra.Command{
		Use:   "list",
		Short: "List the silences (ended ones are kept for 7 days)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := af.client()
			if err != nil {
				return err
			}
			list, err := c.ListSilences(cmd.Context())
			if err != nil {
				return err
			}
			printSilences(cmd.OutOrStdout(), list...)
			return nil
		},
	}

	var matchers []string
	var dur time.Duration
	var until, comment, by string
	add := &cobra.Command{
		Use:   "add",
		Short: "Add a silence",
		Example: `  switchyard silences add --match destination=erp --for 2h --comment "ERP maintenance until 18:00"
  switchyard silences add --match 'rule=~Partner.*' --match 'destination!=crm' --for 36h
  switchyard silences add --match source=shop --until "$(date -u -d 'tomorrow 09:00' +%Y-%m-%dT%H:%M:%SZ)"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			body := auditapi.NewSilence{Matchers: matchers, Comment: comment, CreatedBy: by}
			switch {
			case until != "" && dur != 0:
				return fmt.Errorf("give --for or --until, not both")
			case until != "":
				t, err := time.Parse(time.RFC3339, until)
				if err != nil {
					return fmt.Errorf("--until: want an RFC 3339 time like 2027-01-15T18:00:00Z: %w", err)
				}
				body.EndsAt = &t
			case dur > 0:
				body.Duration = dur.String()
			default:
				return fmt.Errorf("give --for (e.g. 2h) or --until")
			}
			c, err := af.client()
			if err != nil {
				return err
			}
			s, err := c.CreateSilence(cmd.Context(), body)
			if err != nil {
				return err
			}
			printSilences(cmd.OutOrStdout(), s)
			return nil
		},
	}
	add.Flags().StringArrayVarP(&matchers, "match", "m", nil, "matcher, repeatable: destination=erp, rule=~Partner.*, source!=shop")
	add.Flags().DurationVar(&dur, "for", 0, "how long, e.g. 30m or 2h")
	add.Flags().StringVar(&until, "until", "", "end time, RFC 3339 (e.g. 2027-01-15T18:00:00Z)")
	add.Flags().StringVar(&comment, "comment", "", "why (shown in the list)")
	add.Flags().StringVar(&by, "by", whoDefault(), "who (default: your login name)")

	var expiredBy string
	expire := &cobra.Command{
		Use:   "expire ID",
		Short: "End a silence now",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := af.client()
			if err != nil {
				return err
			}
			s, err := c.ExpireSilence(cmd.Context(), args[0], expiredBy)
			if err != nil {
				return err
			}
			printSilences(cmd.OutOrStdout(), s)
			return nil
		},
	}
	expire.Flags().StringVar(&expiredBy, "by", whoDefault(), "who (default: your login name)")

	cmd.AddCommand(list, add, expire)
	return cmd
}

// whoDefault is the --by of the silence commands: the operator's login
// name, else "cli" (never empty, which the API would record as "api").
func whoDefault() string {
	if me := operator(); me != "" {
		return me
	}
	return "cli"
}

// dialable turns a listen address (":8081", "0.0.0.0:8081") into one to
// connect to.
func dialable(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

func printSilences(w io.Writer, ss ...auditapi.Silence) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tMATCHERS\tENDS\tBY\tCOMMENT")
	for _, s := range ss {
		by := s.CreatedBy
		if s.ExpiredBy != "" {
			by += " (expired by " + s.ExpiredBy + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, s.State, strings.Join(s.Matchers, ","), s.EndsAt.UTC().Format(time.RFC3339), by, s.Comment)
	}
	_ = tw.Flush()
}
