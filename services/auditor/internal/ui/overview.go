package ui

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/silences"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/auditor/auditapi"
	"github.com/switchyard/switchyard/services/auditor/internal/api"
	"github.com/switchyard/switchyard/services/auditor/internal/store"
)

// windows are the overview's time windows, and the chart's period for each.
var windows = []struct {
	Name string
	D    time.Duration
	Step time.Duration
}{
	{"1h", time.Hour, 2 * time.Minute},
	{"24h", 24 * time.Hour, 30 * time.Minute},
}

func window(name string) (string, time.Duration, time.Duration) {
	for _, w := range windows {
		if w.Name == name {
			return w.Name, w.D, w.Step
		}
	}
	return windows[0].Name, windows[0].D, windows[0].Step
}

// How often the overview's parts refresh themselves.
const (
	overviewEvery = 5 * time.Second
	chartEvery    = 30 * time.Second
	// alertLookback is how far back the overview looks for the latest
	// message of each alert: a firing alert is repeated every
	// repeat_interval (4h by default), unless silenced.
	alertLookback = 7 * 24 * time.Hour
)

type overviewData struct {
	Window  string
	Windows []string
	Live    liveWrapper
	Chart   liveWrapper
}

// overviewLive is the part of the overview that refreshes itself.
type overviewLive struct {
	Window       string
	Alerts       []alertRow
	Destinations []destinationRow
	Sources      []sourceRow
	// Notes say what could not be read (the rest is shown).
	Notes []string
}

type destinationRow struct {
	auditapi.DestinationStatus
	Configured bool
	// DeadLettersInWindow counts the dead letters written in the window.
	DeadLettersInWindow int
	// Oldest is the age of the oldest unfinished event as the dispatcher
	// last reported it (at OldestAt); empty when nothing waits.
	Oldest   string
	OldestAt *time.Time
}

type sourceRow struct {
	store.SourceActivity
	Configured bool
}

type alertRow struct {
	auditapi.Alert
	LabelText string
	// MutedBy is the active silence that mutes the alert, if any.
	MutedBy *auditapi.Silence
	// SilenceLink opens the silence form filled in for this alert.
	SilenceLink string
}

func (c *Console) overview(ec echo.Context) error {
	name, _, _ := window(ec.QueryParam("window"))
	live, err := c.overviewLiveBlock(ec, name)
	if err != nil {
		return err
	}
	chart, err := c.chartBlock(ec, name)
	if err != nil {
		return err
	}
	d := overviewData{Window: name, Live: live, Chart: chart}
	for _, w := range windows {
		d.Windows = append(d.Windows, w.Name)
	}
	return c.page(ec, http.StatusOK, "overview", "Overview", "overview", d)
}

func (c *Console) overviewLive(ec echo.Context) error {
	name, _, _ := window(ec.QueryParam("window"))
	data, err := c.overviewData(ec.Request().Context(), name)
	if err != nil {
		return err
	}
	return c.live(ec, "overview", "overview-live", "overview-live", Prefix+"/overview/live", url.Values{"window": {name}}, overviewEvery, data)
}

func (c *Console) overviewLiveBlock(ec echo.Context, name string) (liveWrapper, error) {
	data, err := c.overviewData(ec.Request().Context(), name)
	if err != nil {
		return liveWrapper{}, err
	}
	return c.liveBlock(ec, "overview", "overview-live", "overview-live", Prefix+"/overview/live", url.Values{"window": {name}}, overviewEvery, data)
}

func (c *Console) overviewChart(ec echo.Context) error {
	name, _, _ := window(ec.QueryParam("window"))
	data, err := c.chartData(ec.Request().Context(), name)
	if err != nil {
		return err
	}
	return c.live(ec, "overview", "chart", "overview-chart", Prefix+"/overview/chart", url.Values{"window": {name}}, chartEvery, data)
}

func (c *Console) chartBlock(ec echo.Context, name string) (liveWrapper, error) {
	data, err := c.chartData(ec.Request().Context(), name)
	if err != nil {
		return liveWrapper{}, err
	}
	return c.liveBlock(ec, "overview", "chart", "overview-chart", Prefix+"/overview/chart", url.Values{"window": {name}}, chartEvery, data)
}

