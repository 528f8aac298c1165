package store_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchyard/switchyard/pkg/testing/pgtest"
	"github.com/switchyard/switchyard/pkg/testing/testctx"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/auditor/auditapi"
	"github.com/switchyard/switchyard/services/auditor/internal/store"
	"github.com/switchyard/switchyard/services/auditor/internal/store/storetest"
)

// testCtx is the test's context (testctx.New).
var testCtx = testctx.New

func openPostgresURL(t *testing.T, url string) *store.Postgres {
	t.Helper()
	st, err := store.OpenPostgres(testCtx(t), url)
	if err != nil {
		t.Fatalf("OpenPostgres: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func openSQLitePath(t *testing.T, path string) *store.SQLite {
	t.Helper()
	st, err := store.OpenSQLite(testCtx(t), path)
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestPostgres(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) store.Store { return openPostgresURL(t, pgtest.Schema(t)) })
}

func TestSQLite(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) store.Store {
		return openSQLitePath(t, filepath.Join(t.TempDir(), "audit.db"))
	})
}

// backend is one implementation with a raw SQL handle on the same database,
// for checks the Store interface does not offer.
type backend struct {
	name string
	// open returns two stores on the same database and a query function.
	open func(t *testing.T) (a, b store.Store, count func(query string, args ...any) int, exec func(query string, args ...any))
}

var backends = []backend{
	{
		name: "postgres",
		open: func(t *testing.T) (store.Store, store.Store, func(string, ...any) int, func(string, ...any)) {
			url := pgtest.Schema(t)
			a, b := openPostgresURL(t, url), openPostgresURL(t, url)
			conn, err := pgx.Connect(testCtx(t), url)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { conn.Close(context.Background()) })
			count := func(q string, args ...any) int {
				t.Helper()
				var n int
				if err := conn.QueryRow(testCtx(t), q, args...).Scan(&n); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
				return n
			}
			exec := func(q string, args ...any) {
				t.Helper()
				if _, err := conn.Exec(testCtx(t), q, args...); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			return a, b, count, exec
		},
	},
	{
		name: "sqlite",
		open: func(t *testing.T) (store.Store, store.Store, func(string, ...any) int, func(string, ...any)) {
			path := filepath.Join(t.TempDir(), "audit.db")
			a, b := openSQLitePath(t, path), openSQLitePath(t, path)
			db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			count := func(q string, args ...any) int {
				t.Helper()
				var n int
				if err := db.QueryRowContext(testCtx(t), q, args...).Scan(&n); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
				return n
			}
			exec := func(q string, args ...any) {
				t.Helper()
				if _, err := db.ExecContext(testCtx(t), q, args...); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			return a, b, count, exec
		},
	},
}

// Two auditors starting together against one database both migrate it.
func TestConcurrentMigrateSameDatabase(t *testing.T) {
	t.Parallel()
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			t.Parallel()
			a, b, count, _ := be.open(t)
			var wg sync.WaitGroup
			errs := make([]error, 4)
			for i := range errs {
				st := a
				if i%2 == 1 {
					st = b
				}
				wg.Go(func() { errs[i] = st.Migrate(testCtx(t)) })
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Errorf("Migrate %d: %v", i, err)
				}
			}
			if n, want := count("SELECT count(*) FROM schema_migrations"), store.MigrationCount("postgres"); n != want {
				t.Errorf("%d migrations recorded, want %d (each applied once)", n, want)
			}
			if err := a.Write(testCtx(t), storetest.FullBatch("ev-1")); err != nil {
				t.Errorf("Write after concurrent Migrate: %v", err)
			}
		})
	}
}

