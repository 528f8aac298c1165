package cli

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"os/user"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/services/auditor/auditapi"
)

// Environment variables the audit subcommands read when their flags are
// not given.
const (
	EnvAuditURL   = "SWITCHYARD_AUDIT_URL"
	EnvAuditToken = "SWITCHYARD_AUDIT_TOKEN"
)

// auditFlags are the connection flags of every subcommand that talks to
// the auditor's admin API (events, dead-letters, rejections, silences).
type auditFlags struct {
	url, token string
	json       bool
	// load reads the configuration file, the last fallback for the URL
	// (auditor.listen) and the token (auditor.admin_token).
	load func() (config.Config, error)
	// cmd is the command the flags were added to (to tell whether the
	// root's --config was given).
	cmd *cobra.Command
}

func (f *auditFlags) add(cmd *cobra.Command) {
	f.cmd = cmd
	cmd.PersistentFlags().StringVar(&f.url, "url", "", "admin API URL, e.g. http://127.0.0.1:8081 (default $"+EnvAuditURL+", else auditor.listen from --config, else http://127.0.0.1:8081)")
	cmd.PersistentFlags().StringVar(&f.token, "token", "", "admin token (default $"+EnvAuditToken+", else auditor.admin_token from --config)")
	cmd.PersistentFlags().BoolVar(&f.json, "json", false, "print the API's JSON instead of a table")
}

// configGiven reports whether --config was given on the command line (not
// its default).
func (f *auditFlags) configGiven() bool {
	if f.cmd == nil {
		return false
	}
	fl := f.cmd.Root().PersistentFlags().Lookup("config")
	return fl != nil && fl.Changed
}

// resolve picks the URL and token: flag, environment, configuration file,
// built-in default, in that order. A configuration file named with
// --config must load (its error is returned); the default one is only a
// fallback, skipped quietly when it cannot be read.
func (f *auditFlags) resolve() (apiURL, token string, err error) {
	apiURL, token = f.url, f.token
	if apiURL == "" {
		apiURL = os.Getenv(EnvAuditURL)
	}
	if token == "" {
		token = os.Getenv(EnvAuditToken)
	}
	if f.load != nil && (apiURL == "" || token == "" || f.configGiven()) {
		cfg, err := f.load()
		switch {
		case err != nil && f.configGiven():
			return "", "", err
		case err == nil:
			if apiURL == "" {
				apiURL = "http://" + dialable(cfg.Auditor.Listen)
			}
			if token == "" {
				token = cfg.Auditor.AdminToken.Reveal()
			}
		}
	}
	if apiURL == "" {
		apiURL = "http://127.0.0.1:8081"
	}
	apiURL, err = normalizeURL(apiURL)
	return apiURL, token, err
}

// normalizeURL accepts the API's address with or without a scheme
// ("127.0.0.1:8081" is taken as http://127.0.0.1:8081) and refuses what is
// not an http(s) URL with a host, saying what is expected.
func normalizeURL(s string) (string, error) {
	given := s
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		return "", fmt.Errorf("audit API URL %q: want http://host:port (or host:port), e.g. http://127.0.0.1:8081", given)
	}
	return strings.TrimSuffix(s, "/"), nil
}

func (f *auditFlags) client() (*auditapi.Client, error) {
	u, tok, err := f.resolve()
	if err != nil {
		return nil, err
	}
	by := "cli"
	if me := operator(); me != "" {
		by = "cli:" + me
	}
	return &auditapi.Client{BaseURL: u, Token: tok, RequestedBy: by}, nil
}

// group is a command that only holds subcommands: without one it prints
// its help; with an unknown one it fails (cobra would print the help and
// exit 0, which hides a typo in a script).
func group(use, short string) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return cmd.Help()
			}
			return fmt.Errorf("%w %q for %q (run '%s --help' for its commands)", ErrUnknownCommand, args[0], cmd.CommandPath(), cmd.CommandPath())
		},
	}
}

// operator is the login name of whoever runs the CLI, or "" when the system
// cannot tell ($USER is often unset in containers and cron jobs; the user
// database is not).
func operator() string {
	if me, err := user.Current(); err == nil {
		return me.Username
	}
	return ""
}

// listFlags are the filters and paging flags shared by the list commands.
type listFlags struct {
	values map[string]*string
	limit  int
	cursor string
}

