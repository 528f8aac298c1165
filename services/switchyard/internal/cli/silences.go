package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/switchyard/switchyard/pkg/config"
)

// silence is the admin API's JSON for a silence.
type silence struct {
	ID        string    `json:"id"`
	Matchers  []string  `json:"matchers"`
	StartsAt  time.Time `json:"starts_at"`
	EndsAt    time.Time `json:"ends_at"`
	CreatedBy string    `json:"created_by"`
	Comment   string    `json:"comment"`
	ExpiredBy string    `json:"expired_by"`
	State     string    `json:"state"`
}

// silencesCmd manages alert silences through the auditor's admin API.
func silencesCmd(load func() (config.Config, error)) *cobra.Command {
	af := auditFlags{load: load}
	cmd := group("silences", "List, add and expire alert silences (through the auditor's admin API)")
	cmd.Long = `A silence mutes the alerts whose labels all its matchers match, until it ends.
Labels: rule, destination, source, severity. Matchers: name=value, name!=value,
name=~regex, name!~regex (anchored).`
	af.add(cmd)
	client := func() (*adminClient, error) {
		base, token, err := af.resolve()
		if err != nil {
			return nil, err
		}
		return &adminClient{base: base, token: token, http: &http.Client{Timeout: 15 * time.Second}}, nil
	}

	list := &cobra.Command{
		Use:   "list",
		Short: "List the silences (ended ones are kept for 7 days)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			var out struct {
				Silences []silence `json:"silences"`
			}
			if err := c.do(cmd, http.MethodGet, "/v1/silences", nil, &out); err != nil {
				return err
			}
			printSilences(cmd.OutOrStdout(), out.Silences...)
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
			body := map[string]any{"matchers": matchers, "comment": comment, "created_by": by}
			switch {
			case until != "" && dur != 0:
				return fmt.Errorf("give --for or --until, not both")
			case until != "":
				t, err := time.Parse(time.RFC3339, until)
				if err != nil {
					return fmt.Errorf("--until: want an RFC 3339 time like 2027-01-15T18:00:00Z: %w", err)
				}
				body["ends_at"] = t
			case dur > 0:
				body["duration"] = dur.String()
			default:
				return fmt.Errorf("give --for (e.g. 2h) or --until")
			}
			c, err := client()
			if err != nil {
				return err
			}
			var s silence
			if err := c.do(cmd, http.MethodPost, "/v1/silences", body, &s); err != nil {
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
			c, err := client()
			if err != nil {
				return err
			}
			var s silence
			path := "/v1/silences/" + url.PathEscape(args[0]) + "?" + url.Values{"by": {expiredBy}}.Encode()
			if err := c.do(cmd, http.MethodDelete, path, nil, &s); err != nil {
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

type adminClient struct {
	base, token string
	http        *http.Client
}

// do sends a request and decodes a 2xx answer into out; any other answer
// becomes an error with the API's message.
func (c *adminClient) do(cmd *cobra.Command, method, path string, body, out any) error {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(cmd.Context(), method, c.base+path, r)
	if err != nil {
		return fmt.Errorf("--url: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("the admin API at %s is not reachable (is the auditor running? see --url): %w", c.base, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		var e struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(data, &e) == nil && e.Message != "" {
			return fmt.Errorf("%s: %s", resp.Status, e.Message)
		}
		return fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(data))
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("unexpected answer from the admin API: %w", err)
	}
	return nil
}

func printSilences(w io.Writer, ss ...silence) {
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