// Every record is stored once, by id; kinds without a table of their own
// keep their kind and key.
func TestOtherRecordsStoredOnce(t *testing.T) {
	t.Parallel()
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			t.Parallel()
			a, _, count, _ := be.open(t)
			if err := a.Migrate(testCtx(t)); err != nil {
				t.Fatal(err)
			}
			batch := storetest.FullBatch("ev-1")
			for range 3 {
				if err := a.Write(testCtx(t), batch); err != nil {
					t.Fatal(err)
				}
			}
			tables := map[string]int{"events": 1, "attempts": 4, "dead_letters": 1, "rejections": 1, "audit_records": 3, "circuit_changes": 1, "deliveries": 2}
			for table, want := range tables {
				if n := count("SELECT count(*) FROM " + table); n != want {
					t.Errorf("%s has %d rows after writing the batch 3 times, want %d", table, n, want)
				}
			}
			for id, kindKey := range map[string][2]string{
				"dup-1":   {"duplicate", "shop"},
				"alert-1": {"alert", "DeliveryDeadLettered"},
				"bare-1":  {"other", "auditor"},
			} {
				if n := count("SELECT count(*) FROM audit_records WHERE id = $1 AND kind = $2 AND key = $3", id, kindKey[0], kindKey[1]); n != 1 {
					t.Errorf("record %s not stored as kind %q key %q", id, kindKey[0], kindKey[1])
				}
			}
		})
	}
}

// Migration 0003 rewrites the delivery rows written under 0002's rule, in
// which a dead letter outranked a delivered attempt of its round.
func TestMigration0003DeliveredWins(t *testing.T) {
	t.Parallel()
	later := map[string]string{
		"postgres": "updated_at + interval '1 hour'",
		"sqlite":   "updated_at + 3600000000000",
	}
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			t.Parallel()
			a, _, count, exec := be.open(t)
			if err := store.MigrateTo(testCtx(t), a, 2); err != nil {
				t.Fatal(err)
			}
			// Today's writer writes the columns 0005 and 0006 add: lend
			// them for the writes of 0002's rows, and take them back
			// before migrating.
			exec("ALTER TABLE attempts ADD COLUMN trace_id text NOT NULL DEFAULT ''")
			exec("ALTER TABLE attempts ADD COLUMN transform_version text NOT NULL DEFAULT ''")
			recs := storetest.DeliveredThenDeadLettered("ev-won", "erp", 500)
			recs = append(recs,
				storetest.RoundAttempt("ev-plain", "erp", 501, 1, time.Now(), 200, switchyardv1.Outcome_OUTCOME_DELIVERED, true, ""),
				storetest.RoundAttempt("ev-dead", "erp", 502, 1, time.Now(), 400, switchyardv1.Outcome_OUTCOME_PERMANENT, true, ""),
				storetest.RoundDeadLetter("ev-dead", "erp", 502, time.Now(), ""))
			if err := a.Write(testCtx(t), store.Batch{Records: recs}); err != nil {
				t.Fatal(err)
			}
			// The rows as 0002's merge left them.
			exec("UPDATE deliveries SET status = 'dead_lettered', mark_kind = 2, mark_n = 0, updated_at = " + later[be.name] + " WHERE event_id = 'ev-won'")
			exec("UPDATE deliveries SET mark_kind = 1 WHERE event_id = 'ev-plain'")
			exec("ALTER TABLE attempts DROP COLUMN trace_id")
			exec("ALTER TABLE attempts DROP COLUMN transform_version")
			if err := a.Migrate(testCtx(t)); err != nil {
				t.Fatal(err)
			}
			d, err := a.GetEvent(testCtx(t), "ev-won")
			if err != nil || len(d.Deliveries) != 1 {
				t.Fatalf("ev-won: %+v, %v", d, err)
			}
			won := d.Deliveries[0]
			deliveredAt := recs[1].GetDeliveryAttempt().GetStartedAt().AsTime().Add(2 * time.Millisecond)
			if won.Status != auditapi.StatusDelivered || !won.UpdatedAt.Equal(deliveredAt) {
				t.Errorf("ev-won after 0003: %+v, want delivered, updated at %v", won, deliveredAt)
			}
			// A dead letter of ev-plain's round arriving now does not
			// outrank its delivery: 0003 gave the row the new mark.
			if err := a.Write(testCtx(t), store.Batch{Records: []*switchyardv1.AuditRecord{
				storetest.RoundDeadLetter("ev-plain", "erp", 501, time.Now(), ""),
			}}); err != nil {
				t.Fatal(err)
			}
			for id, want := range map[string]string{"ev-plain": auditapi.StatusDelivered, "ev-dead": auditapi.StatusDeadLettered} {
				if n := count("SELECT count(*) FROM deliveries WHERE event_id = $1 AND status = $2", id, want); n != 1 {
					t.Errorf("%s is not %s after 0003", id, want)
				}
			}
		})
	}
}