func addListFlags(cmd *cobra.Command, filters ...string) *listFlags {
	lf := &listFlags{values: map[string]*string{}}
	help := map[string]string{
		"source":      "webhook source",
		"type":        "event type",
		"subject":     "subject, or a prefix ending in .>",
		"destination": "destination name",
		"status":      "delivery status: " + strings.Join(auditapi.Statuses, ", "),
		"since":       "from this time (RFC 3339) or this long ago (90m, 24h, 7d)",
		"until":       "before this time (RFC 3339) or this long ago",
		"event-id":    "event id",
		"reason":      "reason (dead letters: max_attempts, permanent_failure, ...; rejections: bad_signature, stale_timestamp, ...)",
		"q":           "words in the last error",
		"rule":        "alert rule (DeliveryDeadLettered, PartnerDown, ...)",
		"kind":        "record kind: duplicate, backlog, lag, alert, silence, poll, quarantined, valid, released or other",
		"key":         "record key: the source of a duplicate, destination of a backlog report, rule of an alert, id of a silence",
		"state":       "alert state: firing or resolved",
		"sender":      "alert sender: slack, console or webhook",
		"delivered":   "true: messages the sender delivered; false: messages it gave up on",
	}
	for _, name := range filters {
		lf.values[name] = cmd.Flags().String(name, "", help[name])
	}
	cmd.Flags().IntVar(&lf.limit, "limit", auditapi.DefaultLimit, fmt.Sprintf("items per page (1-%d)", auditapi.MaxLimit))
	cmd.Flags().StringVar(&lf.cursor, "cursor", "", "next_cursor of the previous page")
	return lf
}

