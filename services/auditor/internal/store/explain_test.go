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

	"github.com/jackc/pgx/v5"

	"github.com/switchyard/switchyard/pkg/testing/pgtest"
	"github.com/switchyard/switchyard/services/auditor/auditapi"
)

var (
	explainOut      = flag.String("explain.out", "", "write the plans to this Markdown file")
	explainAttempts = flag.Int("explain.attempts", 10_000_000, "attempts to generate")
)

// explaining runs EXPLAIN (ANALYZE, BUFFERS) of every query before running
// the query itself, and keeps the plans.
type explaining struct {
	querier
	pool interface {
		Query(context.Context, string, ...any) (pgx.Rows, error)
	}
	plans []string
}

func (e *explaining) query(ctx context.Context, q string, args ...any) (rows, error) {
	rs, err := e.pool.Query(ctx, "EXPLAIN (ANALYZE, BUFFERS) "+q, args...)
	if err != nil {
		return nil, err
	}
	lines, err := pgx.CollectRows(rs, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	e.plans = append(e.plans, "```sql\n"+strings.TrimSpace(q)+"\n-- args: "+formatArgs(args)+"\n```\n```\n"+strings.Join(lines, "\n")+"\n```\n")
	return e.querier.query(ctx, q, args...)
}

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
	nAttempts := *explainAttempts
	nDeliveries := nAttempts * 2 / 5 // 2.5 attempts per delivery
	nEvents := nDeliveries / 2       // 2 destinations per event
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	span := 30 * 24 * time.Hour
	step := span / time.Duration(nEvents)

	start := time.Now()
	gen := []string{
		`SET LOCAL synchronous_commit = off`,
		// Events: 10 sources, 10 types, spread over 30 days.
		fmt.Sprintf(`INSERT INTO events (id, subject, source, type, stream_seq, received_at, content_type, payload, payload_sha256, payload_size, headers)
			SELECT 'ev-' || g, 'webhooks.src-' || (g %% 10) || '.type-' || (g %% 7), 'src-' || (g %% 10), 'type-' || (g %% 7), g,
			       $1::timestamptz + g * $2::interval, 'application/json', convert_to('{"n":' || g || '}', 'UTF8'), sha256(g::text::bytea), 10, '{}'
			FROM generate_series(1, %d) g`, nEvents),
		// Deliveries: two destinations per event (of 20); 90%% delivered,
		// 5%% dead-lettered, 3%% retrying, 1%% pending, 1%% replayed.
		fmt.Sprintf(`INSERT INTO deliveries (event_id, destination, status, attempts, total_attempts, last_status_code, last_error,
			    first_attempt_at, last_attempt_at, delivered_at, dead_letter_id, updated_at, mark_seq, mark_kind, mark_n, info_seq, info_n, dead_letter_seq)
			SELECT 'ev-' || (d / 2 + 1), 'dest-' || ((d / 2 + d %% 2 * 7) %% 20), s.status, 2, 2,
			       CASE WHEN s.status = 'delivered' THEN 200 ELSE 503 END,
			       CASE WHEN s.status IN ('delivered', 'pending') THEN '' WHEN d %% 3 = 0 THEN 'dial tcp 10.0.0.7:443: connection refused'
			            ELSE 'HTTP 503 Service Unavailable' END,
			       t.at, t.at, CASE WHEN s.status = 'delivered' THEN t.at END,
			       CASE WHEN s.status = 'dead_lettered' THEN 'EVENTS:' || (d / 2 + 1) || ':dest-' || ((d / 2 + d %% 2 * 7) %% 20) ELSE '' END,
			       t.at + interval '2 seconds', d / 2 + 1, 1, 2, d / 2 + 1, 2, -1
			FROM generate_series(0, %d) d,
			     LATERAL (SELECT CASE WHEN d %% 100 < 90 THEN 'delivered' WHEN d %% 100 < 95 THEN 'dead_lettered' WHEN d %% 100 < 98 THEN 'retrying'
			                          WHEN d %% 100 < 99 THEN 'pending' ELSE 'replayed' END AS status) s,
			     LATERAL (SELECT $1::timestamptz + (d / 2 + 1) * $2::interval AS at) t`, nDeliveries-1),
		// Attempts: 2.5 per delivery on average; most succeed.
		fmt.Sprintf(`INSERT INTO attempts (id, event_id, destination, attempt, started_at, duration_us, status_code, outcome, error, response_snippet, final, replay_of, stream_seq)
			SELECT 'attempt:EVENTS:' || (d / 2 + 1) || ':dest-' || ((d / 2 + d %% 2 * 7) %% 20) || ':' || n,
			       'ev-' || (d / 2 + 1), 'dest-' || ((d / 2 + d %% 2 * 7) %% 20), n,
			       $1::timestamptz + (d / 2 + 1) * $2::interval + n * interval '10 seconds', 1000 + (g::bigint * 7919) %% 250000,
			       CASE WHEN n = 1 AND d %% 100 < 90 THEN 200 ELSE 503 END,
			       CASE WHEN n = 1 AND d %% 100 < 90 THEN 'delivered' ELSE 'retryable' END,
			       CASE WHEN n = 1 AND d %% 100 < 90 THEN '' ELSE 'HTTP 503 Service Unavailable' END, '', n = 1, '', d / 2 + 1
			FROM generate_series(0, %d) g,
			     LATERAL (SELECT g %% %d AS d, g / %d + 1 AS n) x`, nAttempts-1, nDeliveries, nDeliveries),
		// Dead letters for the dead-lettered deliveries.
		`INSERT INTO dead_letters (id, event_id, destination, subject, reason, attempts, last_status_code, last_error, response_snippet, dead_lettered_at, stream_seq)
			SELECT dead_letter_id, event_id, destination, 'events.order.created', 'max_attempts', 2, 503, last_error, '', updated_at,
			       split_part(dead_letter_id, ':', 2)::bigint
			FROM deliveries WHERE status = 'dead_lettered'`,
		// Rejections: one per 50 events.
		fmt.Sprintf(`INSERT INTO rejections (id, at, source, reason, detail, remote_addr, status_code, event_id)
			SELECT 'rej-' || g, $1::timestamptz + g * 50 * $2::interval, 'src-' || (g %% 10), 'bad_signature', 'signature does not match', '203.0.113.7', 401, ''
			FROM generate_series(1, %d) g`, nEvents/50),
		`INSERT INTO circuit_changes (id, at, destination, from_state, to_state)
			SELECT 'cc-' || g, $1::timestamptz + g * interval '1 hour', 'dest-' || (g % 20), 'closed', 'open' FROM generate_series(1, 500) g`,
	}
	tx, err := st.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range gen {
		var args []any
		if strings.Contains(q, "$1") {
			args = append(args, base)
		}
		if strings.Contains(q, "$2") {
			args = append(args, step)
		}
		qs := time.Now()
		if _, err := tx.Exec(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		t.Logf("%.0fs: %s", time.Since(qs).Seconds(), strings.Fields(q)[2])
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

func formatArgs(args []any) string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = fmt.Sprintf("$%d = %v", i+1, a)
	}
	return strings.Join(out, ", ")
}