func TestMigrateRefusesNewerSchema(t *testing.T) {
	t.Parallel()
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			t.Parallel()
			a, _, _, exec := be.open(t)
			if err := a.Migrate(testCtx(t)); err != nil {
				t.Fatal(err)
			}
			if be.name == "postgres" {
				exec("INSERT INTO schema_migrations (version, name) VALUES (99, '0099_future.sql')")
			} else {
				exec("INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, '0099_future.sql', 0)")
			}
			err := a.Migrate(testCtx(t))
			var tooNew *store.SchemaTooNewError
			if !errors.As(err, &tooNew) || tooNew.Version != 99 || tooNew.Known >= 99 {
				t.Errorf("Migrate on a newer schema = %v, want an error asking for a newer auditor", err)
			}
		})
	}
}

func TestOpenPostgresErrorsHidePassword(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Port 1: nothing listens.
	_, err := store.OpenPostgres(ctx, "postgres://auditor:hunter2secret@127.0.0.1:1/audit?sslmode=disable&connect_timeout=2")
	if err == nil {
		t.Fatal("OpenPostgres succeeded against a closed port")
	}
	// What the error says is under test: never the password.
	if strings.Contains(err.Error(), "hunter2secret") {
		t.Errorf("error %q repeats the password", err)
	}
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("error %v is not ErrUnavailable", err)
	}

	_, err = store.OpenPostgres(ctx, "postgres://auditor:hunter2secret@[::1/audit")
	if !errors.Is(err, store.ErrBadDatabaseURL) || strings.Contains(err.Error(), "hunter2secret") {
		t.Errorf("unparsable URL: error %v", err)
	}
}

// PoisonSQL makes the database refuse rejections from source "poison" (a
// constraint violation: the data's fault, not the database's).
var PoisonSQL = map[string]string{
	"postgres": "ALTER TABLE rejections ADD CONSTRAINT no_poison CHECK (source <> 'poison')",
	"sqlite":   "CREATE TRIGGER no_poison BEFORE INSERT ON rejections WHEN NEW.source = 'poison' BEGIN SELECT RAISE(ABORT, 'poison'); END",
}

// A batch is one transaction: a row the database refuses leaves nothing of
// the batch behind, and the error says the data was refused.
func TestRefusedBatchWritesNothing(t *testing.T) {
	t.Parallel()
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			t.Parallel()
			a, _, count, exec := be.open(t)
			if err := a.Migrate(testCtx(t)); err != nil {
				t.Fatal(err)
			}
			exec(PoisonSQL[be.name])
			b := storetest.FullBatch("ev-atomic")
			poison := storetest.Rejection("rej-poison", time.Now())
			poison.GetWebhookRejected().Source = "poison"
			b.Records = append(b.Records, poison)
			err := a.Write(testCtx(t), b)
			if !errors.Is(err, store.ErrRejected) || errors.Is(err, store.ErrUnavailable) {
				t.Fatalf("Write with a refused row = %v, want ErrRejected", err)
			}
			for _, table := range []string{"events", "attempts", "deliveries", "dead_letters", "rejections", "audit_records", "circuit_changes"} {
				if n := count("SELECT count(*) FROM " + table); n != 0 {
					t.Errorf("%s has %d rows from the refused batch", table, n)
				}
			}
			b.Records = b.Records[:len(b.Records)-1]
			if err := a.Write(testCtx(t), b); err != nil {
				t.Errorf("the batch without the refused row: %v", err)
			}
		})
	}
}
