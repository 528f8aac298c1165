package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/services/auditor"
	"github.com/switchyard/switchyard/services/auditor/auditgen"
)

// apiQuery is one query of the audit API the console and the CLI make.
type apiQuery struct {
	name string
	// path is the request for the i-th run.
	path func(i int, events int) string
}

// apiQueries are the lists and pages the console and `switchyard events
// …`/`dead-letters …` ask for, over auditgen's log (10 sources, 7 types,
// 20 destinations, ids ev-1 … ev-<events>, covering the 30 days before
// auditgen.Base+Span).
var apiQueries = []apiQuery{
	{"GET /v1/events (newest first, 50)", func(int, int) string { return "/v1/events?limit=50" }},
	{"GET /v1/events?source=… (50)", func(i, _ int) string { return fmt.Sprintf("/v1/events?limit=50&source=src-%d", i%10) }},
	{"GET /v1/events?destination=…&status=dead_lettered", func(i, _ int) string {
		return fmt.Sprintf("/v1/events?limit=50&destination=dest-%d&status=dead_lettered", i%20)
	}},
	{"GET /v1/events?id_contains=…&since=24h (console search)", func(i, n int) string {
		since := auditgen.Base.Add(auditgen.Span - 24*time.Hour).Format(time.RFC3339)
		return fmt.Sprintf("/v1/events?limit=50&id_contains=%d&since=%s", n-1-i%max(1, n/100), url.QueryEscape(since))
	}},
	{"GET /v1/events/{id} (event, deliveries, attempts)", func(_ int, n int) string {
		return fmt.Sprintf("/v1/events/ev-%d", 1+rand.IntN(n))
	}},
	{"GET /v1/deliveries?status=retrying (50)", func(int, int) string { return "/v1/deliveries?limit=50&status=retrying" }},
	{"GET /v1/dead-letters (newest first, 50)", func(int, int) string { return "/v1/dead-letters?limit=50" }},
	{"GET /v1/dead-letters?destination=… (50)", func(i, _ int) string {
		return fmt.Sprintf("/v1/dead-letters?limit=50&destination=dest-%d", i%20)
	}},
}

// queriesSection fills a fresh Postgres schema with -audit-events events
// (auditgen: 2 deliveries and 5 attempts per event, 5% dead-lettered),
// then times each of apiQueries through the auditor's HTTP API, one at a
// time, -query-runs times each.
func queriesSection(ctx context.Context, e *env, o options, rep *report) error {
	ns, dbURL, err := e.natsAndPostgres(ctx)
	if err != nil {
		return err
	}
	cfg := config.Config{DatabaseURL: config.Secret(dbURL), DataDir: e.dir}.WithDefaults()
	acfg := auditor.FromConfig(cfg, e.log.With("service", "auditor"), nil)
	if err := auditor.Migrate(ctx, acfg); err != nil {
		return fmt.Errorf("migrate the audit log: %w", err)
	}
	size := auditgen.ForEvents(o.AuditEvents)
	genStart := time.Now()
	if err := generateAuditLog(ctx, dbURL, size); err != nil {
		return err
	}
	gen := time.Since(genStart)
	aud, err := e.auditor(ns, acfg)
	if err != nil {
		return err
	}
	if err := waitUntil(ctx, time.Minute, "the audit store open", func() (bool, error) { return aud.Ready(ctx) == nil, nil }); err != nil {
		return err
	}
	addr, err := e.serve(ctx, "auditor", aud.Handler())
	if err != nil {
		return err
	}
	client := &http.Client{Timeout: time.Minute}
	for _, q := range apiQueries {
		// The first run warms Postgres's cache, as a console open all day
		// has.
		if _, err := getOK(ctx, client, "http://"+addr+q.path(0, size.Events)); err != nil {
			return fmt.Errorf("%s: %w", q.name, err)
		}
		var lat []time.Duration
		start := time.Now()
		for i := range o.QueryRuns {
			d, err := getOK(ctx, client, "http://"+addr+q.path(i+1, size.Events))
			if err != nil {
				return fmt.Errorf("%s: %w", q.name, err)
			}
			lat = append(lat, d)
		}
		rate := float64(o.QueryRuns) / time.Since(start).Seconds()
		ql := latencyQuantiles(lat)
		rep.add(row{Section: "queries", Name: fmt.Sprintf("%s, %s events in the audit log", q.name, formatRate(float64(size.Events))),
			Rate: rate, Unit: "queries/s", Latency: &ql,
			Note: fmt.Sprintf("one at a time, %d runs, Postgres (%d deliveries, %d attempts; generated in %.0f s); load average %s",
				o.QueryRuns, size.Deliveries, size.Attempts, gen.Seconds(), loadAvg())})
	}
	return nil
}

// generateAuditLog writes auditgen's log in one transaction and updates
// the planner's statistics.
func generateAuditLog(ctx context.Context, dbURL string, size auditgen.Size) error {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if err := auditgen.Generate(ctx, tx, size, nil); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	_, err = conn.Exec(ctx, "ANALYZE")
	return err
}

// getOK gets url and returns how long the whole answer took; an answer
// other than 200 is an error.
func getOK(ctx context.Context, c *http.Client, url string) (time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	d := time.Since(start)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: %s: %.300s", url, resp.Status, body)
	}
	return d, nil
}
