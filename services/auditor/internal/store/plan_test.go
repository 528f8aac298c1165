package store

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/switchyard/switchyard/pkg/testing/pgtest"
	"github.com/switchyard/switchyard/services/auditor/auditapi"
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

// GET /v1/events?destination=…&status=… for a pair no delivery has reads
// that pair's deliveries first (through deliveries_destination_status),
// rather than walking every event newest first and probing deliveries for
// each: migration 0007's statistics tell the planner the pair is absent.
// Before 0007 the plan was the walk (3.5 s at a million events).
func TestEventsByAbsentDestinationStatusReadDeliveriesFirst(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := OpenPostgres(ctx, pgtest.Schema(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	// Each event has two deliveries: to dest-a, delivered, and to dest-b,
	// dead-lettered. Each column alone is half and half, so without the
	// pair's statistics dest-a's dead letters look like a quarter of the
	// deliveries, one every other event; there is none.
	for _, q := range []string{
		`INSERT INTO events (id, subject, source, type, stream_seq, received_at, payload_sha256, payload_size)
			SELECT 'ev-' || g, 'webhooks.shop.order', 'shop', 'order', g, now() - g * interval '1 second', sha256(g::text::bytea), 0
			FROM generate_series(1, 20000) g`,
		`INSERT INTO deliveries (event_id, destination, status, updated_at)
			SELECT 'ev-' || g, d.name, d.status, now() FROM generate_series(1, 20000) g,
			(VALUES ('dest-a', 'delivered'), ('dest-b', 'dead_lettered')) d(name, status)`,
		`ANALYZE`,
	} {
		if _, err := st.pool.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	ex := &explaining{querier: st.reader.db, pool: st.pool}
	r := &reader{d: postgresDialect, db: ex, wrap: interpretError}
	items, _, err := r.ListEvents(ctx, EventFilter{Destination: "dest-a", Status: auditapi.StatusDeadLettered}, Page{Limit: 50})
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 0 || len(ex.plans) != 1 {
		t.Fatalf("%d events, %d plans; want none and one", len(items), len(ex.plans))
	}
	if plan := ex.plans[0]; !strings.Contains(plan, "deliveries_destination_status") || strings.Contains(plan, "events_received_at") {
		t.Errorf("the plan walks the events instead of reading the pair's deliveries first:\n%s", plan)
	}
}

func formatArgs(args []any) string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = fmt.Sprintf("$%d = %v", i+1, a)
	}
	return strings.Join(out, ", ")
}
