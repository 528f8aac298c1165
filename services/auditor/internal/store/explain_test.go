//go:build explain

package store

// TestExplain generates a large audit log in a scratch schema (10 million
// attempts by default) and records the plans of the API's main queries,
// run through the real store code, with EXPLAIN (ANALYZE, BUFFERS). Run it
// with
//
//	go test -tags explain -run TestExplain -timeout 60m -v ./internal/store/ \
//	    -args -explain.out=$PWD/EXPLAIN.md
//
// It is behind a build tag because generating the data takes minutes.

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/pkg/testing/pgtest"
	"github.com/switchyard/switchyard/services/auditor/auditapi"
	"github.com/switchyard/switchyard/services/auditor/auditgen"
)

var (
	explainOut      = flag.String("explain.out", "", "write the plans to this Markdown file")
	explainAttempts = flag.Int("explain.attempts", 10_000_000, "attempts to generate")
)

func TestExplain(t *testing.T) {
	ctx := context.Background()
	st, err := OpenPostgres(ctx, pgtest.Schema(t))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	size := auditgen.ForAttempts(*explainAttempts)
	nEvents := size.Events
	base, span := auditgen.Base, auditgen.Span

	start := time.Now()
	tx, err := st.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := auditgen.Generate(ctx, tx, size, t.Logf); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := st.pool.Exec(ctx, "ANALYZE"); err != nil {
		t.Fatal(err)
	}
	gentime := time.Since(start)
	var counts []string
	for _, table := range []string{"events", "deliveries", "attempts", "dead_letters", "rejections"} {
		var n int64
		if err := st.pool.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		counts = append(counts, fmt.Sprintf("%s %d", table, n))
	}

	ex := &explaining{querier: st.reader.db, pool: st.pool}
	r := &reader{d: postgresDialect, db: ex, wrap: interpretError}
	now := base.Add(span)
	var sections []string
	run := func(title string, fn func() error) {
		before := len(ex.plans)
		if err := fn(); err != nil {
			t.Fatalf("%s: %v", title, err)
		}
		sections = append(sections, "### "+title+"\n\n"+strings.Join(ex.plans[before:], "\n"))
	}
	var cursor string
	run("GET /v1/events (newest first, first page)", func() error {
		_, c, err := r.ListEvents(ctx, EventFilter{}, Page{Limit: 50})
		cursor = c
		return err
	})
	run("GET /v1/events, next page (cursor)", func() error {
		_, _, err := r.ListEvents(ctx, EventFilter{}, Page{Limit: 50, Cursor: cursor})
		return err
	})
	run("GET /v1/events?source=src-3&since=...&until=...", func() error {
		_, _, err := r.ListEvents(ctx, EventFilter{Source: "src-3", TimeRange: TimeRange{Since: now.Add(-72 * time.Hour), Until: now.Add(-48 * time.Hour)}}, Page{Limit: 50})
		return err
	})
	run("GET /v1/events?type=type-4", func() error {
		_, _, err := r.ListEvents(ctx, EventFilter{Type: "type-4"}, Page{Limit: 50})
		return err
	})
	run("GET /v1/events?destination=dest-3&status=dead_lettered", func() error {
		_, _, err := r.ListEvents(ctx, EventFilter{Destination: "dest-3", Status: auditapi.StatusDeadLettered}, Page{Limit: 50})
		return err
	})
	run("GET /v1/events/{id}", func() error {
		_, err := r.GetEvent(ctx, fmt.Sprint("ev-", nEvents/2))
		return err
	})
	run("GET /v1/deliveries?status=dead_lettered&destination=dest-3", func() error {
		_, c, err := r.ListDeliveries(ctx, DeliveryFilter{Destination: "dest-3", Status: auditapi.StatusDeadLettered}, Page{Limit: 50})
		cursor = c
		return err
	})
	run("GET /v1/deliveries?status=dead_lettered&destination=dest-3, next page", func() error {
		_, _, err := r.ListDeliveries(ctx, DeliveryFilter{Destination: "dest-3", Status: auditapi.StatusDeadLettered}, Page{Limit: 50, Cursor: cursor})
		return err
	})
	run("GET /v1/deliveries?status=retrying", func() error {
		_, _, err := r.ListDeliveries(ctx, DeliveryFilter{Status: auditapi.StatusRetrying}, Page{Limit: 50})
		return err
	})
	run("GET /v1/deliveries?destination=dest-3&q=connection refused", func() error {
		_, _, err := r.ListDeliveries(ctx, DeliveryFilter{Destination: "dest-3", Q: "connection refused"}, Page{Limit: 50})
		return err
	})
	run("GET /v1/dead-letters?destination=dest-3", func() error {
		_, _, err := r.ListDeadLetters(ctx, DeadLetterFilter{Destination: "dest-3"}, Page{Limit: 50})
		return err
	})
	run("GET /v1/rejections?source=src-3", func() error {
		_, _, err := r.ListRejections(ctx, RejectionFilter{Source: "src-3"}, Page{Limit: 50})
		return err
	})
	run("GET /v1/destinations (one destination, last hour)", func() error {
		_, err := r.DestinationStatus(ctx, "dest-3", now.Add(-time.Hour))
		return err
	})
	run("GET /v1/destinations (names)", func() error {
		_, err := r.Destinations(ctx)
		return err
	})
	run("GET /v1/events?id_contains=...&since=24h (console search)", func() error {
		_, _, err := r.ListEvents(ctx, EventFilter{IDContains: fmt.Sprint(nEvents - 1000), TimeRange: TimeRange{Since: now.Add(-24 * time.Hour)}}, Page{Limit: 50})
		return err
	})
	run("console chart: attempts of one destination over the last day, per 30 min", func() error {
		_, err := r.AttemptsOverTime(ctx, "dest-3", now.Add(-24*time.Hour), now, 30*time.Minute)
		return err
	})
	run("console overview: activity in the last hour", func() error {
		_, err := r.Activity(ctx, now.Add(-time.Hour))
		return err
	})

	doc := fmt.Sprintf("# Query plans at scale\n\nGenerated by `TestExplain` (services/auditor/internal/store/explain_test.go, build tag "+
		"`explain`) on %s: %s. Data generated in %s. Each query is the store's own SQL, run with EXPLAIN (ANALYZE, BUFFERS).\n\n%s\n",
		time.Now().UTC().Format("2006-01-02"), strings.Join(counts, ", "), gentime.Round(time.Second), strings.Join(sections, "\n"))
	if *explainOut != "" {
		if err := os.WriteFile(*explainOut, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Log(doc)
}