// overviewData reads the health of every destination and source, and the
// alerts firing, in parallel. The destinations and the activity are
// required; alerts and backlog ages that cannot be read are noted.
func (c *Console) overviewData(ctx context.Context, name string) (overviewLive, error) {
	_, d, _ := window(name)
	now := c.cfg.Now()
	out := overviewLive{Window: name}
	var (
		dests    []auditapi.DestinationStatus
		activity store.Activity
		alerts   []alertRow
		alertErr error
	)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() (err error) { dests, err = c.cfg.Ops.Destinations(gctx, d); return err })
	g.Go(func() (err error) { activity, err = c.cfg.Store.Activity(gctx, now.Add(-d)); return err })
	g.Go(func() error { alerts, alertErr = c.firingAlerts(gctx, now); return nil })
	if err := g.Wait(); err != nil {
		return out, err
	}
	if alertErr != nil {
		out.Notes = append(out.Notes, "Alerts: "+api.Explain(alertErr).Message)
	}
	out.Alerts = alerts
	for _, st := range dests {
		row := destinationRow{DestinationStatus: st, Configured: slices.Contains(c.cfg.Destinations, st.Name), DeadLettersInWindow: activity.DeadLetters[st.Name]}
		row.Oldest, row.OldestAt = c.oldestPending(ctx, st.Name)
		out.Destinations = append(out.Destinations, row)
	}
	seen := map[string]bool{}
	for _, s := range activity.Sources {
		seen[s.Source] = true
		out.Sources = append(out.Sources, sourceRow{SourceActivity: s, Configured: slices.Contains(c.cfg.Sources, s.Source)})
	}
	for _, s := range c.cfg.Sources {
		if !seen[s] {
			out.Sources = append(out.Sources, sourceRow{SourceActivity: store.SourceActivity{Source: s}, Configured: true})
		}
	}
	slices.SortFunc(out.Sources, func(a, b sourceRow) int { return strings.Compare(a.Source, b.Source) })
	return out, nil
}

// oldestPending is the age of the destination's oldest unfinished event, as
// its latest backlog report says (the dispatcher reports every 30s while
// anything waits, and once when the backlog drained).
func (c *Console) oldestPending(ctx context.Context, dest string) (string, *time.Time) {
	recs, _, err := c.cfg.Store.ListRecords(ctx, store.RecordFilter{Kind: auditlog.KindBacklog, Key: dest}, store.Page{Limit: 1})
	if err != nil || len(recs) == 0 {
		return "", nil
	}
	var rec switchyardv1.AuditRecord
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(recs[0].Detail, &rec); err != nil {
		return "", nil
	}
	b := rec.GetBacklog()
	if b == nil || (b.GetNumPending() == 0 && b.GetNumAckPending() == 0) || b.GetOldestPendingAge() == nil {
		return "", nil
	}
	at := recs[0].At
	return duration(b.GetOldestPendingAge().AsDuration()), &at
}

// firingAlerts are the alerts whose latest message said firing, with the
// active silence that mutes each, if any (matched as the notifier matches:
// rule, severity and the alert's labels).
func (c *Console) firingAlerts(ctx context.Context, now time.Time) ([]alertRow, error) {
	msgs, _, err := c.cfg.Store.ListAlerts(ctx, store.AlertFilter{TimeRange: store.TimeRange{Since: now.Add(-alertLookback)}}, store.Page{Limit: store.MaxLimit})
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []alertRow
	for _, a := range msgs { // newest first
		key := a.Fingerprint
		if key == "" {
			key = a.Rule + " " + labelText(a.Labels)
		}
		if seen[key] {
			continue
		}
		seen[key] = true
		if a.State != auditapi.AlertFiring {
			continue
		}
		row := alertRow{Alert: a, LabelText: labelText(a.Labels)}
		q := url.Values{"matcher": {"rule=" + a.Rule}}
		for _, k := range sortedKeys(a.Labels) {
			q.Add("matcher", k+"="+a.Labels[k])
		}
		row.SilenceLink = Prefix + "/silences?" + q.Encode()
		out = append(out, row)
	}
	if len(out) == 0 {
		return nil, nil
	}
	sils, err := c.cfg.Ops.Silences(ctx)
	if err != nil {
		return out, err
	}
	for i := range out {
		out[i].MutedBy = muting(sils, out[i].Alert)
	}
	return out, nil
}

// muting returns the active silence that mutes a, as the notifier decides
// it (services/notifier's Engine.muted: the alert's labels with its rule
// and severity).
func muting(sils []auditapi.Silence, a auditapi.Alert) *auditapi.Silence {
	labels := map[string]string{"rule": a.Rule, "severity": a.Severity}
	for k, v := range a.Labels {
		labels[k] = v
	}
	for i, s := range sils {
		if s.State != "active" {
			continue
		}
		sil := &switchyardv1.Silence{}
		for _, m := range s.Matchers {
			pm, err := silences.ParseMatcher(m)
			if err != nil {
				sil = nil
				break
			}
			sil.Matchers = append(sil.Matchers, pm)
		}
		if sil != nil && silences.Matches(sil, labels) {
			return &sils[i]
		}
	}
	return nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// chartData sums the attempts of every destination per period of the
// window.
func (c *Console) chartData(ctx context.Context, name string) (chart, error) {
	_, d, step := window(name)
	now := c.cfg.Now()
	// Periods end on a step boundary, so that a refresh moves the bars
	// by whole periods.
	until := now.Truncate(step).Add(step)
	since := until.Add(-d)
	names, err := c.cfg.Store.Destinations(ctx)
	if err != nil {
		return chart{}, err
	}
	for _, n := range c.cfg.Destinations {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	var buckets []store.AttemptBucket
	for _, n := range names {
		bs, err := c.cfg.Store.AttemptsOverTime(ctx, n, since, until, step)
		if err != nil {
			if errors.Is(err, store.ErrBadFilter) {
				continue
			}
			return chart{}, err
		}
		buckets = append(buckets, bs...)
	}
	return newChart(name, since, until, step, buckets), nil
}
