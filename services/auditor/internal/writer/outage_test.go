package writer

import (
	"context"
	sql_ "database/sql"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/events"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/pkg/testing/pgtest"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
	"github.com/switchyard/switchyard/pkg/topology"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/auditor/auditapi"
	"github.com/switchyard/switchyard/services/auditor/internal/store"
	"github.com/switchyard/switchyard/services/auditor/internal/store/storetest"
)

// pgSchema is a migrated Postgres schema with a raw connection for counts.
type pgSchema struct {
	url  string
	conn *pgx.Conn
}

func newSchema(t *testing.T) pgSchema {
	t.Helper()
	url := pgtest.Schema(t)
	st, err := store.OpenPostgres(testCtx(t), url)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Migrate(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	st.Close()
	conn, err := pgx.Connect(testCtx(t), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return pgSchema{url: url, conn: conn}
}

func (s pgSchema) count(t *testing.T, q string, args ...any) int {
	t.Helper()
	var n int
	if err := s.conn.QueryRow(testCtx(t), q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

// lock locks table against writes (reads go on) from another session, as
// a hung or very slow database does, until the returned func is called.
func (s pgSchema) lock(t *testing.T, table string) (unlock func()) {
	t.Helper()
	locker, err := pgx.Connect(testCtx(t), s.url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { locker.Close(context.Background()) })
	tx, err := locker.Begin(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(testCtx(t), "LOCK TABLE "+table+" IN EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	return func() {
		t.Helper()
		if err := tx.Rollback(testCtx(t)); err != nil {
			t.Fatal(err)
		}
	}
}

func (s pgSchema) open(t *testing.T, url string) store.Store {
	t.Helper()
	st, err := store.OpenPostgres(testCtx(t), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// traffic publishes n events (order events, routed to erp) and, for each,
// a failed and a successful attempt and a rejection, tagged with round so
// that several calls do not collide.
func (e *testEnv) traffic(t *testing.T, round string, n int) {
	t.Helper()
	for i := range n {
		id := fmt.Sprintf("ev-%s-%d", round, i)
		res, err := events.Publish(testCtx(t), e.js, events.Event{ID: id, Type: "order.created", Data: []byte(`{"i":1}`)})
		if err != nil {
			t.Fatal(err)
		}
		at := time.Now()
		e.emit(t, storetest.RoundAttempt(id, "erp", res.Sequence, 1, at, 503, switchyardv1.Outcome_OUTCOME_RETRYABLE, false, ""))
		e.emit(t, storetest.RoundAttempt(id, "erp", res.Sequence, 2, at.Add(time.Second), 200, switchyardv1.Outcome_OUTCOME_DELIVERED, true, ""))
		e.emit(t, storetest.Rejection("rej-"+id, at))
	}
}

// The writer sees the database go away (connections reset, new ones
// refused), keeps everything in JetStream, reports its lag, and after the
// database comes back writes all of it: nothing lost, nothing twice.
func TestOutageAndCatchUp(t *testing.T) {
	t.Parallel()
	db := newSchema(t)
	proxy, proxied := pgtest.NewProxy(t, db.url)
	e := start(t, db.open(t, proxied))

	e.traffic(t, "before", 20)
	e.waitAcked(t)
	if n := db.count(t, "SELECT count(*) FROM attempts"); n != 40 {
		t.Fatalf("%d attempts before the outage, want 40", n)
	}

	proxy.Cut()
	e.traffic(t, "during", 60)
	// Lag is reported while down: AuditLag records for the notifier, with
	// what is waiting and why.
	lag := waitfor.Value(t, "an AuditLag record while the database is down", func() (*switchyardv1.AuditLag, bool) {
		for _, rec := range natstest.AuditRecords(t, e.js, "audit.lag.>") {
			if l := rec.GetAuditLag(); l != nil && !l.CaughtUp && l.PendingRecords > 0 && l.FailingSince != nil {
				return l, true
			}
		}
		return nil, false
	})
	if lag.LastError == "" || lag.PendingEvents == 0 {
		t.Errorf("AuditLag = %v, want the last error and the pending events", lag)
	}
	if e.metric(t, "switchyard_auditor_behind") != 1 || e.metric(t, "switchyard_auditor_write_failing_seconds") <= 0 {
		t.Errorf("behind = %v, failing for %vs: the metrics do not show the outage",
			e.metric(t, "switchyard_auditor_behind"), e.metric(t, "switchyard_auditor_write_failing_seconds"))
	}
	for _, c := range []struct{ stream, name string }{
		{natsx.StreamAudit, natsx.ConsumerAuditor},
		{natsx.StreamEvents, natsx.ConsumerAuditorEvents},
	} {
		info := e.consumer(t, c.stream, c.name)
		if info.NumPending+uint64(info.NumAckPending) == 0 {
			t.Errorf("%s: nothing waiting during the outage", c.name)
		}
	}

	proxy.Restore()
	e.waitAcked(t)
	// Exactly what was published, once.
	for table, want := range map[string]int{"events": 80, "attempts": 160, "rejections": 80, "deliveries": 80} {
		if n := db.count(t, "SELECT count(*) FROM "+table); n != want {
			t.Errorf("%s: %d rows after catching up, want %d", table, n, want)
		}
	}
	if n := db.count(t, "SELECT count(*) FROM deliveries WHERE status = 'delivered' AND attempts = 2 AND total_attempts = 2"); n != 80 {
		t.Errorf("%d deliveries delivered after 2 attempts, want 80", n)
	}
	waitfor.True(t, "an AuditLag record saying it caught up", func() bool {
		for _, rec := range natstest.AuditRecords(t, e.js, "audit.lag.>") {
			if rec.GetAuditLag().GetCaughtUp() {
				return true
			}
		}
		return false
	})
	waitfor.True(t, "the behind metric back to 0", func() bool { return e.metric(t, "switchyard_auditor_behind") == 0 })
}

// A Postgres restart as the writer sees it: every connection ends under it
// (pg_terminate_backend: mid-batch, mid-transaction or idle in the pool)
// while new ones are taken at once. After several of them while records
// flow, everything is written once and nothing is parked as refused.
func TestServerRestartsAndCatchUp(t *testing.T) {
	t.Parallel()
	db := newSchema(t)
	tagged, app := pgtest.Tag(t, db.url)
	e := start(t, db.open(t, tagged))
	const rounds, per = 5, 20
	for round := range rounds {
		e.traffic(t, fmt.Sprint("restart", round), per)
		waitfor.True(t, "a connection of the writer ended", func() bool { return pgtest.TerminateBackends(t, app) > 0 })
	}
	e.waitAcked(t)
	for table, want := range map[string]int{"events": rounds * per, "attempts": 2 * rounds * per, "rejections": rounds * per, "deliveries": rounds * per, "parked": 0} {
		if n := db.count(t, "SELECT count(*) FROM "+table); n != want {
			t.Errorf("%s: %d rows after the restarts, want %d", table, n, want)
		}
	}
}

// Replaying the whole AUDIT and EVENTS streams into a written log changes
// nothing.
func TestReplayingTheStreamsChangesNothing(t *testing.T) {
	t.Parallel()
	db := newSchema(t)
	ns := natstest.Start(t)
	// The first writer is stopped before its consumers are replaced.
	_, js := ns.Connect(t)
	first, err := New(js, db.open(t, db.url), testConfig(t, js, nil))
	if err != nil {
		t.Fatal(err)
	}
	e := &testEnv{ns: ns, js: js, st: first.store, w: first}
	runCtx, stop := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- first.Run(runCtx) }()
	e.traffic(t, "once", 30)
	for _, rec := range storetest.ReplayStory("ev-story", "erp", 5000, 5005) {
		e.emit(t, rec)
	}
	e.waitAcked(t)
	snapshot := func() string {
		var out string
		for _, q := range []string{
			"SELECT count(*) FROM events", "SELECT count(*) FROM attempts", "SELECT count(*) FROM rejections",
			"SELECT count(*) FROM dead_letters", "SELECT count(*) FROM replays",
		} {
			out += fmt.Sprintf("%s=%d\n", q, db.count(t, q))
		}
		rows, err := db.conn.Query(testCtx(t), `SELECT event_id, destination, status, attempts, total_attempts, last_status_code,
			dead_letter_id, replay_of, updated_at FROM deliveries ORDER BY event_id, destination`)
		if err != nil {
			t.Fatal(err)
		}
		vals, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
			v, err := r.Values()
			return fmt.Sprint(v), err
		})
		if err != nil {
			t.Fatal(err)
		}
		return out + fmt.Sprint(vals)
	}
	before := snapshot()
	stop()
	if err := <-stopped; err != nil {
		t.Fatalf("first writer: %v", err)
	}

	// Deliver both streams to the writer again from the start: the
	// notifier has not acked AUDIT here, so the records are all still there.
	ctx := testCtx(t)
	for _, c := range (topology.Topology{}).Consumers() {
		stream, cfg := c.Stream, c.Config
		if cfg.Durable != natsx.ConsumerAuditor && cfg.Durable != natsx.ConsumerAuditorEvents {
			continue
		}
		if err := e.js.DeleteConsumer(ctx, stream, cfg.Durable); err != nil {
			t.Fatal(err)
		}
		cfg.DeliverPolicy = jetstream.DeliverAllPolicy
		if _, err := e.js.CreateConsumer(ctx, stream, cfg); err != nil {
			t.Fatal(err)
		}
	}
	again := startOn(t, ns, db.open(t, db.url))
	waitfor.True(t, "the replayed streams written", func() bool {
		return again.metric(t, "switchyard_auditor_written_total") >= 30*4+7
	})
	again.waitAcked(t)
	if after := snapshot(); after != before {
		t.Errorf("replaying the streams changed the log:\nbefore %s\nafter  %s", before, after)
	}
	d, err := e.st.GetEvent(ctx, "ev-story")
	if err != nil || len(d.Deliveries) != 1 || d.Deliveries[0].Status != auditapi.StatusDelivered || d.Deliveries[0].TotalAttempts != 5 {
		t.Errorf("story delivery after the replay = %+v, %v", d.Deliveries, err)
	}
}

// A batch the database refuses is bisected: the good items are written and
// acknowledged, the bad ones parked whole; the pipeline goes on.
func TestPoisonRecordsAreParked(t *testing.T) {
	t.Parallel()
	for name, poisonSQL := range map[string]string{
		"postgres": "ALTER TABLE rejections ADD CONSTRAINT no_poison CHECK (source <> 'poison')",
		"sqlite":   "CREATE TRIGGER no_poison BEFORE INSERT ON rejections WHEN NEW.source = 'poison' BEGIN SELECT RAISE(ABORT, 'poison'); END",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			st := openWithSQL(t, name, poisonSQL)
			e := start(t, st)
			var poison []string
			for i := range 120 {
				rec := storetest.Rejection(fmt.Sprint("rej-", i), time.Now())
				if i%41 == 7 {
					rec.GetWebhookRejected().Source = "poison"
					poison = append(poison, rec.Id)
				}
				e.emit(t, rec)
			}
			e.waitAcked(t)
			rs, _, err := st.ListRejections(testCtx(t), store.RejectionFilter{}, store.Page{Limit: 1000})
			if err != nil {
				t.Fatal(err)
			}
			if len(rs) != 120-len(poison) {
				t.Errorf("%d rejections written, want %d", len(rs), 120-len(poison))
			}
			parked, _, err := st.ListParked(testCtx(t), store.Page{})
			if err != nil {
				t.Fatal(err)
			}
			if len(parked) != len(poison) {
				t.Fatalf("parked %d, want %d: %+v", len(parked), len(poison), parked)
			}
			for _, p := range parked {
				rec, err := auditlog.Decode(p.Data)
				if err != nil || rec.GetWebhookRejected().GetSource() != "poison" || p.Stream != natsx.StreamAudit || p.Error == "" {
					t.Errorf("parked %+v: record %v, %v", p, rec, err)
				}
			}
			if got := e.metric(t, "switchyard_auditor_parked_total"); got != float64(len(poison)) {
				t.Errorf("parked_total = %v", got)
			}
		})
	}
}

// openWithSQL opens a migrated store of the named kind and runs sql on its
// database.
func openWithSQL(t *testing.T, kind, sql string) store.Store {
	t.Helper()
	if kind == "postgres" {
		db := newSchema(t)
		if _, err := db.conn.Exec(testCtx(t), sql); err != nil {
			t.Fatal(err)
		}
		return db.open(t, db.url)
	}
	path := filepath.Join(t.TempDir(), "audit.db")
	st, err := store.OpenSQLite(testCtx(t), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Migrate(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	raw, err := sql_.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.ExecContext(testCtx(t), sql); err != nil {
		t.Fatal(err)
	}
	return st
}

// A slow database (here: a table locked against writes by another session;
// reads go on) makes writes hang; they time out and are retried, the lag is
// reported, and the writer catches up once the lock goes.
func TestSlowDatabaseAndCatchUp(t *testing.T) {
	t.Parallel()
	db := newSchema(t)
	e := start(t, db.open(t, db.url))
	e.traffic(t, "before", 5)
	e.waitAcked(t)

	unlock := db.lock(t, "attempts")
	e.traffic(t, "locked", 20)
	waitfor.True(t, "an AuditLag record while writes hang", func() bool {
		for _, rec := range natstest.AuditRecords(t, e.js, "audit.lag.>") {
			if l := rec.GetAuditLag(); l != nil && !l.CaughtUp && l.PendingRecords > 0 && l.OldestAge.AsDuration() > 0 {
				return true
			}
		}
		return false
	})
	if n := db.count(t, "SELECT count(*) FROM attempts"); n != 10 {
		t.Errorf("%d attempts written while the table was locked, want the 10 from before", n)
	}
	unlock()
	e.waitAcked(t)
	for table, want := range map[string]int{"events": 25, "attempts": 50, "rejections": 25} {
		if n := db.count(t, "SELECT count(*) FROM "+table); n != want {
			t.Errorf("%s: %d rows after the lock went, want %d", table, n, want)
		}
	}
	waitfor.True(t, "caught up", func() bool { return e.metric(t, "switchyard_auditor_behind") == 0 })
}
