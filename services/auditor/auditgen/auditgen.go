// Package auditgen fills a migrated Postgres audit store with a large
// synthetic audit log, fast and server side (INSERT … SELECT from
// generate_series, no rows through the client): for the query plans at
// scale (the store's TestExplain) and the benchmark table's API query
// latencies at size (tests/benchtable).
//
// The shape: events from 10 sources (src-0 … src-9) of 7 types
// (type-0 … type-6), spread evenly over Span before Base+Span; two
// deliveries per event among 20 destinations (dest-0 … dest-19), 90%
// delivered, 5% dead-lettered (each with its dead letter), 3% retrying,
// 1% pending, 1% replayed; 2.5 attempts per delivery; one rejection per
// 50 events; 500 circuit changes. Event ids are ev-1 … ev-<events>.
package auditgen

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// Base is when the generated log starts, and Span how long it covers.
var (
	Base = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	Span = 30 * 24 * time.Hour
)

// Execer runs a statement: a pgx.Tx, a *pgx.Conn or a *pgxpool.Pool. A
// transaction is fastest (one commit, synchronous_commit off for it).
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Size is what Generate writes for a number of attempts.
type Size struct{ Attempts, Deliveries, Events int }

// ForAttempts is the log with n attempts: 2.5 attempts per delivery, two
// deliveries per event.
func ForAttempts(n int) Size {
	d := n * 2 / 5
	return Size{Attempts: n, Deliveries: d, Events: d / 2}
}

// ForEvents is the log with n events.
func ForEvents(n int) Size { return ForAttempts(n * 5) }

// Generate writes the log; logf (may be nil) hears how long each table
// took.
func Generate(ctx context.Context, db Execer, size Size, logf func(format string, args ...any)) error {
	nAttempts, nDeliveries, nEvents := size.Attempts, size.Deliveries, size.Events
	if nEvents < 1 {
		return fmt.Errorf("auditgen: %d attempts make no event", nAttempts)
	}
	step := Span / time.Duration(nEvents)
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
	for _, q := range gen {
		var args []any
		if strings.Contains(q, "$1") {
			args = append(args, Base)
		}
		if strings.Contains(q, "$2") {
			args = append(args, step)
		}
		start := time.Now()
		if _, err := db.Exec(ctx, q, args...); err != nil {
			return fmt.Errorf("auditgen: %s: %w", strings.Fields(q)[2], err)
		}
		if logf != nil {
			logf("%.0fs: %s", time.Since(start).Seconds(), strings.Fields(q)[2])
		}
	}
	return nil
}
