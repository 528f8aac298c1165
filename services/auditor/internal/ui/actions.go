package ui

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/switchyard/switchyard/services/auditor/auditapi"
	"github.com/switchyard/switchyard/services/auditor/internal/api"
	"github.com/switchyard/switchyard/services/auditor/internal/store"
)

// deadLettersData is the dead letters page: the list, and the bulk replay
// form with what it last did.
type deadLettersData struct {
	List list[store.DeadLetter]
	Bulk bulkData
}

// bulkData is the bulk replay form: its fields, and after a dry run the
// count to confirm, after a replay its result.
type bulkData struct {
	Configured  []string
	Destination string
	Source      string
	Since       string
	Until       string
	Q           string
	Limit       string
	Problem     string
	// DryRun is the count a confirmation replays; Confirm holds the
	// request that replays exactly what was counted (at most that many,
	// changed no later than the count).
	DryRun  *auditapi.BulkReplayResult
	Confirm url.Values
	// Done is a replay's result.
	Done *auditapi.BulkReplayResult
	// Shown bounds the results listed.
	Shown int
}

// deadLetters is GET /ui/dead-letters.
func (c *Console) deadLetters(ec echo.Context) error {
	d := deadLettersData{Bulk: bulkData{Configured: c.cfg.Destinations, Limit: "100", Shown: 20}}
	d.Bulk.Destination = ec.QueryParam("destination")
	if err := c.listDeadLetters(ec, &d.List); err != nil {
		return err
	}
	status := http.StatusOK
	if d.List.Problem != "" {
		status = http.StatusBadRequest
	}
	return c.page(ec, status, "dead-letters", "Dead letters", "dead-letters", d)
}

func (c *Console) listDeadLetters(ec echo.Context, l *list[store.DeadLetter]) error {
	l.Filter = filters(ec, "destination", "event_id", "reason", "since", "until", "q", "cursor")
	l.Destinations = c.destinationNames(ec)
	q := cloneValues(l.Filter)
	q.Set("limit", strconv.Itoa(pageSize))
	f, p, err := api.ParseDeadLetterQuery(q, c.cfg.Now())
	if err == nil {
		var next string
		l.Items, next, err = c.cfg.Store.ListDeadLetters(ec.Request().Context(), f, p)
		pageLinks(l, Prefix+"/dead-letters", next)
	}
	if err != nil {
		if !badFilter(err) {
			return err
		}
		l.Problem = api.Explain(err).Message
	}
	return nil
}

// resultData is what an action did, for the person who asked.
type resultData struct {
	Replay *auditapi.ReplayResult
	// Back is where the person came from.
	Back string
}

// replayOne is POST /ui/dead-letters/replay (id): the API's replay,
// requested by the logged-in person. An htmx request gets the result in
// place; a plain form post a page saying it.
func (c *Console) replayOne(ec echo.Context) error {
	id := strings.TrimSpace(ec.FormValue("id"))
	res, err := c.cfg.Ops.ReplayDeadLetter(ec.Request().Context(), id, "", requester(ec))
	if err != nil {
		return err
	}
	status := http.StatusAccepted
	if res.Duplicate {
		status = http.StatusOK
	}
	d := resultData{Replay: &res, Back: safeNext(ec.FormValue(nextField))}
	if isHTMX(ec) {
		ec.Response().Header().Set("HX-Trigger", changedEvent)
		return c.fragment(ec, status, "result", "replay-result", "", d)
	}
	return c.page(ec, status, "result", "Replay", "dead-letters", d)
}

// replayBulk is POST /ui/dead-letters/bulk: with action=count, a dry run
// that counts what the filter matches and asks to confirm; with
// action=replay, the replay of what was counted.
func (c *Console) replayBulk(ec echo.Context) error {
	now := c.cfg.Now()
	b := bulkData{
		Configured: c.cfg.Destinations, Destination: strings.TrimSpace(ec.FormValue("destination")), Source: strings.TrimSpace(ec.FormValue("source")),
		Since: strings.TrimSpace(ec.FormValue("since")), Until: strings.TrimSpace(ec.FormValue("until")), Q: strings.TrimSpace(ec.FormValue("q")),
		Limit: strings.TrimSpace(ec.FormValue("limit")), Shown: 20,
	}
	req := auditapi.BulkReplayRequest{Destination: b.Destination, Source: b.Source, Q: b.Q, DryRun: ec.FormValue("action") != "replay"}
	status, err := c.bulkRequest(&req, b, now)
	if err == nil {
		var res auditapi.BulkReplayResult
		res, err = c.cfg.Ops.BulkReplay(ec.Request().Context(), req, "", requester(ec))
		switch {
		case err != nil:
		case req.DryRun:
			b.DryRun = &res
			// The confirmation replays what was counted: no more than
			// that many, and none whose delivery changed after the count
			// (a dead letter written since is not in it).
			until := now
			if req.Until != nil && req.Until.Before(until) {
				until = *req.Until
			}
			b.Confirm = url.Values{"action": {"replay"}, "destination": {b.Destination}, "source": {b.Source}, "q": {b.Q},
				"until": {until.UTC().Format(time.RFC3339Nano)}, "limit": {strconv.Itoa(max(res.Matched, 1))}}
			if req.Since != nil {
				b.Confirm.Set("since", req.Since.UTC().Format(time.RFC3339Nano))
			}
		default:
			b.Done = &res
			if res.Incomplete {
				b.Confirm = url.Values{"action": {"replay"}, "destination": {b.Destination}, "source": {b.Source}, "q": {b.Q},
					"since": {b.Since}, "until": {b.Until}, "limit": {b.Limit}}
			}
		}
	}
	if err != nil {
		p := api.Explain(err)
		if p.Unexpected || p.Status >= 500 {
			return err
		}
		b.Problem, status = p.Message, p.Status
	}
	if isHTMX(ec) {
		if b.Done != nil {
			ec.Response().Header().Set("HX-Trigger", changedEvent)
		}
		return c.fragment(ec, status, "dead-letters", "bulk", "dead-letters", b)
	}
	d := deadLettersData{Bulk: b}
	if err := c.listDeadLetters(ec, &d.List); err != nil {
		return err
	}
	return c.page(ec, status, "dead-letters", "Dead letters", "dead-letters", d)
}