func (lf *listFlags) query() url.Values {
	q := url.Values{}
	for name, v := range lf.values {
		if *v != "" {
			q.Set(strings.ReplaceAll(name, "-", "_"), *v)
		}
	}
	q.Set("limit", fmt.Sprint(lf.limit))
	if lf.cursor != "" {
		q.Set("cursor", lf.cursor)
	}
	return q
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func table(w io.Writer, header string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

func when(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05")
}

func nextPage(w io.Writer, next string) {
	if next != "" {
		fmt.Fprintf(w, "\nmore: --cursor %s\n", next)
	}
}

// listCmd is a list subcommand: its filters become flags and query
// parameters; the page prints as a table (or JSON) with the next cursor.
func listCmd[T any](af *auditFlags, use, short, example, header string, filters []string,
	fetch func(c *auditapi.Client, cmd *cobra.Command, q url.Values) (auditapi.List[T], error), row func(T) []string) *cobra.Command {
	cmd := &cobra.Command{Use: use, Short: short, Example: example, Args: cobra.NoArgs}
	lf := addListFlags(cmd, filters...)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := af.client()
		if err != nil {
			return err
		}
		page, err := fetch(c, cmd, lf.query())
		if err != nil {
			return err
		}
		out := cmd.OutOrStdout()
		if af.json {
			return printJSON(out, page)
		}
		var rows [][]string
		for _, it := range page.Items {
			rows = append(rows, row(it))
		}
		if err := table(out, header, rows); err != nil {
			return err
		}
		nextPage(out, page.NextCursor)
		return nil
	}
	return cmd
}

func auditCmds(load func() (config.Config, error)) []*cobra.Command {
	af := auditFlags{load: load}
	events := group("events", "Query the audit log's events (talks to the auditor's API)")
	af.add(events)
	listEvents := listCmd(&af, "list", "List events, newest first", "  switchyard events list --destination erp --status dead_lettered --since 24h",
		"ID\tRECEIVED\tSOURCE\tTYPE\tSUBJECT\tBYTES",
		[]string{"source", "type", "subject", "destination", "status", "since", "until", "event-id", "q"},
		func(c *auditapi.Client, cmd *cobra.Command, q url.Values) (auditapi.List[auditapi.Event], error) {
			return c.ListEvents(cmd.Context(), q)
		},
		func(e auditapi.Event) []string {
			return []string{e.ID, when(&e.ReceivedAt), e.Source, e.Type, e.Subject, fmt.Sprint(e.PayloadSize)}
		})
	showEvent := &cobra.Command{
		Use:   "show <event id>",
		Short: "Show an event: its payload, and what happened to it at each destination",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := af.client()
			if err != nil {
				return err
			}
			d, err := c.GetEvent(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if af.json {
				return printJSON(out, d)
			}
			return printEvent(out, d)
		},
	}
	events.AddCommand(listEvents, showEvent)

	dead := group("dead-letters", "List and replay dead letters (talks to the auditor's API)")
	af.add(dead)
	listDead := listCmd(&af, "list", "List dead letters, newest first", "  switchyard dead-letters list --destination erp --since 7d",
		"ID\tEVENT\tDESTINATION\tDEAD-LETTERED\tREASON\tATTEMPTS\tREPLAYS\tLAST ERROR",
		[]string{"destination", "event-id", "reason", "since", "until", "q"},
		func(c *auditapi.Client, cmd *cobra.Command, q url.Values) (auditapi.List[auditapi.DeadLetter], error) {
			return c.ListDeadLetters(cmd.Context(), q)
		},
		func(d auditapi.DeadLetter) []string {
			return []string{d.ID, d.EventID, d.Destination, when(&d.DeadLetteredAt), d.Reason, fmt.Sprint(d.Attempts),
				fmt.Sprint(d.Replays), oneLine(d.LastError, 60)}
		})
	dead.AddCommand(listDead, replayCmd(&af))

	rejections := group("rejections", "List the webhooks and publish requests ingress refused (talks to the auditor's API)")
	af.add(rejections)
	rejections.AddCommand(listCmd(&af, "list", "List rejections, newest first", "  switchyard rejections list --source shop --reason bad_signature --since 1h",
		"ID\tAT\tSOURCE\tREASON\tCODE\tAPI KEY\tREMOTE\tUSER AGENT\tBYTES\tDETAIL",
		[]string{"source", "reason", "since", "until", "q"},
		func(c *auditapi.Client, cmd *cobra.Command, q url.Values) (auditapi.List[auditapi.Rejection], error) {
			return c.ListRejections(cmd.Context(), q)
		},
		func(r auditapi.Rejection) []string {
			return []string{r.ID, when(&r.At), r.Source, r.Reason, codeOrDash(r.StatusCode), dash(r.APIKey), dash(r.RemoteAddr),
				dash(oneLine(r.UserAgent, 40)), fmt.Sprint(r.BodySize), oneLine(r.Detail, 60)}
		}))

	alerts := group("alerts", "List the alert messages the notifier sent or gave up on (talks to the auditor's API)")
	af.add(alerts)
	alerts.AddCommand(listCmd(&af, "list", "List alert messages, newest first",
		"  switchyard alerts list --destination erp --since 24h\n  switchyard alerts list --delivered false   # messages a sender gave up on",
		"AT\tRULE\tSTATE\tKIND\tSEVERITY\tLABELS\tSENDER\tSENT\tSUMMARY",
		[]string{"rule", "destination", "source", "state", "sender", "delivered", "since", "until"},
		func(c *auditapi.Client, cmd *cobra.Command, q url.Values) (auditapi.List[auditapi.Alert], error) {
			return c.ListAlerts(cmd.Context(), q)
		},
		func(a auditapi.Alert) []string {
			sent := "yes"
			if !a.Delivered {
				sent = "no: " + oneLine(dash(a.Error), 40)
			}
			return []string{when(&a.At), a.Rule, a.State, a.Kind, dash(a.Severity), dash(labelText(a.Labels)), a.Sender, sent, oneLine(a.Summary, 60)}
		}))

	records := group("records", "List the audit records kept whole: webhook duplicates, backlog and lag reports, alerts, silence changes, poll rounds, quarantined and released payloads")
	af.add(records)
	records.AddCommand(listCmd(&af, "list", "List the records of one kind, newest first",
		"  switchyard records list --kind duplicate --key shop --since 1h\n  switchyard records list --kind poll --key shop-orders --since 1h\n  switchyard records list --kind quarantined --key shop --since 1d\n  switchyard records list --kind silence --json",
		"AT\tKIND\tKEY\tSERVICE\tID",
		[]string{"kind", "key", "since", "until"},
		func(c *auditapi.Client, cmd *cobra.Command, q url.Values) (auditapi.List[auditapi.Record], error) {
			return c.ListRecords(cmd.Context(), q)
		},
		func(r auditapi.Record) []string {
			return []string{when(&r.At), r.Kind, dash(r.Key), r.Service, r.ID}
		}))
	return []*cobra.Command{events, dead, rejections, alerts, records}
}

// labelText is name=value pairs in name order.
func labelText(labels map[string]string) string {
	names := slices.Sorted(maps.Keys(labels))
	for i, k := range names {
		names[i] = k + "=" + labels[k]
	}
	return strings.Join(names, ",")
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func replayCmd(af *auditFlags) *cobra.Command {
	var (
		all, dryRun, force bool
		dest, since, until string
		source, eventID, q string
		limit              int
	)
	cmd := &cobra.Command{
		Use:   "replay [dead letter id...]",
		Short: "Send dead letters again, to the destination that failed them only",
		Long: `Replay the given dead letters, or with --all every current dead letter of a
destination that matches the filters. Asking twice for the same dead letter
within the duplicate window sends it once (a double click); --force sends
it again anyway.`,
		Example: `  switchyard dead-letters replay EVENTS@mi7e5u0g:1042:erp
  switchyard dead-letters replay --all --destination erp --since 2h --dry-run`,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := af.client()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			key := ""
			if force {
				b := make([]byte, 8)
				_, _ = rand.Read(b)
				key = "force-" + hex.EncodeToString(b)
			}
			if all {
				if len(args) > 0 {
					return fmt.Errorf("give dead letter ids or --all, not both")
				}
				if dest == "" {
					return fmt.Errorf("--all needs --destination: a bulk replay goes to one destination")
				}
				req := auditapi.BulkReplayRequest{Destination: dest, Source: source, EventID: eventID, Q: q, Limit: limit, DryRun: dryRun}
				for name, v := range map[string]string{"since": since, "until": until} {
					if v == "" {
						continue
					}
					t, err := parseWhen(v)
					if err != nil {
						return fmt.Errorf("--%s: %w", name, err)
					}
					if name == "since" {
						req.Since = &t
					} else {
						req.Until = &t
					}
				}
				res, err := bulkReplay(cmd, c, req, key)
				if err != nil {
					return err
				}
				if af.json {
					return printJSON(out, res)
				}
				if err := printReplays(out, res.Results); err != nil {
					return err
				}
				verb, n := "replayed", res.Replayed
				if res.DryRun {
					verb, n = "would replay", res.Matched
				}
				fmt.Fprintf(out, "\n%d matched, %s %d, %d failed\n", res.Matched, verb, n, res.Failed)
				if res.Failed > 0 {
					return fmt.Errorf("%d replays failed", res.Failed)
				}
				return nil
			}
			if len(args) == 0 {
				return fmt.Errorf("give one or more dead letter ids, or --all --destination <name>")
			}
			var results []auditapi.ReplayResult
			failed := 0
			for _, id := range args {
				res, err := c.Replay(cmd.Context(), id, key)
				if err != nil {
					res = auditapi.ReplayResult{DeadLetterID: id, Error: err.Error()}
					failed++
				}
				results = append(results, res)
			}
			if af.json {
				if err := printJSON(out, results); err != nil {
					return err
				}
			} else if err := printReplays(out, results); err != nil {
				return err
			}
			if failed > 0 {
				return fmt.Errorf("%d of %d replays failed", failed, len(args))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "replay every current dead letter matching the filters")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "with --all: list what would be replayed")
	cmd.Flags().BoolVar(&force, "force", false, "send again even if the same replay was just sent")
	cmd.Flags().StringVar(&dest, "destination", "", "with --all: the destination (required)")
	cmd.Flags().StringVar(&since, "since", "", "with --all: dead-lettered since (RFC 3339, or 2h, 7d ago)")
	cmd.Flags().StringVar(&until, "until", "", "with --all: dead-lettered before")
	cmd.Flags().StringVar(&source, "source", "", "with --all: webhook source")
	cmd.Flags().StringVar(&eventID, "event-id", "", "with --all: event id")
	cmd.Flags().StringVar(&q, "q", "", "with --all: words in the last error")
	cmd.Flags().IntVar(&limit, "limit", 100, "with --all: at most this many (1-1000)")
	return cmd
}

// bulkReplay sends the bulk replay request again for as long as the API
// answers that it ran out of time before the end (each answer must fit the
// server's write timeout), and adds the answers up. What one request
// replayed no longer matches the next, so nothing is replayed twice.
func bulkReplay(cmd *cobra.Command, c *auditapi.Client, req auditapi.BulkReplayRequest, key string) (auditapi.BulkReplayResult, error) {
	var all auditapi.BulkReplayResult
	limit := req.Limit
	if limit == 0 {
		limit = 100
	}
	for first := true; ; first = false {
		res, err := c.BulkReplay(cmd.Context(), req, key)
		if err != nil {
			return all, err
		}
		if first {
			all.Matched, all.DryRun = res.Matched, res.DryRun
		}
		all.Replayed += res.Replayed
		all.Failed += res.Failed
		all.Results = append(all.Results, res.Results...)
		tried := res.Matched - res.Remaining
		// Stop when done, when a round made no progress, or at the limit
		// asked for.
		if !res.Incomplete || tried == 0 || len(all.Results) >= limit {
			all.Incomplete, all.Remaining = res.Incomplete, res.Remaining
			return all, nil
		}
		req.Limit = limit - len(all.Results)
		fmt.Fprintf(cmd.ErrOrStderr(), "%d replayed so far, %d to go...\n", all.Replayed, res.Remaining)
	}
}

// parseWhen reads an RFC 3339 time or a duration back from now.
func parseWhen(v string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	d, err := config.ParseDuration(v)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time nor a duration such as 2h or 7d", v)
	}
	return time.Now().Add(-d.D()), nil
}

func printReplays(w io.Writer, results []auditapi.ReplayResult) error {
	var rows [][]string
	for _, r := range results {
		status := "sent"
		switch {
		case r.Error != "":
			status = "FAILED: " + r.Error
		case r.MsgID == "":
			status = "would send"
		case r.Duplicate:
			status = "already sent (duplicate request)"
		}
		rows = append(rows, []string{r.DeadLetterID, r.EventID, r.Destination, status})
	}
	return table(w, "DEAD LETTER\tEVENT\tDESTINATION\tRESULT", rows)
}

func printEvent(w io.Writer, d auditapi.EventDetail) error {
	fmt.Fprintf(w, "Event %s\n", d.ID)
	if d.Known {
		fmt.Fprintf(w, "  subject      %s\n  source       %s\n  type         %s\n  received     %s\n  stream seq   %d\n  content type %s\n  size         %d bytes (sha256 %s)\n",
			d.Subject, d.Source, d.Type, when(&d.ReceivedAt), d.StreamSeq, d.ContentType, d.PayloadSize, d.PayloadHash)
		switch {
		case d.PayloadText != nil:
			fmt.Fprintf(w, "  payload      %s\n", oneLine(*d.PayloadText, 400))
		case d.PayloadBase64 != nil:
			fmt.Fprintf(w, "  payload      (binary, %d bytes; --json shows it in base64)\n", len(d.PayloadBase64))
		case d.PayloadDroppedAt != nil:
			fmt.Fprintf(w, "  payload      dropped by retention at %s\n", when(d.PayloadDroppedAt))
		}
	} else {
		fmt.Fprintln(w, "  (the event itself is not recorded yet; its deliveries are)")
	}
	fmt.Fprintln(w, "\nDeliveries")
	var rows [][]string
	for _, x := range d.Deliveries {
		rows = append(rows, []string{x.Destination, x.Status, fmt.Sprintf("%d/%d", x.Attempts, x.TotalAttempts), codeOrDash(x.LastStatusCode),
			when(x.DeliveredAt), x.DeadLetterID, oneLine(x.LastError, 50)})
	}
	if err := table(w, "DESTINATION\tSTATUS\tATTEMPTS\tLAST CODE\tDELIVERED\tDEAD LETTER\tLAST ERROR", rows); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nAttempts")
	rows = nil
	for _, a := range d.Attempts {
		round := ""
		if a.ReplayOf != "" {
			round = "replay of " + a.ReplayOf
		}
		trace := a.TraceID
		if trace == "" {
			trace = "-"
		}
		transform := a.TransformVersion
		if transform == "" {
			transform = "-"
		}
		rows = append(rows, []string{when(&a.StartedAt), a.Destination, fmt.Sprint(a.Attempt), a.Outcome, codeOrDash(a.StatusCode),
			fmt.Sprintf("%.1fms", a.DurationMS), oneLine(a.Error, 50), round, trace, transform})
	}
	if err := table(w, "STARTED\tDESTINATION\t#\tOUTCOME\tCODE\tTOOK\tERROR\tROUND\tTRACE\tTRANSFORM", rows); err != nil {
		return err
	}
	if len(d.Replays) > 0 {
		fmt.Fprintln(w, "\nReplays")
		rows = nil
		for _, r := range d.Replays {
			rows = append(rows, []string{when(&r.At), r.DeadLetterID, r.Destination, r.RequestedBy})
		}
		return table(w, "AT\tDEAD LETTER\tDESTINATION\tBY", rows)
	}
	return nil
}

func codeOrDash(c int) string {
	if c == 0 {
		return "-"
	}
	return fmt.Sprint(c)
}

// oneLine shortens s to n runes on one line.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