// bulkRequest completes req from the form's times and limit.
func (c *Console) bulkRequest(req *auditapi.BulkReplayRequest, b bulkData, now time.Time) (int, error) {
	tr, err := api.ParseTimeRange(b.Since, b.Until, now)
	if err != nil {
		return http.StatusBadRequest, err
	}
	if !tr.Since.IsZero() {
		req.Since = &tr.Since
	}
	if !tr.Until.IsZero() {
		req.Until = &tr.Until
	}
	if b.Limit != "" {
		n, err := strconv.Atoi(b.Limit)
		if err != nil || n < 1 || n > api.MaxBulkReplay {
			return http.StatusBadRequest, echo.NewHTTPError(http.StatusBadRequest, "limit must be a number from 1 to "+strconv.Itoa(api.MaxBulkReplay))
		}
		req.Limit = n
	}
	return http.StatusOK, nil
}

// silencesData is the silences page.
type silencesData struct {
	Items   []auditapi.Silence
	Form    silenceForm
	Problem string
	// Notice says what the last action did (created or ended, from the
	// redirect after it).
	Notice         string
	created, ended string
}

type silenceForm struct {
	Matchers string
	Duration string
	Comment  string
}

// silences is GET /ui/silences: the form (filled in from matcher=
// parameters, as the overview's "Silence" links send) and the list.
func (c *Console) silences(ec echo.Context) error {
	d := silencesData{Form: silenceForm{Matchers: strings.Join(ec.QueryParams()["matcher"], "\n"), Duration: "2h"},
		created: ec.QueryParam("created"), ended: ec.QueryParam("ended")}
	return c.renderSilences(ec, http.StatusOK, d)
}

func (c *Console) renderSilences(ec echo.Context, status int, d silencesData) error {
	items, err := c.cfg.Ops.Silences(ec.Request().Context())
	if err != nil {
		return err
	}
	rank := map[string]int{"active": 0, "pending": 1, "expired": 2}
	slices.SortStableFunc(items, func(a, b auditapi.Silence) int {
		if rank[a.State] != rank[b.State] {
			return rank[a.State] - rank[b.State]
		}
		return b.CreatedAt.Compare(a.CreatedAt)
	})
	d.Items = items
	// The notice names a silence that exists, never text from the URL.
	for _, s := range items {
		switch s.ID {
		case d.created:
			d.Notice = "Silence " + s.ID + " created: the alerts it matches send nothing until " + when(s.EndsAt) + "."
		case d.ended:
			d.Notice = "Silence " + s.ID + " ended: the alerts it muted that still fire are sent again."
		}
	}
	return c.page(ec, status, "silences", "Silences", "silences", d)
}

// createSilence is POST /ui/silences: one matcher per line, a duration
// (from now) and a comment; created by the logged-in person.
func (c *Console) createSilence(ec echo.Context) error {
	form := silenceForm{Matchers: ec.FormValue("matchers"), Duration: strings.TrimSpace(ec.FormValue("duration")), Comment: strings.TrimSpace(ec.FormValue("comment"))}
	in := auditapi.NewSilence{Duration: form.Duration, Comment: form.Comment, CreatedBy: requester(ec)}
	for _, line := range strings.Split(form.Matchers, "\n") {
		if m := strings.TrimSpace(line); m != "" {
			in.Matchers = append(in.Matchers, m)
		}
	}
	s, err := c.cfg.Ops.CreateSilence(ec.Request().Context(), in)
	if err != nil {
		p := api.Explain(err)
		if p.Status != http.StatusBadRequest {
			return err
		}
		return c.renderSilences(ec, http.StatusBadRequest, silencesData{Form: form, Problem: p.Message})
	}
	return ec.Redirect(http.StatusSeeOther, link(Prefix+"/silences", "created", s.ID))
}

// expireSilence is POST /ui/silences/expire (id): ends it now.
func (c *Console) expireSilence(ec echo.Context) error {
	s, err := c.cfg.Ops.ExpireSilence(ec.Request().Context(), strings.TrimSpace(ec.FormValue("id")), requester(ec))
	if err != nil {
		return err
	}
	return ec.Redirect(http.StatusSeeOther, link(Prefix+"/silences", "ended", s.ID))
}
